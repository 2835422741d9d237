"""Datasets as numpy arrays plus metadata.

Every loader returns a :class:`Dataset`: a pool (what active learning labels from) and a held-out test set,
images as float32 ``(n, height, width, channels)`` in [0, 1], integer labels, class names.

Offline sources: ``"mnist"`` (the real MNIST test set, 10,000 digits bundled inside this package),
``"digits"`` (scikit-learn's bundled 8x8 digits), user arrays (:func:`from_arrays`) and ``.npz`` files
(:func:`load_npz`). ``"cifar10"``, ``"cifar100"`` and ``"svhn"`` come from tensorflow-datasets and need its
package and, the first time, the network.

Examples
--------
>>> from cmal.data import load_dataset
>>> ds = load_dataset("digits")
>>> ds.x_pool.shape, ds.x_test.shape, ds.n_classes
((1438, 8, 8, 1), (359, 8, 8, 1), 10)
"""

from __future__ import annotations

import gzip
import hashlib
import numbers
import os
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from cmal._validation import check_int

__all__ = ["Dataset", "DatasetUnavailableError", "available_datasets", "from_arrays", "load_dataset", "load_npz",
           "long_tailed", "repeated"]

# The pool/test split must not depend on the run's seed: every run and strategy sees the same pool.
_SPLIT_SEED = 20210729
_TFDS = {"cifar10": "cifar10", "cifar100": "cifar100", "svhn": "svhn_cropped"}


class DatasetUnavailableError(RuntimeError):
    """A dataset cannot be loaded here (package missing, no network); the message says which and why."""


@dataclass(frozen=True)
class Dataset:
    """A pool and a held-out test set.

    Attributes
    ----------
    name : str
    x_pool : ndarray (n_pool, ...) float32
    y_pool : ndarray (n_pool,) int64 — the simulated oracle's answers
    x_test : ndarray (n_test, ...) float32
    y_test : ndarray (n_test,) int64
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
            raise ValueError(f"sources must have one entry per pool item, shape ({self.n_pool},), "
                             f"got {np.shape(self.sources)}.")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def multilabel(self) -> bool:
        """True when labels are a 0/1 matrix (n, C): several classes per example."""
        return self.y_pool.ndim == 2

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
            "multilabel": self.multilabel,
            "fingerprint": self.fingerprint(),
        }


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (besides paths to ``.npz`` files)."""
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
    return Dataset(f"repeated-{ds.name}", x[order].astype(np.float32), ds.y_pool[idx][order], ds.x_test, ds.y_test,
                   ds.class_names, ds.image_shape, sources=sources[order].astype(np.int64))


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
    if isinstance(imbalance, bool) or not isinstance(imbalance, numbers.Real) or not np.isfinite(imbalance) \
            or imbalance < 1:
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
    return Dataset(f"long-tailed-{ds.name}", ds.x_pool[keep], ds.y_pool[keep], ds.x_test, ds.y_test,
                   ds.class_names, ds.image_shape, sources=None if ds.sources is None else ds.sources[keep])


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
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
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


