"""Datasets as numpy arrays plus metadata.

Every loader returns a :class:`Dataset`: a pool (what active learning labels from) and a held-out test set,
inputs as float32 (images ``(n, height, width, channels)`` in [0, 1], or feature vectors ``(n, d)``), integer
labels ``(n,)`` (a 0/1 matrix ``(n, C)`` for multi-label data), class names.

Sources, all through :func:`load_dataset`:

- offline, bundled: ``"mnist"`` (the real MNIST test set, 10,000 digits bundled inside this package) and its
  variants, ``"digits"`` (scikit-learn's bundled 8x8 digits);
- your own data: arrays (:func:`from_arrays`), ``.npz`` files (:func:`load_npz`), and folders
  (:func:`load_folder`) of images in class sub-folders (``FOLDER/cat/*.png``, read with Pillow, no TensorFlow)
  or of ``x.npy`` + ``y.npy``;
- tensorflow-datasets: ``"cifar10"``, ``"cifar100"``, ``"svhn"`` and ``"tfds:NAME"`` for any of its datasets;
  they need its package and, the first time, the network.

User data is read the same way from every source: ``(n, h, w)`` arrays are grayscale images and get a channel
axis; uint8 arrays are images in 0..255 and are divided by 255 once (other dtypes are cast to float32
unchanged); labels are integer class ids (integer-valued floats too), class-name strings, or a 0/1 multi-label
matrix. Bad input raises ``ValueError`` with one line naming the argument and the fix.

Examples
--------
>>> from cmal.data import load_dataset
>>> ds = load_dataset("digits")
>>> ds.x_pool.shape, ds.x_test.shape, ds.n_classes
((1438, 8, 8, 1), (359, 8, 8, 1), 10)
>>> ds = from_arrays(np.zeros((10, 5, 5), np.uint8), ["cat", "dog"] * 5)
>>> ds.x_pool.shape[1:], ds.class_names, ds.kind
((5, 5, 1), ['cat', 'dog'], 'images')
"""

from __future__ import annotations

import contextlib
import contextvars
import gzip
import hashlib
import numbers
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from cmal._validation import check_int

__all__ = [
    "DATA_FORMAT",
    "Dataset",
    "DatasetUnavailableError",
    "available_datasets",
    "data_format",
    "from_arrays",
    "is_named_dataset",
    "load_dataset",
    "load_folder",
    "load_npz",
    "long_tailed",
    "repeated",
]

# The pool/test split must not depend on the run's seed: every run and strategy sees the same pool.
_SPLIT_SEED = 20210729

#: How user arrays are read. 2 (cmal 0.2 on): uint8 images divided by 255, one-hot labels read as class ids,
#: class ids with gaps refused. 1 (before): arrays cast to float32 as they were, labels taken as given. A run
#: records the format it loaded its data with, and a resume loads it the same way, so its fingerprint matches.
DATA_FORMAT = 2
_FORMAT: contextvars.ContextVar[int] = contextvars.ContextVar("cmal_data_format", default=DATA_FORMAT)


@contextlib.contextmanager
def data_format(version: int) -> Iterator[None]:
    """Read user arrays as data format ``version`` (see ``DATA_FORMAT``) inside the ``with`` block: how a
    run saved by an older cmal reloads its data exactly as it first did.

    >>> x = np.full((4, 2, 2, 1), 255, dtype=np.uint8)
    >>> with data_format(1):
    ...     float(from_arrays(x, [0, 1, 0, 1], x_test=x[:2], y_test=[0, 1]).x_pool.max())
    255.0
    """
    if version not in (1, 2):
        raise ValueError(f"data format must be 1 or 2, got {version!r}.")
    token = _FORMAT.set(int(version))
    try:
        yield
    finally:
        _FORMAT.reset(token)


_TFDS = {"cifar10": "cifar10", "cifar100": "cifar100", "svhn": "svhn_cropped"}


class DatasetUnavailableError(RuntimeError):
    """A dataset cannot be loaded here (package missing, no network); the message says which and why."""


