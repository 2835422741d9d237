from __future__ import annotations

import sys

import numpy as np
import pytest

from cmal.data import DatasetUnavailableError, from_arrays, load_dataset, load_npz

MNIST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # from shared/data/README.md


def test_bundled_mnist_is_the_real_test_set():
    ds = load_dataset("mnist")
    assert ds.x_pool.shape == (8000, 28, 28, 1) and ds.x_test.shape == (2000, 28, 28, 1)
    assert ds.x_pool.dtype == np.float32 and 0 <= ds.x_pool.min() and ds.x_pool.max() <= 1
    counts = np.bincount(ds.y_pool, minlength=10) + np.bincount(ds.y_test, minlength=10)
    assert counts.tolist() == MNIST_CLASS_COUNTS
    # Stratified: every class is 20% of the test set, to rounding.
    np.testing.assert_allclose(np.bincount(ds.y_test), np.array(MNIST_CLASS_COUNTS) * 0.2, atol=1)
    assert ds.image_shape == (28, 28, 1) and ds.class_names == [str(i) for i in range(10)]


def test_split_is_deterministic_and_disjoint():
    a, b = load_dataset("mnist"), load_dataset("mnist")
    assert a.fingerprint() == b.fingerprint()
    pool = {row.tobytes() for row in a.x_pool.reshape(len(a.x_pool), -1)[:2000]}
    test = {row.tobytes() for row in a.x_test.reshape(len(a.x_test), -1)}
    # MNIST has a handful of duplicate images; overlap would be thousands if the split leaked.
    assert len(pool & test) < 5


def test_digits_and_subsets():
    ds = load_dataset("digits", pool_size=100, test_size=50)
    assert ds.x_pool.shape == (100, 8, 8, 1) and ds.x_test.shape == (50, 8, 8, 1)
    assert set(np.unique(ds.y_pool)) == set(range(10))  # the shuffled prefix mixes classes
    with pytest.raises(ValueError, match="pool_size"):
        load_dataset("digits", pool_size=10**6)


def test_from_arrays_and_npz_roundtrip(tmp_path, rng):
    x = rng.uniform(size=(50, 4, 4, 1))
    y = np.arange(50) % 3
    ds = from_arrays(x, y, class_names=["a", "b", "c"])
    assert ds.n_pool + len(ds.x_test) == 50 and abs(len(ds.x_test) - 10) <= 2 and ds.n_classes == 3
    path = tmp_path / "mine.npz"
    np.savez(path, x=x, y=y, class_names=np.array(["a", "b", "c"]))
    loaded = load_dataset(str(path))
    assert loaded.fingerprint() == ds.fingerprint() and loaded.class_names == ["a", "b", "c"]
    np.savez(tmp_path / "split.npz", x_pool=x[:30], y_pool=y[:30], x_test=x[30:], y_test=y[30:])
    assert load_npz(tmp_path / "split.npz").n_pool == 30


def test_npz_never_unpickles(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(ValueError, match="without pickle"):
        load_npz(path)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((np.zeros(5), np.zeros(5, int)), {}, "at least 2-D"),
        ((np.zeros((5, 2)), np.zeros(4, int)), {}, "one label per row"),
        ((np.zeros((5, 2)), np.zeros(5)), {}, "integer class labels"),
        ((np.full((5, 2), np.nan), np.zeros(5, int)), {}, "NaN"),
        ((np.zeros((5, 2)), -np.ones(5, int)), {}, ">= 0"),
        ((np.zeros((5, 2)), np.zeros(5, int)), {"x_test": np.zeros((2, 2))}, "both"),
        ((np.zeros((5, 2)), np.arange(5) % 3), {"class_names": ["a"]}, "class_names"),
    ],
)
def test_from_arrays_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        from_arrays(*args, **kwargs)


def test_unknown_dataset_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet'.*mnist"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(str(tmp_path / "nope.npz"))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="Cannot read"):
        load_dataset(str(tmp_path / "bad.npz"))


def test_tfds_datasets_fail_clearly_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes `import tensorflow_datasets` fail
    with pytest.raises(DatasetUnavailableError, match="'cifar10'.*tensorflow-datasets"):
        load_dataset("cifar10")


def test_tfds_datasets_fail_clearly_offline(monkeypatch):
    import types

    fake = types.ModuleType("tensorflow_datasets")

    def load(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'storage.googleapis.com'")

    fake.load = load
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    with pytest.raises(DatasetUnavailableError, match="'svhn'.*ConnectionError.*network"):
        load_dataset("svhn")