def _load_tfds(name: str, data_dir: str | None) -> Dataset:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DatasetUnavailableError(
            f"Dataset {name!r} is loaded through tensorflow-datasets, which is not installed; "
            "run `pip install tensorflow-datasets` (and have network access the first time it downloads)."
        ) from None
    try:
        splits = tfds.load(_TFDS[name], split=["train", "test"], as_supervised=True, batch_size=-1,
                           data_dir=data_dir)
        info = tfds.builder(_TFDS[name], data_dir=data_dir).info
    except Exception as err:  # tfds raises many types (network, checksum, disk); all mean "not available here"
        raise DatasetUnavailableError(
            f"Dataset {name!r} could not be loaded through tensorflow-datasets: {type(err).__name__}: {err}. "
            "The first load downloads it and needs network access; offline, use 'mnist', 'digits' or an .npz file."
        ) from None
    (xtr, ytr), (xte, yte) = (tfds.as_numpy(s) for s in splits)
    return Dataset(
        name=name,
        x_pool=xtr.astype(np.float32) / 255.0,
        y_pool=ytr.astype(np.int64),
        x_test=xte.astype(np.float32) / 255.0,
        y_test=yte.astype(np.int64),
        class_names=list(info.features["label"].names),
    )


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
    x : array (n, ...)
        Inputs (images ``(n, h, w, c)``, or feature vectors ``(n, d)``), cast to float32.
    y : array (n,)
        Integer class labels ``0..C-1``.
    x_test, y_test : arrays, optional
        A held-out set; when absent, a stratified ``test_fraction`` of ``x`` is held out deterministically.
    class_names : list of str, optional
        Defaults to ``["0", "1", ...]``.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 2:
        raise ValueError(f"x must have one row per example (at least 2-D), got shape {x.shape}.")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be 1-D with one label per row of x ({x.shape[0]}), got shape {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer class labels 0..C-1, got dtype {y.dtype}.")
    if y.size and y.min() < 0:
        raise ValueError(f"y must hold class labels >= 0, found {y.min()}.")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise ValueError("x must be numeric with no NaN or inf.")
    if (x_test is None) != (y_test is None):
        raise ValueError("Pass both x_test and y_test, or neither (then a test split is held out from x).")
    if x_test is None:
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
        pool, test = _stratified_split(y, test_fraction)
        x, y, x_test, y_test = x[pool], y[pool], x[test], y[test]
    else:
        x_test, y_test = np.asarray(x_test), np.asarray(y_test)
        if x_test.shape[1:] != x.shape[1:] or y_test.shape != (x_test.shape[0],):
            raise ValueError(
                f"x_test/y_test shapes {x_test.shape}/{y_test.shape} do not match x {x.shape[1:]} per example."
            )
    n_classes = int(max(y.max(initial=0), np.max(y_test, initial=0))) + 1
    if class_names is None:
        class_names = [str(i) for i in range(n_classes)]
    elif len(class_names) < n_classes:
        raise ValueError(f"class_names has {len(class_names)} names but labels go up to {n_classes - 1}.")
    return Dataset(name, x.astype(np.float32), y.astype(np.int64), np.asarray(x_test, np.float32),
                   np.asarray(y_test).astype(np.int64), list(class_names))


def load_npz(path: str | os.PathLike) -> Dataset:
    """Load a dataset from an ``.npz`` file (never unpickled).

    The file holds either ``x_pool, y_pool, x_test, y_test`` or ``x, y`` (a test split is then held out), and
    optionally ``class_names`` (an array of strings).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Dataset file {str(path)!r} does not exist; pass a path to an .npz file.")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded as f:
                arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"Cannot read {str(path)!r} as a numpy .npz file without pickle: {err}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{str(path)!r} holds one array of shape {np.shape(loaded)} (an .npy file), not a dataset; "
                         "save images and labels together: np.savez('mine.npz', x=images, y=labels).")
    names = [str(c) for c in arrays["class_names"]] if "class_names" in arrays else None
    if {"x_pool", "y_pool", "x_test", "y_test"} <= arrays.keys():
        return from_arrays(arrays["x_pool"], arrays["y_pool"], x_test=arrays["x_test"], y_test=arrays["y_test"],
                           class_names=names, name=path.stem)
    if {"x", "y"} <= arrays.keys():
        return from_arrays(arrays["x"], arrays["y"], class_names=names, name=path.stem)
    raise ValueError(
        f"{str(path)!r} holds arrays {sorted(arrays)}; it needs x_pool, y_pool, x_test, y_test (or x and y)."
    )


def load_dataset(
    name: str = "mnist",
    *,
    pool_size: int | None = None,
    test_size: int | None = None,
    data_dir: str | None = None,
) -> Dataset:
    """Load a dataset by name or ``.npz`` path.

    Parameters
    ----------
    name : str
        ``"mnist"`` (default; bundled MNIST test set: pool 8,000, test 2,000), ``"mnist-pairs"`` (multi-label:
        two real digits side by side, labels = the set of digits shown), ``"repeated-mnist"`` (each of 2,666
        pool digits 3 times with pixel noise: a redundant pool), ``"redundant-mnist"`` (each of 1,600 pool
        digits 5 times with pixel noise: heavy near-duplication), ``"imbalanced-mnist"`` (a long-tailed pool of
        1,910 digits, class sizes falling geometrically from 714 for "0" to 11 for "9"; balanced test set),
        ``"digits"`` (pool 1,438, test
        359), ``"cifar10"``, ``"cifar100"``, ``"svhn"`` (tensorflow-datasets), or a path to an ``.npz`` file.
    pool_size, test_size : int, optional
        Keep only the first rows of the (deterministically shuffled) pool / test set, for quick runs.
    data_dir : str, optional
        tensorflow-datasets cache folder.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise ValueError(f"dataset name must be a string, got {name!r}.")
    key = str(name).lower()
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
        ds = _load_tfds(key, data_dir)
    elif str(name).endswith(".npz") or Path(name).is_file():
        ds = load_npz(name)
    else:
        raise ValueError(
            f"Unknown dataset {str(name)!r}; choose one of {', '.join(available_datasets())} or pass an .npz path."
        )
    return subset(ds, pool_size=pool_size, test_size=test_size)


def subset(ds: Dataset, *, pool_size: int | None = None, test_size: int | None = None) -> Dataset:
    """Keep the first ``pool_size`` pool rows and ``test_size`` test rows (both shuffled at load time)."""
    if pool_size is not None:
        pool_size = check_int(pool_size, "pool_size", minimum=2, maximum=ds.n_pool)
    if test_size is not None:
        test_size = check_int(test_size, "test_size", minimum=1, maximum=int(ds.x_test.shape[0]))
    p, t = slice(pool_size), slice(test_size)
    return Dataset(ds.name, ds.x_pool[p], ds.y_pool[p], ds.x_test[t], ds.y_test[t], ds.class_names, ds.image_shape,
                   sources=None if ds.sources is None else ds.sources[p])