@dataclass(frozen=True)
class Dataset:
    """A pool and a held-out test set.

    Attributes
    ----------
    name : str
    x_pool : ndarray (n_pool, height, width, channels) or (n_pool, d) float32
    y_pool : ndarray (n_pool,) int64 — the simulated oracle's answers; (n_pool, C) 0/1 for multi-label data
    x_test : ndarray (n_test, ...) float32
    y_test : ndarray (n_test,) or (n_test, C) int64
    class_names : list of str
    image_shape : tuple
        Shape of one example, e.g. (28, 28, 1).
    sources : ndarray (n_pool,) int64 or None
        For pools built from copies (:func:`repeated`): which original image each pool item is a copy of, so
        batch diagnostics can count copies once. None for ordinary pools.
    """

    name: str
    x_pool: np.ndarray
    y_pool: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    image_shape: tuple[int, ...] = field(default=())
    sources: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.image_shape:
            object.__setattr__(self, "image_shape", tuple(int(s) for s in self.x_pool.shape[1:]))
        if self.sources is not None and np.shape(self.sources) != (self.n_pool,):
            raise ValueError(
                f"sources must have one entry per pool item, shape ({self.n_pool},), got {np.shape(self.sources)}."
            )

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def multilabel(self) -> bool:
        """True when labels are a 0/1 matrix (n, C): several classes per example."""
        return self.y_pool.ndim == 2

    @property
    def kind(self) -> str:
        """``"images"`` when examples are images ``(height, width, channels)`` (x_pool is 4-D), else ``"features"``
        (feature vectors ``(d,)``): what kind of model fits.

        Examples
        --------
        >>> from_arrays(np.zeros((10, 3)), [0, 1] * 5).kind
        'features'
        """
        return "images" if self.x_pool.ndim == 4 else "features"

    @property
    def n_pool(self) -> int:
        return int(self.x_pool.shape[0])

    def fingerprint(self) -> str:
        """A short SHA-256 of the pool and test arrays: identifies the data a run used."""
        h = hashlib.sha256()
        for a in (self.x_pool, self.y_pool, self.x_test, self.y_test):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """Metadata for ``config.json``."""
        return {
            "name": self.name,
            "n_pool": self.n_pool,
            "n_test": int(self.x_test.shape[0]),
            "image_shape": list(self.image_shape),
            "n_classes": self.n_classes,
            "class_names": list(self.class_names),
            "multilabel": self.multilabel,
            "fingerprint": self.fingerprint(),
        }


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`. Besides these, it accepts ``"tfds:NAME"`` (any tensorflow-datasets
    dataset, e.g. ``"tfds:fashion_mnist"``) and paths: an ``.npz`` file, a folder of images in class sub-folders,
    or a folder holding ``x.npy`` and ``y.npy`` (see :func:`load_folder`).

    Examples
    --------
    >>> available_datasets()[:2]
    ['mnist', 'mnist-pairs']
    """
    return ["mnist", "mnist-pairs", "repeated-mnist", "redundant-mnist", "imbalanced-mnist", "digits", *_TFDS]


def repeated(ds: Dataset, copies: int = 3, noise: float = 0.1, *, seed: int = _SPLIT_SEED) -> Dataset:
    """Repeated-MNIST as in the BatchBALD paper: every pool image ``copies`` times, each copy with Gaussian
    pixel noise of standard deviation ``noise`` (clipped to [0, 1]). The pool keeps its size: the first
    ``n_pool // copies`` images are repeated. The test set is unchanged. A redundant pool where uncertainty-only
    strategies pick near-duplicates; ``sources`` records the original image of every copy.

    Examples
    --------
    >>> r = repeated(load_dataset("digits"), copies=4)
    >>> r.n_pool, int(r.sources.max()) + 1, int((r.sources == r.sources[0]).sum())
    (1436, 359, 4)
    """
    copies = check_int(copies, "copies", minimum=1)
    base = ds.n_pool // copies
    rng = np.random.default_rng(seed)
    idx = np.tile(np.arange(base), copies)
    x = np.clip(ds.x_pool[idx] + rng.normal(0, noise, size=(idx.size, *ds.x_pool.shape[1:])), 0, 1)
    order = rng.permutation(idx.size)  # copies spread over the pool, not in blocks
    # Copies of copies still point at the original image.
    sources = idx if ds.sources is None else np.asarray(ds.sources)[idx]
    return Dataset(
        f"repeated-{ds.name}",
        x[order].astype(np.float32),
        ds.y_pool[idx][order],
        ds.x_test,
        ds.y_test,
        ds.class_names,
        ds.image_shape,
        sources=sources[order].astype(np.int64),
    )


def long_tailed(ds: Dataset, imbalance: float = 64.0, *, seed: int = _SPLIT_SEED) -> Dataset:
    """A long-tailed pool: class ``c`` (in class-id order) keeps ``n_max * imbalance ** (-c / (C - 1))`` pool
    examples, where ``n_max`` is the smallest class count of ``ds``'s pool, so class sizes fall geometrically
    and the largest is ``imbalance`` times the smallest. The test set is unchanged (balanced for the bundled
    datasets), so accuracy weighs every class equally.

    Examples
    --------
    >>> lt = long_tailed(load_dataset("digits"), imbalance=16)
    >>> counts = np.bincount(lt.y_pool)
    >>> int(counts[0]), int(counts[-1]), lt.n_pool
    (139, 9, 501)
    """
    if (
        isinstance(imbalance, bool)
        or not isinstance(imbalance, numbers.Real)
        or not np.isfinite(imbalance)
        or imbalance < 1
    ):
        raise ValueError(f"imbalance must be a number >= 1 (largest / smallest class), got {imbalance!r}.")
    if ds.multilabel:
        raise ValueError("long_tailed needs single-label classes; this dataset is multi-label.")
    counts = np.bincount(ds.y_pool, minlength=ds.n_classes)
    n_max = int(counts.min())
    c = max(ds.n_classes - 1, 1)
    keep_n = np.maximum(1, np.round(n_max * float(imbalance) ** (-np.arange(ds.n_classes) / c))).astype(int)
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.permutation(np.flatnonzero(ds.y_pool == k))[:n] for k, n in enumerate(keep_n)])
    keep = rng.permutation(keep)  # classes mixed, so that pool_size prefixes stay long-tailed
    return Dataset(
        f"long-tailed-{ds.name}",
        ds.x_pool[keep],
        ds.y_pool[keep],
        ds.x_test,
        ds.y_test,
        ds.class_names,
        ds.image_shape,
        sources=None if ds.sources is None else ds.sources[keep],
    )


def _pairs(x: np.ndarray, y: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of two digits side by side (28x56); labels = the set of digits shown, a 0/1 row of 10."""
    rng = np.random.default_rng(seed)
    left, right = rng.integers(0, len(x), size=(2, n))
    images = np.concatenate([x[left], x[right]], axis=2)
    labels = np.zeros((n, 10), dtype=np.int64)
    labels[np.arange(n), y[left]] = 1
    labels[np.arange(n), y[right]] = 1
    return images, labels


def _load_mnist_pairs() -> Dataset:
    """A multi-label task from real MNIST digits: pool pairs from pool digits, test pairs from test digits."""
    x, y = _load_mnist()
    pool, test = _stratified_split(y, 0.2)
    xp, yp = _pairs(x[pool], y[pool], 8000, _SPLIT_SEED + 1)
    xt, yt = _pairs(x[test], y[test], 2000, _SPLIT_SEED + 2)
    return Dataset("mnist-pairs", xp, yp, xt, yt, [str(i) for i in range(10)])


def _stratified_split(y: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: the same ``test_fraction`` of every class goes to the test set."""
    rng = np.random.default_rng(_SPLIT_SEED)
    pool, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(test_fraction * idx.size))
        test.append(idx[:n_test])
        pool.append(idx[n_test:])
    # Shuffle so that the first rows of the pool are not all one class (pool_size takes a prefix).
    return rng.permutation(np.concatenate(pool)), rng.permutation(np.concatenate(test))


def _read_idx(raw: bytes) -> np.ndarray:
    """Parse an IDX file (MNIST's format): big-endian magic, dimension sizes, then uint8 data."""
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte data
        raise ValueError(f"Not a uint8 IDX file (magic {magic:#x}).")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"IDX file truncated: expected {int(np.prod(dims))} values, found {data.size}.")
    return data.reshape(dims)


def _load_mnist() -> tuple[np.ndarray, np.ndarray]:
    folder = resources.files("cmal") / "_data" / "mnist-t10k"
    images = _read_idx(gzip.decompress((folder / "t10k-images-idx3-ubyte.gz").read_bytes()))
    labels = _read_idx(gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    return (images.astype(np.float32) / 255.0)[..., None], labels.astype(np.int64)


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images.astype(np.float32) / 16.0)[..., None], d.target.astype(np.int64)


def _one_line(err: BaseException) -> str:
    """``err`` as ``Type: message`` on one line (messages are printed as single CLI lines)."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def _tfds_class_names(info: Any) -> list[str] | None:
    """Class names of a tensorflow-datasets label feature, or None when it has none (e.g. not a ClassLabel)."""
    keys = getattr(info, "supervised_keys", None)
    label_key = keys[1] if isinstance(keys, tuple) and len(keys) == 2 and isinstance(keys[1], str) else "label"
    try:
        return [str(n) for n in info.features[label_key].names]
    except (KeyError, AttributeError, TypeError, IndexError):
        return None


def _load_tfds(tfds_name: str, data_dir: str | None, shown: str) -> Dataset:
    """Any tensorflow-datasets dataset: pool = its "train" split; test = "test", else "validation", else a
    stratified 20% hold-out of train. ``shown`` is the name as the user typed it, for messages."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DatasetUnavailableError(
            f"Dataset {shown!r} is loaded through tensorflow-datasets, which is not installed; "
            "run `pip install tensorflow-datasets` (and have network access the first time it downloads)."
        ) from None
    options = {"as_supervised": True, "batch_size": -1, "data_dir": data_dir}
    try:
        # The train split first: it downloads and prepares the dataset, after which info lists every split.
        train, info = tfds.load(tfds_name, split="train", with_info=True, **options)
        splits = info.splits or {}
        test_split = next((s for s in ("test", "validation") if s in splits), None)
        test = tfds.load(tfds_name, split=test_split, **options) if test_split else None
    except Exception as err:  # tfds raises many types (network, checksum, disk); all mean "not available here"
        raise DatasetUnavailableError(
            f"Dataset {shown!r} could not be loaded through tensorflow-datasets: {_one_line(err)}. "
            "The first load downloads it and needs network access; offline, use 'mnist', 'digits', an .npz file "
            "or a folder of your own data."
        ) from None
    x, y = tfds.as_numpy(train)
    names = _tfds_class_names(info)
    if test is None:
        return from_arrays(x, y, class_names=names, name=tfds_name)
    x_test, y_test = tfds.as_numpy(test)
    return from_arrays(x, y, x_test=x_test, y_test=y_test, class_names=names, name=tfds_name)


# ---------------------------------------------------------------------------------------------------------------
# User arrays: layouts, dtypes and labels
# ---------------------------------------------------------------------------------------------------------------

_LAYOUTS = "images (n, height, width, channels), grayscale images (n, height, width) or feature vectors (n, features)"
_IDS_FIX = "map each label to an id, e.g. {arg} = np.unique({arg}, return_inverse=True)[1], or pass class-name strings"


def _inputs(x: Any, arg: str) -> np.ndarray:
    """``x`` checked and in a supported layout: ``(n, h, w)`` gets a channel axis (a view, no copy). The dtype is
    unchanged: :func:`_as_float` converts after the test split, so that uint8 images are indexed at 1 byte/pixel."""
    try:
        x = np.asarray(x)
    except ValueError as err:  # numpy 2 refuses ragged lists, e.g. images of different sizes
        raise ValueError(
            f"{arg} cannot be read as one array ({_one_line(err)}); every example needs the same "
            "shape: resize images to one size first (load_dataset(FOLDER, image_size=(h, w)) does it "
            "for an image folder)."
        ) from None
    if x.dtype != bool and (not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating)):
        raise ValueError(
            f"{arg} must be a numeric array, got dtype {x.dtype}; convert it, e.g. "
            f"{arg} = np.asarray({arg}, dtype=np.float32)."
        )
    if x.ndim == 3:
        x = x[..., None]  # grayscale images: one channel, so that every image model sees (h, w, c)
    elif x.ndim not in (2, 4):
        fix = (
            f"for one feature per example pass {arg}.reshape(-1, 1)"
            if x.ndim == 1
            else "pass an array with one row per example, not a single number"
            if x.ndim == 0
            else f"reshape it to one of these, e.g. flatten each example: {arg}.reshape(len({arg}), -1)"
        )
        raise ValueError(f"{arg} must have one row per example, as {_LAYOUTS}; got shape {x.shape}: {fix}.")
    if x.shape[0] == 0:
        raise ValueError(f"{arg} has no rows (shape {x.shape}); pass at least one example per class.")
    if x.dtype.kind == "f":
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            bad = x[row][~np.isfinite(x[row])].flat[0]
            raise ValueError(
                f"{arg} must have no NaN or inf (found {float(bad)!r} at row {row}); drop those rows "
                f"or fill them, e.g. {arg} = np.nan_to_num({arg})."
            )
    return x


def _as_float(x: np.ndarray) -> np.ndarray:
    """float32 inputs: uint8 images (n, h, w, c) are pixels 0..255, scaled once to [0, 1]; anything else,
    feature vectors of any dtype included, is cast unchanged (no copy when already float32)."""
    if x.dtype == np.uint8 and x.ndim == 4 and _FORMAT.get() >= 2:
        out = x.astype(np.float32)
        out /= np.float32(255.0)
        return out
    return np.asarray(x, dtype=np.float32)


def _where(mask: np.ndarray) -> str:
    """The first True position of ``mask`` as words: "row 3" (1-D) or "row 3, column 2" (2-D)."""
    pos = np.argwhere(mask)[0]
    return f"row {pos[0]}" if mask.ndim == 1 else f"row {pos[0]}, column {pos[1]}"


def _read_labels(y: Any, arg: str, n_rows: int, x_arg: str) -> np.ndarray:
    """``y`` checked: int64 class ids ``(n,)``, a str array of class names ``(n,)``, or an int64 0/1 multi-label
    matrix ``(n, C)``."""
    try:
        y = np.asarray(y)
    except ValueError as err:
        raise ValueError(
            f"{arg} cannot be read as one array ({_one_line(err)}); pass one label per row of "
            f"{x_arg}, or a 0/1 matrix (n, classes) with the same number of columns in every row."
        ) from None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # a column of ids, e.g. keras.datasets.cifar10.load_data(); one-class multi-label is meaningless
    if y.ndim not in (1, 2):
        raise ValueError(
            f"{arg} must be class ids of shape (n,) or a 0/1 multi-label matrix (n, classes), got shape "
            f"{y.shape}; pass one label per row of {x_arg}, e.g. {arg}.reshape(len({arg}), -1)."
        )
    if y.shape[0] != n_rows:
        raise ValueError(
            f"{arg} must have one label per row of {x_arg} ({n_rows} rows), got {y.shape[0]} labels "
            f"(shape {y.shape}); pass the labels in the order of the rows of {x_arg}."
        )
    if y.dtype == bool:
        raise ValueError(
            f"{arg} holds booleans; pass integer class ids instead: {arg}.astype(int) "
            "(False -> class 0, True -> class 1)."
        )
    if y.dtype == object:
        if y.ndim == 1 and all(isinstance(v, str) for v in y):
            y = y.astype(str)  # e.g. a pandas column of names
        elif all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in y.flat):
            y = y.astype(np.float64)
        else:
            bad = next(v for v in y.flat if not isinstance(v, (str, numbers.Real)) or isinstance(v, bool))
            raise ValueError(
                f"{arg} must hold integer class ids or class-name strings, got dtype object holding "
                f"{bad!r}; convert it, e.g. {arg} = np.asarray({arg}, dtype=int)."
            )
    if y.dtype.kind in "US":
        if y.ndim != 1:
            raise ValueError(
                f"{arg} holds strings in shape {y.shape}; class-name labels must be 1-D (one name "
                "per row); a multi-label target is a 0/1 matrix (n, classes)."
            )
        return y.astype(str)
    if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
        raise ValueError(
            f"{arg} must hold integer class ids or class-name strings, got dtype {y.dtype}; convert "
            f"it, e.g. {arg} = np.asarray({arg}, dtype=int)."
        )
    multi = y.ndim == 2
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y)
        if bad.any():
            raise ValueError(
                f"{arg} must hold a label for every row (found {float(y[bad][0])!r} at {_where(bad)}); "
                f"drop the unlabeled rows of {x_arg} and {arg}."
            )
        bad = y != np.round(y)
        if bad.any():
            found = f"found {float(y[bad][0])!r} at {_where(bad)}"
            if multi:
                raise ValueError(
                    f"{arg} of shape {y.shape} is read as a multi-label 0/1 matrix ({found}); "
                    f"threshold scores first, e.g. {arg} = ({arg} >= 0.5).astype(int)."
                )
            raise ValueError(f"{arg} must hold integer class ids 0..C-1 ({found}); " + _IDS_FIX.format(arg=arg) + ".")
    y = y.astype(np.int64, copy=False)
    if multi:
        bad = (y != 0) & (y != 1)
        if bad.any():
            raise ValueError(
                f"{arg} of shape {y.shape} is read as a multi-label 0/1 matrix, but it holds "
                f"{int(y[bad][0])} at {_where(bad)}; pass class ids of shape (n,) for single-label "
                "data, or 0/1 columns (one per class)."
            )
    elif y.size and y.min() < 0:
        raise ValueError(
            f"{arg} must hold class ids >= 0 (found {int(y.min())} at {_where(y < 0)}); "
            + _IDS_FIX.format(arg=arg)
            + "."
        )
    return y


def _class_ids(
    y: np.ndarray, y_test: np.ndarray | None, class_names: Any
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Labels from :func:`_read_labels` as int64 ids (or 0/1 matrices) and the class names, y and y_test encoded
    together so that a name means the same id in both."""
    names = None
    if class_names is not None:
        if isinstance(class_names, (str, bytes)) or not hasattr(class_names, "__iter__"):
            raise ValueError(
                f"class_names must be a list of strings, got {class_names!r}; e.g. class_names=['cat', 'dog']."
            )
        names = [str(c) for c in class_names]
        seen: set[str] = set()
        dup = None
        for c in names:  # the first name met a second time
            if c in seen:
                dup = c
                break
            seen.add(c)
        if dup is not None:
            raise ValueError(f"class_names lists {dup!r} twice; pass each class once, in class-id order.")
    kinds = {"y": y, "y_test": y_test}
    strings = {k for k, v in kinds.items() if v is not None and v.dtype.kind == "U"}
    if strings and y_test is not None and len(strings) == 1:
        other = ({"y", "y_test"} - strings).pop()
        raise ValueError(
            f"{strings.pop()} holds class-name strings but {other} holds class ids; pass both as names or both as ids."
        )
    if strings:
        if names is None:
            names = np.unique(y if y_test is None else np.concatenate([y, y_test])).tolist()
        lookup = np.array(names)
        order = np.argsort(lookup)
        out: list[np.ndarray | None] = []
        for arg, v in kinds.items():
            if v is None:
                out.append(None)
                continue
            pos = np.minimum(np.searchsorted(lookup, v, sorter=order), len(names) - 1)
            ids = order[pos]
            unknown = lookup[ids] != v
            if unknown.any():
                raise ValueError(
                    f"{arg} holds {str(v[unknown][0])!r} ({_where(unknown)}), which is not in "
                    f"class_names {names}; add it to class_names, or leave class_names out to use "
                    "the sorted distinct labels."
                )
            out.append(ids.astype(np.int64))
        y_ids, y_test_ids = out
        assert y_ids is not None  # y is always given; only y_test may be None
        return y_ids, y_test_ids, names
    if y_test is not None and y_test.ndim != y.ndim:
        raise ValueError(
            f"y has shape {y.shape} but y_test has shape {y_test.shape}; pass both as class ids (n,) "
            "or both as 0/1 multi-label matrices (n, classes)."
        )
    if y.ndim == 2:
        n_classes = y.shape[1]
        if y_test is not None and y_test.shape[1] != n_classes:
            raise ValueError(
                f"y has {n_classes} columns (classes) but y_test has {y_test.shape[1]}; pass the "
                "same classes, in the same column order, in both."
            )
        if names is not None and len(names) != n_classes:
            raise ValueError(
                f"class_names has {len(names)} names but the multi-label y has {n_classes} columns; "
                f"pass one name per column ({n_classes})."
            )
    else:
        n_classes = int(max(y.max(initial=0), 0 if y_test is None else y_test.max(initial=0))) + 1
        if names is not None and len(names) < n_classes:
            raise ValueError(
                f"class_names has {len(names)} names but labels go up to {n_classes - 1}; pass one "
                f"name per class id 0..{n_classes - 1}."
            )
    return y, y_test, names if names is not None else [str(i) for i in range(n_classes)]


def _one_hot(y: np.ndarray) -> bool:
    """A 0/1 matrix with exactly one 1 per row (``keras.utils.to_categorical``'s output)."""
    return y.ndim == 2 and y.dtype.kind in "iu" and bool(np.all(y.sum(axis=1) == 1))


def _check_no_missing_ids(y: np.ndarray, y_test: np.ndarray | None, n_classes: int) -> None:
    """Class ids must be 0..C-1 with every id used: a gap (labels 1..10, or 0, 1, 3) would add a class the model
    must output but no example has. Warn when the pool lacks a class the test set has: it can never be labeled."""
    import warnings

    seen = np.zeros(n_classes, dtype=bool)
    seen[y] = True
    if y_test is not None:
        seen[y_test] = True
    if not seen.all():
        missing = np.flatnonzero(~seen)
        shown = ", ".join(map(str, missing[:5])) + (" ..." if missing.size > 5 else "")
        raise ValueError(
            f"y uses class ids up to {n_classes - 1} but never {shown}: every id 0..C-1 must be a class; "
            "renumber them, e.g. y = np.unique(y, return_inverse=True)[1] (and the same mapping for "
            "y_test), or pass class_names to declare every class."
        )
    if y_test is not None:
        absent = np.setdiff1d(np.unique(y_test), np.unique(y))
        if absent.size:
            warnings.warn(
                f"the pool has no example of class id(s) {absent.tolist()}, which the test set has: active "
                "learning can never label them.",
                stacklevel=3,
            )


def _random_split(n: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic random split (for multi-label targets, which cannot be stratified by one class)."""
    order = np.random.default_rng(_SPLIT_SEED).permutation(n)
    n_test = int(round(test_fraction * n))
    return order[n_test:], order[:n_test]


def from_arrays(
    x: Any,
    y: Any,
    *,
    x_test: Any = None,
    y_test: Any = None,
    test_fraction: float = 0.2,
    class_names: list[str] | None = None,
    name: str = "arrays",
) -> Dataset:
    """Wrap user arrays as a :class:`Dataset`.

    Parameters
    ----------
    x : array (n, h, w, c), (n, h, w) or (n, d)
        Images ``(n, height, width, channels)`` of any size and channel count; grayscale images
        ``(n, height, width)``, which get a channel axis ``(n, height, width, 1)``; or feature vectors ``(n, d)``.
        uint8 images are pixels in 0..255 and are divided by 255 once into float32 [0, 1]; feature vectors
        (any dtype, uint8 included) and float images are cast to float32 unchanged (no copy when already float32).
    y : array (n,) or (n, C)
        Integer class ids ``0..C-1`` (integer-valued floats such as ``3.0`` count as ids), or class-name strings
        (``["cat", "dog", ...]``: ids follow ``class_names``, by default the sorted distinct names), or a 0/1
        multi-label matrix ``(n, C)`` (several classes per example). One-hot labels (a 0/1 matrix with exactly one
        1 per row, ``keras.utils.to_categorical``'s output) are single-label: read as ``y.argmax(1)``. A column
        ``(n, 1)`` is read as ids ``(n,)``. Every id ``0..C-1`` must occur in ``y`` or ``y_test`` (unless
        ``class_names`` declares the classes).
    x_test, y_test : arrays, optional
        A held-out set in the same layouts; when absent, ``test_fraction`` of ``x`` is held out deterministically
        (the same split on every call): stratified by class, or at random for multi-label ``y``.
    class_names : list of str, optional
        Defaults to ``["0", "1", ...]`` (one per class id or per column of a multi-label ``y``), or to the sorted
        distinct names for string labels.
    name : str
        The dataset's name in results.

    Returns
    -------
    Dataset
        The pool holds the rest of ``x`` (shuffled when the test set was held out), float32; labels int64.

    Raises
    ------
    ValueError
        On any other layout, NaN/inf inputs, labels that are not class ids or names, mismatched lengths; the
        message names the argument and the fix.

    Examples
    --------
    >>> x = np.random.default_rng(0).integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    >>> ds = from_arrays(x, ["cat", "dog"] * 10)
    >>> ds.x_pool.shape, ds.x_pool.dtype, ds.x_pool.max() <= 1, ds.class_names, ds.kind
    ((16, 28, 28, 1), dtype('float32'), np.True_, ['cat', 'dog'], 'images')
    >>> from_arrays(np.zeros((6, 3)), [0.0, 1.0, 2.0, 0.0, 1.0, 0.5])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: y must hold integer class ids 0..C-1 (found 0.5 at row 5); map each label to an id, e.g. y = ...
    """
    x = _inputs(x, "x")
    y = _read_labels(y, "y", len(x), "x")
    if (x_test is None) != (y_test is None):
        raise ValueError("Pass both x_test and y_test, or neither (then a test split is held out from x).")
    if x_test is not None:
        x_test = _inputs(x_test, "x_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"x_test examples have shape {x_test.shape[1:]} but x examples have {x.shape[1:]}; "
                "pass the test set in the same layout and size as x."
            )
        y_test = _read_labels(y_test, "y_test", len(x_test), "x_test")
    legacy = _FORMAT.get() < 2
    if not legacy and class_names is None and _one_hot(y) and (y_test is None or _one_hot(y_test)):
        # keras.utils.to_categorical's layout: one class per row is single-label, whatever the shape says.
        class_names = [str(i) for i in range(y.shape[1])]
        y, y_test = y.argmax(1), None if y_test is None else y_test.argmax(1)
    given_names = class_names is not None
    y, y_test, names = _class_ids(y, y_test, class_names)
    if y.ndim == 1 and not given_names and not legacy:
        _check_no_missing_ids(y, y_test, len(names))
    if y.ndim == 1 and len(names) < 2:
        raise ValueError(
            f"y holds one class ({names[0]!r}); active learning needs at least two classes: add "
            "examples of the others (or pass class_names to declare them)."
        )
    if x_test is None:
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not 0 < test_fraction < 1:
            raise ValueError(
                f"test_fraction must be in (0, 1), got {test_fraction!r}; e.g. test_fraction=0.2, or "
                "pass x_test and y_test."
            )
        pool, test = _random_split(len(y), test_fraction) if y.ndim == 2 else _stratified_split(y, test_fraction)
        if not len(test):
            raise ValueError(
                f"x has {len(x)} rows, and test_fraction={test_fraction} of them"
                f"{'' if y.ndim == 2 else ' (of each class)'} rounds to no test rows; pass more "
                "examples, a larger test_fraction, or x_test and y_test."
            )
        if not len(pool):
            raise ValueError(
                f"x has {len(x)} rows, and holding out test_fraction={test_fraction} of them leaves no "
                "pool; pass more examples, a smaller test_fraction, or x_test and y_test."
            )
        x, y, x_test, y_test = x[pool], y[pool], x[test], y[test]
    return Dataset(name, _as_float(x), y, _as_float(x_test), y_test, names)


# ---------------------------------------------------------------------------------------------------------------
# Folders: images in class sub-folders, or x.npy + y.npy
# ---------------------------------------------------------------------------------------------------------------

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_PROGRESS_MIN_FILES = 2000  # below this, reading takes a few seconds at most: no progress bar
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


def _visible(p: Path | str) -> bool:
    # Hidden entries (.ipynb_checkpoints, .DS_Store, macOS ._ files) and zip debris are never classes or images.
    name = p if isinstance(p, str) else p.name
    return not name.startswith(".") and name != "__MACOSX"


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def _show(path: Path, root: Path) -> str:
    """``path`` relative to the folder the user passed, with forward slashes (as in the messages' examples)."""
    return path.relative_to(root).as_posix()


def _class_files(folder: Path, root: Path, where: str) -> tuple[list[str], list[list[Path]]]:
    """Class names (sorted sub-folder names) and each class's image files, found recursively and sorted."""
    classes = _subfolders(folder)
    here = repr(where if folder == root else f"{where}/{_show(folder, root)}")
    if not classes:
        entries = sorted(p.name for p in folder.iterdir() if _visible(p))
        if not entries:
            raise ValueError(
                f"folder {here} is empty; put each class's images in its own sub-folder "
                "(FOLDER/cat/*.png, FOLDER/dog/*.png), or save x.npy and y.npy in it."
            )
        image_names = [e for e in entries if Path(e).suffix.lower() in _IMAGE_EXTENSIONS]
        what = f"images ({image_names[0]}, ...)" if image_names else f"only other files ({entries[0]}, ...)"
        raise ValueError(
            f"folder {here} holds {what} but no class sub-folders; move each class's images into "
            "its own sub-folder (FOLDER/cat/*.png, FOLDER/dog/*.png), or save x.npy and y.npy in it."
        )
    files: list[list[Path]] = []
    for c in classes:
        found = sorted(p for p in c.rglob("*") if p.is_file() and all(_visible(q) for q in p.relative_to(c).parts))
        images = [p for p in found if p.suffix.lower() in _IMAGE_EXTENSIONS]
        if not images:
            other = f" (it holds {len(found)} other files, e.g. {found[0].name})" if found else ""
            raise ValueError(
                f"class folder {where + '/' + _show(c, root)!r} holds no images "
                f"({', '.join(_IMAGE_EXTENSIONS)}){other}; add its images, convert them to PNG, or "
                "remove the folder."
            )
        files.append(images)
    return [c.name for c in classes], files


def _pixel_kind(im: Any) -> str:
    """ "gray16" (16/32-bit grayscale), "gray" or "color", from the header (palettes are read for "P" images)."""
    if im.mode.startswith("I"):
        return "gray16"
    if im.mode in _GRAY_MODES:
        return "gray"
    if im.mode in ("P", "PA"):
        pal = im.getpalette() or []
        return "gray" if all(pal[i] == pal[i + 1] == pal[i + 2] for i in range(0, len(pal) - 2, 3)) else "color"
    return "color"


def _decode(im: Any, gray: bool, size: tuple[int, int] | None) -> np.ndarray:
    """One image as ``(h, w, 1)`` or ``(h, w, 3)``: uint8, or float32 in [0, 1] for 16-bit grayscale.
    Transparent pixels are composited onto white; ``size`` is Pillow's (width, height)."""
    from PIL import Image

    scale = None
    if im.mode.startswith("I"):
        im, scale = im.convert("F"), 65535.0  # 16-bit: "L" would clip at 255, not rescale
    elif im.mode in _ALPHA_MODES or "transparency" in im.info:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        white.alpha_composite(im.convert("RGBA"))
        im = white.convert("L" if gray else "RGB")
    else:
        im = im.convert("L" if gray else "RGB")
    if size is not None and im.size != size:
        im = im.resize(size, Image.Resampling.BILINEAR)
    a = np.asarray(im)
    if scale is not None:
        a = np.clip(a / np.float32(scale), 0, 1).astype(np.float32)
    if a.ndim == 2:
        a = a[..., None] if gray else np.repeat(a[..., None], 3, axis=2)  # a 16-bit gray image among color ones
    return a


def _read_images(files: list[Path], root: Path, where: str, image_size: tuple[int, int] | None) -> np.ndarray:
    """Read ``files`` into one array ``(n, h, w, c)``: uint8 (float32 in [0, 1] when any image is 16-bit).
    A first pass reads headers only, so a folder of mixed sizes fails in seconds, not after decoding."""
    from PIL import Image
    from tqdm.auto import tqdm

    quiet = len(files) <= _PROGRESS_MIN_FILES
    sizes, kinds = [], set()
    for path in tqdm(files, desc=f"checking {root.name}", unit="file", leave=False, disable=quiet):
        try:
            with Image.open(path) as im:
                sizes.append(im.size)
                kinds.add(_pixel_kind(im))
        except Exception as err:  # Pillow raises many types for a broken file; all mean "cannot read it"
            raise ValueError(
                f"cannot read image {where + '/' + _show(path, root)!r} ({_one_line(err)}); remove or replace the file."
            ) from None
    if image_size is not None:
        height, width = image_size
    elif len(set(sizes)) > 1:
        order = sorted(range(len(files)), key=files.__getitem__)  # examples in folder order, not reading order
        i = order[0]
        j = next(k for k in order if sizes[k] != sizes[i])
        (wa, ha), (wb, hb) = sizes[i], sizes[j]  # Pillow sizes are (width, height); messages say height x width
        raise ValueError(
            f"images in {where!r} have different sizes (e.g. {ha}x{wa} in {_show(files[i], root)} and "
            f"{hb}x{wb} in {_show(files[j], root)}); pass image_size=(height, width) "
            "(cmal run --image-size H W)."
        )
    else:
        width, height = sizes[0]
    gray = kinds <= {"gray", "gray16"}
    dtype = np.float32 if "gray16" in kinds else np.uint8
    out = np.empty((len(files), height, width, 1 if gray else 3), dtype=dtype)
    for i, path in enumerate(tqdm(files, desc=f"reading {root.name}", unit="image", leave=False, disable=quiet)):
        try:
            with Image.open(path) as im:
                a = _decode(im, gray, (width, height))
        except Exception as err:  # e.g. a truncated file whose header was fine
            raise ValueError(
                f"cannot read image {where + '/' + _show(path, root)!r} ({_one_line(err)}); remove or replace the file."
            ) from None
        out[i] = a / np.float32(255.0) if dtype == np.float32 and a.dtype == np.uint8 else a
    return out


def _check_image_size(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if (
        isinstance(image_size, (str, bytes))
        or not hasattr(image_size, "__len__")
        or len(image_size) != 2
        or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in image_size)
    ):
        raise ValueError(
            f"image_size must be (height, width), two positive integers, got {image_size!r}; e.g. image_size=(64, 64)."
        )
    return int(image_size[0]), int(image_size[1])


def _load_image_folder(root: Path, where: str, name: str, image_size: tuple[int, int] | None) -> Dataset:
    subs = {p.name for p in _subfolders(root)}
    split_layout = {"train", "test"} <= subs
    for have, missing in (("train", "test"), ("test", "train")):
        if have in subs and missing not in subs and _subfolders(root / have):
            raise ValueError(
                f"folder {where!r} holds {have}/ with class sub-folders but no {missing}/; add "
                f"{missing}/ with the same class sub-folders, or pass {where + '/' + have!r} alone "
                "(a test split is then held out)."
            )
    if split_layout:
        names, files = _class_files(root / "train", root, where)
        test_names, test_files = _class_files(root / "test", root, where)
        extra = sorted(set(test_names) - set(names))
        if extra:
            raise ValueError(
                f"test/{extra[0]} in {where!r} has no matching train/{extra[0]}; every test class "
                "needs training images: add them, or remove the test folder."
            )
        ids = {c: i for i, c in enumerate(names)}
        test_labels = [ids[c] for c in test_names]
    else:
        names, files = _class_files(root, root, where)
        test_files, test_labels = [], []
    if len(names) < 2:
        raise ValueError(
            f"folder {where!r} has one class sub-folder ({names[0]}); active learning needs at least "
            "two classes: add a sub-folder per class."
        )
    rng = np.random.default_rng(_SPLIT_SEED)

    def shuffled(groups: list[list[Path]], labels: list[int]) -> tuple[list[Path], np.ndarray]:
        # Read in shuffled order, so that pool_size/test_size prefixes mix classes without copying the arrays.
        flat = [(f, k) for fs, k in zip(groups, labels) for f in fs]
        order = rng.permutation(len(flat))
        return [flat[i][0] for i in order], np.array([flat[i][1] for i in order], dtype=np.int64)

    pool_files, y = shuffled(files, list(range(len(names))))
    test_paths, y_test = shuffled(test_files, test_labels)
    x = _read_images(pool_files + test_paths, root, where, image_size)
    if not split_layout:
        return from_arrays(x, y, class_names=names, name=name)
    n = len(pool_files)
    return from_arrays(x[:n], y, x_test=x[n:], y_test=y_test, class_names=names, name=name)


def _load_npy_folder(root: Path, where: str, name: str) -> Dataset:
    def load(fname: str) -> np.ndarray:
        try:
            a = np.load(root / fname, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(
                f"cannot read {where + '/' + fname!r} as a numpy .npy file without pickle "
                f"({_one_line(err)}); save a numeric or string array with np.save."
            ) from None
        if not isinstance(a, np.ndarray):
            a.close()
            raise ValueError(
                f"{where + '/' + fname!r} is an .npz archive, not one .npy array; save the array alone with np.save."
            )
        return a

    if not (root / "y.npy").is_file():
        raise ValueError(
            f"folder {where!r} holds x.npy but no y.npy; save the labels next to it: np.save('y.npy', labels)."
        )
    has_test = [(root / f).is_file() for f in ("x_test.npy", "y_test.npy")]
    if any(has_test) and not all(has_test):
        have, missing = ("x_test.npy", "y_test.npy") if has_test[0] else ("y_test.npy", "x_test.npy")
        raise ValueError(
            f"folder {where!r} holds {have} but no {missing}; add {missing}, or remove {have} "
            "(a test split is then held out)."
        )
    names = None
    if (root / "class_names.txt").is_file():
        try:
            lines = (root / "class_names.txt").read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError:
            raise ValueError(
                f"{where + '/class_names.txt'!r} is not UTF-8 text; save it as UTF-8, one class name per line."
            ) from None
        names = [line.strip() for line in lines if line.strip()]
    x_test, y_test = (load("x_test.npy"), load("y_test.npy")) if all(has_test) else (None, None)
    return from_arrays(load("x.npy"), load("y.npy"), x_test=x_test, y_test=y_test, class_names=names, name=name)


def load_folder(path: str | os.PathLike, *, image_size: tuple[int, int] | None = None) -> Dataset:
    """Load a dataset from a folder, without TensorFlow (images are read with Pillow).

    Two layouts:

    - ``.npy`` arrays: ``x.npy`` and ``y.npy``, optionally ``x_test.npy`` + ``y_test.npy`` and ``class_names.txt``
      (one name per line); read without pickle, then as :func:`from_arrays` reads arrays. A folder holding
      ``x.npy`` is read this way.
    - images in class sub-folders, as ``keras.utils.image_dataset_from_directory(labels="inferred")``:
      ``root/cat/*.png``, ``root/dog/*.jpg`` (sub-folders searched recursively; .png, .jpg, .jpeg, .bmp, .gif
      (first frame); hidden files ignored). Class names are the sorted sub-folder names. When the root holds
      ``train/`` and ``test/``, each with class sub-folders, they are the pool and the test set (other
      sub-folders, e.g. ``val/``, are not read); otherwise a stratified 20% test split is held out. Images are
      1-channel when every image is grayscale, else RGB (transparency composited onto white), float32 in
      [0, 1]. A progress bar shows for more than 2,000 files.

    Parameters
    ----------
    path : str or path
        The folder; its name is the dataset's name.
    image_size : (height, width), optional
        Resize every image to this size (bilinear). Needed when the images' sizes differ.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     np.save(f"{tmp}/x.npy", np.zeros((30, 5), np.float32))
    ...     np.save(f"{tmp}/y.npy", np.array(["cat", "dog", "fish"] * 10))
    ...     ds = load_folder(tmp)
    >>> ds.n_pool, ds.x_test.shape, ds.class_names, ds.kind
    (24, (6, 5), ['cat', 'dog', 'fish'], 'features')
    """
    root = Path(path).expanduser()
    where = str(path).rstrip("/\\") or str(path)  # messages join sub-paths with "/"
    if not root.is_dir():
        raise ValueError(
            f"{where!r} is not a folder; pass a folder of class sub-folders of images, or of x.npy and y.npy."
        )
    image_size = _check_image_size(image_size)
    name = root.resolve().name or where
    if (root / "x.npy").is_file():
        if image_size is not None:
            raise ValueError(
                f"image_size resizes images, but {where!r} holds .npy arrays; resize them before "
                "saving, or leave image_size out."
            )
        return _load_npy_folder(root, where, name)
    npy = sorted(p.name for p in root.glob("*.npy"))
    if npy:
        raise ValueError(
            f"folder {where!r} holds .npy files ({', '.join(npy[:3])}) but no x.npy; name the inputs "
            "x.npy and the labels y.npy (optionally x_test.npy and y_test.npy)."
        )
    return _load_image_folder(root, where, name, image_size)


def load_npz(path: str | os.PathLike) -> Dataset:
    """Load a dataset from an ``.npz`` file (never unpickled).

    The file holds either ``x_pool, y_pool, x_test, y_test`` or ``x, y`` (a test split is then held out), and
    optionally ``class_names`` (an array of strings). Arrays are read as :func:`from_arrays` reads them.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Dataset file {str(path)!r} does not exist; pass a path to an .npz file.")
    arrays: dict[str, np.ndarray] = {}  # filled from an .npz archive; anything else is refused below
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded as f:
                arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError) as err:
        hint = (
            " (an array of Python objects, e.g. labels from a pandas column: convert it first, "
            "y = np.asarray(y).astype(str) for names or .astype(int) for ids)"
            if "Object arrays" in str(err)
            else ""
        )
        raise ValueError(
            f"Cannot read {str(path)!r} as a numpy .npz file without pickle: {_one_line(err)}{hint}; "
            "save numeric or string arrays with np.savez('mine.npz', x=images, y=labels)."
        ) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(_single_npy_message(path, np.shape(loaded)))
    names = [str(c) for c in arrays["class_names"]] if "class_names" in arrays else None
    if {"x_pool", "y_pool", "x_test", "y_test"} <= arrays.keys():
        return from_arrays(
            arrays["x_pool"],
            arrays["y_pool"],
            x_test=arrays["x_test"],
            y_test=arrays["y_test"],
            class_names=names,
            name=path.stem,
        )
    if {"x", "y"} <= arrays.keys():
        return from_arrays(arrays["x"], arrays["y"], class_names=names, name=path.stem)
    raise ValueError(
        f"{str(path)!r} holds arrays {sorted(arrays)}; it needs x_pool, y_pool, x_test, y_test (or x and y): "
        "np.savez('mine.npz', x=images, y=labels)."
    )


def _single_npy_message(path: Path, shape: tuple[int, ...] | None) -> str:
    holds = f" holds one array of shape {shape} (an .npy file)" if shape is not None else " is a single .npy array"
    return (
        f"{str(path)!r}{holds}, not a dataset; put x.npy and y.npy in a folder and pass the "
        "folder, or save images and labels together: np.savez('mine.npz', x=images, y=labels)."
    )


def is_named_dataset(name: Any) -> bool:
    """True when ``name`` names a dataset rather than a path: a name from :func:`available_datasets` or
    ``"tfds:NAME"`` (code that treats other strings as paths, e.g. to make them absolute, checks this first).

    Examples
    --------
    >>> is_named_dataset("MNIST"), is_named_dataset("tfds:fashion_mnist"), is_named_dataset("data/pets")
    (True, True, False)
    """
    text = os.fspath(name) if isinstance(name, (str, os.PathLike)) else None
    if not isinstance(text, str):
        return False
    text = text.lower()
    return text in available_datasets() or (text.startswith("tfds:") and len(text) > 5)


def load_dataset(
    name: str | os.PathLike = "mnist",
    *,
    pool_size: int | None = None,
    test_size: int | None = None,
    data_dir: str | None = None,
    image_size: tuple[int, int] | None = None,
) -> Dataset:
    """Load a dataset by name or path.

    Parameters
    ----------
    name : str or path
        ``"mnist"`` (default; bundled MNIST test set: pool 8,000, test 2,000), ``"mnist-pairs"`` (multi-label:
        two real digits side by side, labels = the set of digits shown), ``"repeated-mnist"`` (each of 2,666
        pool digits 3 times with pixel noise: a redundant pool), ``"redundant-mnist"`` (each of 1,600 pool
        digits 5 times with pixel noise: heavy near-duplication), ``"imbalanced-mnist"`` (a long-tailed pool of
        1,910 digits, class sizes falling geometrically from 714 for "0" to 11 for "9"; balanced test set),
        ``"digits"`` (pool 1,438, test 359);
        ``"cifar10"``, ``"cifar100"``, ``"svhn"`` or ``"tfds:NAME"`` for any tensorflow-datasets dataset (e.g.
        ``"tfds:fashion_mnist"``; pool = its train split, test = its test split, else validation, else a
        stratified 20% of train);
        a path to an ``.npz`` file (:func:`load_npz`), or to a folder (:func:`load_folder`): images in class
        sub-folders (``FOLDER/cat/*.png``, optionally under ``FOLDER/train`` and ``FOLDER/test``) or ``x.npy``
        and ``y.npy``.
    pool_size, test_size : int, optional
        Keep only the first rows of the (deterministically shuffled) pool / test set, for quick runs.
    data_dir : str, optional
        tensorflow-datasets cache folder.
    image_size : (height, width), optional
        For an image folder: resize every image to this size (needed when their sizes differ).

    Examples
    --------
    >>> ds = load_dataset("digits", pool_size=100, test_size=50)
    >>> ds.x_pool.shape, ds.x_test.shape, ds.kind
    ((100, 8, 8, 1), (50, 8, 8, 1), 'images')
    """
    if not isinstance(name, (str, os.PathLike)):
        what = type(name).__name__ if isinstance(name, Dataset) or hasattr(name, "__len__") else repr(name)
        raise ValueError(
            f"dataset must be a name or a path, got {what}; e.g. 'mnist' or 'data/pets'. For arrays "
            "in memory, save them first, np.savez('mine.npz', x=x, y=y), and pass 'mine.npz' (a run "
            "reloads its data from there when it resumes)."
        )
    text = os.fspath(name) if isinstance(name, os.PathLike) else name
    text = text.decode() if isinstance(text, bytes) else text
    key = text.lower()
    path = Path(text).expanduser()
    is_folder = not is_named_dataset(key) and path.is_dir()
    if image_size is not None and not is_folder:
        raise ValueError(
            f"image_size resizes the images of an image folder, and {text!r} is not a folder; "
            "leave image_size out (arrays in an .npz or .npy file are used at their own size)."
        )
    if key in ("mnist", "digits"):
        x, y = _load_mnist() if key == "mnist" else _load_digits()
        pool, test = _stratified_split(y, 0.2)
        ds = Dataset(key, x[pool], y[pool], x[test], y[test], [str(i) for i in range(10)])
    elif key == "mnist-pairs":
        ds = _load_mnist_pairs()
    elif key == "repeated-mnist":
        ds = repeated(load_dataset("mnist"))
    elif key == "redundant-mnist":
        ds = replace(repeated(subset(load_dataset("mnist"), pool_size=1600 * 5), copies=5), name=key)
    elif key == "imbalanced-mnist":
        ds = replace(long_tailed(load_dataset("mnist"), imbalance=64.0), name=key)
    elif key in _TFDS:
        ds = _load_tfds(_TFDS[key], data_dir, key)
        ds = replace(ds, name=key)
    elif key.startswith("tfds:"):
        tfds_name = text[5:].strip()
        if not tfds_name:
            raise ValueError("tfds: needs a tensorflow-datasets name after the colon, e.g. 'tfds:fashion_mnist'.")
        ds = _load_tfds(tfds_name, data_dir, text)
    elif is_folder:
        ds = load_folder(path, image_size=image_size)
    elif key.endswith(".npy"):
        if not path.is_file():
            raise ValueError(
                f"Dataset file {text!r} does not exist; pass a folder holding x.npy and y.npy, or an .npz file."
            )
        raise ValueError(_single_npy_message(Path(text), None))
    elif key.endswith(".npz") or path.is_file():
        ds = load_npz(path)
    elif "/" in text or os.sep in text or text.startswith(("~", ".")):
        raise ValueError(
            f"Dataset path {text!r} does not exist; pass an existing folder or .npz file, or a "
            f"name: {', '.join(available_datasets())}."
        )
    else:
        raise ValueError(
            f"Unknown dataset {text!r}; choose one of {', '.join(available_datasets())}, tfds:NAME (any "
            f"tensorflow-datasets name: if {text!r} is one, write 'tfds:{text}'), or pass a path to an .npz file "
            "or a folder."
        )
    return subset(ds, pool_size=pool_size, test_size=test_size)


def subset(ds: Dataset, *, pool_size: int | None = None, test_size: int | None = None) -> Dataset:
    """Keep the first ``pool_size`` pool rows and ``test_size`` test rows (both shuffled at load time)."""
    if pool_size is not None:
        pool_size = check_int(pool_size, "pool_size", minimum=2, maximum=ds.n_pool)
    if test_size is not None:
        test_size = check_int(test_size, "test_size", minimum=1, maximum=int(ds.x_test.shape[0]))
    p, t = slice(pool_size), slice(test_size)
    return Dataset(
        ds.name,
        ds.x_pool[p],
        ds.y_pool[p],
        ds.x_test[t],
        ds.y_test[t],
        ds.class_names,
        ds.image_shape,
        sources=None if ds.sources is None else ds.sources[p],
    )
