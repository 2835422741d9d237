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
        ((np.zeros(5), np.zeros(5, int)), {}, r"one row per example.*\(n, features\).*reshape\(-1, 1\)"),
        ((np.zeros((5, 2)), np.zeros(4, int)), {}, "one label per row"),
        ((np.zeros((5, 2)), np.array([0, 1, 0, 1.5, 0])), {}, "integer class ids"),
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


# --- user arrays in every common layout ------------------------------------------------------------------------


def test_grayscale_uint8_images_get_a_channel_and_are_scaled_once(rng):
    x = rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    x[0, 0, 0], x[1, 0, 0] = 255, 0
    ds = from_arrays(x, np.arange(40) % 4, x_test=x[:8], y_test=np.arange(8) % 4)
    assert ds.x_pool.shape == (40, 28, 28, 1) and ds.x_test.shape == (8, 28, 28, 1) and ds.kind == "images"
    assert ds.x_pool.dtype == np.float32 and ds.x_pool.max() == 1.0 and ds.x_pool.min() == 0.0
    np.testing.assert_array_equal(ds.x_pool[..., 0], x.astype(np.float32) / 255)  # divided once, not twice
    assert ds.image_shape == (28, 28, 1)


def test_color_images_and_feature_vectors_keep_their_layout(rng):
    x = rng.integers(0, 256, size=(30, 32, 32, 3), dtype=np.uint8)
    ds = from_arrays(x, np.arange(30) % 3)
    assert ds.x_pool.shape[1:] == (32, 32, 3) and ds.x_pool.max() <= 1 and ds.kind == "images"
    feats = rng.normal(size=(50, 64)) * 100  # not uint8: cast unchanged, never rescaled
    ds = from_arrays(feats, np.arange(50) % 2)
    assert ds.x_pool.shape[1:] == (64,) and ds.kind == "features" and ds.x_pool.dtype == np.float32
    assert np.abs(ds.x_pool).max() > 100 and {tuple(r) for r in ds.x_pool} <= {
        tuple(r) for r in feats.astype(np.float32)
    }
    f32 = rng.normal(size=(10, 4)).astype(np.float32)
    same = from_arrays(f32, np.arange(10) % 2, x_test=f32, y_test=np.arange(10) % 2)
    assert np.shares_memory(same.x_pool, f32)  # float32 input: no needless copy


@pytest.mark.parametrize("shape, fix", [((12,), r"reshape\(-1, 1\)"), ((12, 2, 3, 4, 1), r"reshape\(len\(x\), -1\)")])
def test_other_ranks_are_refused_with_the_accepted_layouts(shape, fix):
    with pytest.raises(
        ValueError,
        match=r"x must have one row per example, as images \(n, height, width, channels\), "
        r"grayscale images \(n, height, width\) or feature vectors \(n, features\); "
        rf"got shape .*{fix}",
    ):
        from_arrays(np.zeros(shape), np.arange(12) % 2)


def test_fractional_float_labels_say_where_and_how_to_fix():
    y = np.array([0.0, 1.0, 2.0, 0.5, 1.0, 2.0])
    with pytest.raises(ValueError) as err:
        from_arrays(np.zeros((6, 2)), y)
    msg = str(err.value)
    assert msg.startswith("y must hold integer class ids 0..C-1 (found 0.5 at row 3); ") and "np.unique" in msg
    assert "\n" not in msg
    with pytest.raises(ValueError, match=r"found nan at row 1.*drop the unlabeled rows"):
        from_arrays(np.zeros((3, 2)), [0.0, np.nan, 1.0])


def test_integer_valued_float_labels_are_class_ids():
    ds = from_arrays(
        np.arange(60.0).reshape(30, 2), np.arange(30) % 3 * 1.0, x_test=np.zeros((3, 2)), y_test=[2.0, 1.0, 0.0]
    )
    assert ds.y_pool.dtype == np.int64 and ds.y_pool.tolist() == (np.arange(30) % 3).tolist()
    assert ds.y_test.tolist() == [2, 1, 0] and ds.class_names == ["0", "1", "2"]


def test_string_labels_become_ids_of_the_sorted_names():
    x = np.arange(40.0).reshape(20, 2)
    y = np.array(["dog", "cat", "fish", "cat"] * 5)
    ds = from_arrays(x, y)
    assert ds.class_names == ["cat", "dog", "fish"] and ds.n_classes == 3
    # Every pool row keeps its own label: row x = [2k, 2k + 1] had label y[k].
    assert [ds.class_names[c] for c in ds.y_pool] == [y[int(r[0]) // 2] for r in ds.x_pool]
    given = from_arrays(x, y.astype(object), class_names=["fish", "dog", "cat", "bird"])  # e.g. a pandas column
    assert [given.class_names[c] for c in given.y_pool] == [y[int(r[0]) // 2] for r in given.x_pool]
    with pytest.raises(
        ValueError,
        match=r"y holds 'fish' \(row 2\), which is not in class_names \['cat', 'dog'\]; "
        "add it to class_names",
    ):
        from_arrays(x, y, class_names=["cat", "dog"])
    tested = from_arrays(x[:4], ["a", "b", "a", "b"], x_test=x[4:6], y_test=["c", "a"])
    assert tested.class_names == ["a", "b", "c"] and tested.y_test.tolist() == [2, 0]
    with pytest.raises(ValueError, match="y holds class-name strings but y_test holds class ids"):
        from_arrays(x[:4], ["a", "b", "a", "b"], x_test=x[4:6], y_test=[0, 1])


def test_boolean_labels_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"y holds booleans; pass integer class ids instead: y.astype\(int\)"):
        from_arrays(np.zeros((4, 2)), np.array([True, False, True, False]))


def test_a_column_of_ids_is_read_as_ids():
    ds = from_arrays(np.zeros((20, 2)), (np.arange(20) % 2)[:, None])  # keras.datasets' (n, 1) labels
    assert ds.y_pool.ndim == 1 and not ds.multilabel


def test_multilabel_targets(rng):
    x = rng.normal(size=(50, 6))
    y = (rng.uniform(size=(50, 4)) < 0.4).astype(np.float64)
    ds = from_arrays(x, y)
    assert ds.multilabel and ds.y_pool.dtype == np.int64 and ds.y_pool.shape == (40, 4) and ds.x_test.shape == (10, 6)
    assert ds.class_names == ["0", "1", "2", "3"]
    again = from_arrays(x, y)
    assert again.fingerprint() == ds.fingerprint()  # seeded split: the same on every call
    rows = {tuple(r): tuple(t) for r, t in zip(x.astype(np.float32), y)}
    assert all(rows[tuple(r)] == tuple(t) for r, t in zip(ds.x_test, ds.y_test))
    assert from_arrays(x, y, class_names=list("abcd")).class_names == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="class_names has 3 names but the multi-label y has 4 columns"):
        from_arrays(x, y, class_names=list("abc"))
    y[7, 2] = 2
    with pytest.raises(ValueError, match=r"multi-label 0/1 matrix, but it holds 2 at row 7, column 2"):
        from_arrays(x, y)


def test_every_error_is_one_line():
    bad = [
        ((np.zeros(5), [0] * 5), {}),
        ((np.zeros((4, 2)), [0, 1, 0]), {}),
        ((np.zeros((4, 2)), [0.5] * 4), {}),
        ((np.zeros((4, 2)), [True] * 4), {}),
        ((np.zeros((4, 2)), ["a"] * 4), {"class_names": ["b"]}),
        ((np.zeros((2, 2)), [0, 1]), {}),
        ((np.zeros((4, 2)), [0, 1] * 2), {"test_fraction": 1.5}),
        (([[1, 2], [3]], [0, 1]), {}),
    ]
    for args, kwargs in bad:
        with pytest.raises(ValueError) as err:
            from_arrays(*args, **kwargs)
        assert "\n" not in str(err.value) and "; " in str(err.value), err.value  # one line, then the fix


# --- folders -----------------------------------------------------------------------------------------------------


def _write_images(root, classes=("ant", "bee", "cat"), n=12, size=(8, 8), mode="L", ext="png", seed=0):
    """``n`` small random images per class in ``root/<class>/``; returns {relative path: pixel array}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = {}
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[0], size[1]) if mode == "L" else (size[0], size[1], len(mode))
            a = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(a, mode).save(root / c / f"{i:02d}.{ext}")
            written[f"{c}/{i:02d}.{ext}"] = a
    return written


def test_grayscale_image_folder(tmp_path):
    written = _write_images(tmp_path / "gray")
    (tmp_path / "gray" / "ant" / "notes.txt").write_text("not an image")  # other files are ignored
    (tmp_path / "gray" / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    ds = load_dataset(str(tmp_path / "gray"))
    assert ds.name == "gray" and ds.class_names == ["ant", "bee", "cat"] and ds.kind == "images"
    assert ds.x_pool.shape == (30, 8, 8, 1) and ds.x_test.shape == (6, 8, 8, 1) and ds.x_pool.dtype == np.float32
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2]  # stratified 20%
    by_pixels = {a.tobytes(): name.split("/")[0] for name, a in written.items()}
    for x, y in zip(np.concatenate([ds.x_pool, ds.x_test]), np.concatenate([ds.y_pool, ds.y_test])):
        assert by_pixels[np.round(x[..., 0] * 255).astype(np.uint8).tobytes()] == ds.class_names[y]
    assert load_dataset(tmp_path / "gray").fingerprint() == ds.fingerprint()  # deterministic, Path accepted
    assert len({ds.class_names[c] for c in ds.y_pool[:6]}) > 1  # shuffled: a pool_size prefix mixes classes


def test_rgb_image_folder_with_every_extension_and_transparency(tmp_path):
    from PIL import Image

    root = tmp_path / "rgb"
    _write_images(root, classes=("a",), n=4, mode="RGB", ext="png")
    _write_images(root, classes=("b",), n=4, mode="RGB", ext="JPG", seed=1)
    _write_images(root, classes=("c",), n=2, mode="RGB", ext="bmp", seed=2)
    _write_images(root, classes=("c",), n=2, mode="L", ext="gif", seed=3)
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(root / "a" / "clear.png")  # fully transparent -> white
    (root / "b" / "deeper").mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(root / "b" / "deeper" / "red.jpeg")  # class folders are recursive
    ds = load_dataset(str(root))
    assert ds.x_pool.shape[1:] == (8, 8, 3) and ds.n_pool + len(ds.x_test) == 14 and ds.class_names == list("abc")
    x = np.concatenate([ds.x_pool, ds.x_test])
    assert 0 <= x.min() and x.max() <= 1
    assert (x == 1).all(axis=(1, 2, 3)).sum() == 1  # the transparent image, composited onto white


def test_image_folder_sizes(tmp_path):
    root = tmp_path / "mixed"
    _write_images(root, classes=("a", "b"), n=6, size=(28, 28))
    _write_images(root, classes=("c",), n=6, size=(32, 40))
    with pytest.raises(ValueError) as err:
        load_dataset(str(root))
    assert str(err.value) == (
        f"images in {str(root)!r} have different sizes (e.g. 28x28 in a/00.png and 32x40 in "
        "c/00.png); pass image_size=(height, width) (cmal run --image-size H W)."
    )
    ds = load_dataset(str(root), image_size=(16, 12))
    assert ds.x_pool.shape[1:] == (16, 12, 1) and ds.n_pool + len(ds.x_test) == 18
    with pytest.raises(ValueError, match=r"image_size must be \(height, width\), two positive integers"):
        load_dataset(str(root), image_size=(16, 0))
    with pytest.raises(ValueError, match="image_size resizes the images of an image folder"):
        load_dataset("digits", image_size=(16, 16))


def test_16bit_grayscale_png_is_scaled_to_0_1(tmp_path):
    from PIL import Image

    for c, value in (("dark", 0), ("mid", 32768), ("bright", 65535)):
        (tmp_path / "deep" / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((4, 4), value, np.uint16)).save(tmp_path / "deep" / c / f"{i}.png")
    ds = load_dataset(str(tmp_path / "deep"))
    x = np.concatenate([ds.x_pool, ds.x_test])
    assert x.shape[1:] == (4, 4, 1) and x.dtype == np.float32
    np.testing.assert_allclose(np.unique(x), [0.0, 32768 / 65535, 1.0], rtol=1e-6)  # 16-bit: / 65535, not clipped


def test_image_folder_with_train_and_test(tmp_path):
    _write_images(tmp_path / "split" / "train", n=10)
    _write_images(tmp_path / "split" / "test", classes=("ant", "cat"), n=3, seed=9)
    ds = load_dataset(str(tmp_path / "split"))
    assert ds.name == "split" and ds.n_pool == 30 and ds.x_test.shape == (6, 8, 8, 1)
    assert ds.class_names == ["ant", "bee", "cat"] and sorted(set(ds.y_test.tolist())) == [0, 2]
    # Read in shuffled order: pool_size / test_size prefixes mix classes.
    assert len(set(ds.y_pool[:6].tolist())) > 1 and len(set(ds.y_test[:3].tolist())) > 1
    _write_images(tmp_path / "split" / "test", classes=("dog",), n=1)
    with pytest.raises(ValueError, match="test/dog in .* has no matching train/dog"):
        load_dataset(str(tmp_path / "split"))
    _write_images(tmp_path / "only" / "train", n=2)
    with pytest.raises(ValueError, match=r"holds train/ with class sub-folders but no test/.*only/train"):
        load_dataset(str(tmp_path / "only"))


def test_image_folder_errors_name_the_fix(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is empty; put each class's images in its own sub-folder"):
        load_dataset(str(tmp_path / "empty"))
    _write_images(tmp_path / "flat", classes=("x",), n=2)
    for f in (tmp_path / "flat" / "x").iterdir():
        f.rename(tmp_path / "flat" / f.name)
    (tmp_path / "flat" / "x").rmdir()
    with pytest.raises(ValueError, match=r"holds images \(00.png, ...\) but no class sub-folders; move each class"):
        load_dataset(str(tmp_path / "flat"))
    _write_images(tmp_path / "hollow", classes=("a", "b"), n=2)
    (tmp_path / "hollow" / "c").mkdir()
    (tmp_path / "hollow" / "c" / "scan.tiff").write_bytes(b"II*")
    with pytest.raises(
        ValueError,
        match=r"class folder '.*hollow/c' holds no images \(.png, .jpg, .jpeg, .bmp, .gif\) "
        r"\(it holds 1 other files, e.g. scan.tiff\)",
    ):
        load_dataset(str(tmp_path / "hollow"))
    _write_images(tmp_path / "broken", classes=("a", "b"), n=2)
    (tmp_path / "broken" / "b" / "01.png").write_bytes(b"not a png")
    with pytest.raises(
        ValueError,
        match=r"cannot read image '.*broken/b/01.png' \(UnidentifiedImageError.*remove "
        "or replace the file",
    ):
        load_dataset(str(tmp_path / "broken"))
    _write_images(tmp_path / "lonely", classes=("a",), n=3)
    with pytest.raises(ValueError, match=r"one class sub-folder \(a\); active learning needs at least two classes"):
        load_dataset(str(tmp_path / "lonely"))


def test_image_folder_progress_bar_only_for_many_files(tmp_path, monkeypatch, capsys):
    import cmal.data

    _write_images(tmp_path / "few", n=4)
    load_dataset(str(tmp_path / "few"))
    assert "reading few" not in capsys.readouterr().err
    monkeypatch.setattr(cmal.data, "_PROGRESS_MIN_FILES", 10)
    load_dataset(str(tmp_path / "few"))
    assert "reading few" in capsys.readouterr().err


def test_image_folder_loads_without_tensorflow(tmp_path):
    import subprocess

    _write_images(tmp_path / "imgs", n=3)
    code = (
        "import sys; from cmal.data import load_dataset; ds = load_dataset(sys.argv[1]); "
        "print(ds.x_pool.shape, sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "imgs")], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "(6, 8, 8, 1) []"


def test_npy_folder(tmp_path, rng):
    root = tmp_path / "arrays"
    root.mkdir()
    x = rng.integers(0, 256, size=(30, 6, 6), dtype=np.uint8)
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", np.arange(30) % 3)
    ds = load_dataset(str(root))
    assert ds.name == "arrays" and ds.x_pool.shape == (24, 6, 6, 1) and ds.x_pool.max() <= 1
    np.save(root / "x_test.npy", x[:5])
    with pytest.raises(ValueError, match="holds x_test.npy but no y_test.npy; add y_test.npy, or remove x_test.npy"):
        load_dataset(str(root))
    np.save(root / "y_test.npy", np.array([0, 1, 2, 0, 1]))
    (root / "class_names.txt").write_text("ant\nbee\ncat\n")
    ds = load_dataset(str(root))
    assert ds.n_pool == 30 and ds.y_test.tolist() == [0, 1, 2, 0, 1] and ds.class_names == ["ant", "bee", "cat"]
    np.save(root / "y.npy", np.array([{"a": 1}] * 30, dtype=object))
    with pytest.raises(ValueError, match=r"cannot read '.*y.npy' as a numpy .npy file without pickle"):
        load_dataset(str(root))
    (root / "y.npy").unlink()
    with pytest.raises(ValueError, match="holds x.npy but no y.npy"):
        load_dataset(str(root))
    with pytest.raises(ValueError, match="image_size resizes images, but .* holds .npy arrays"):
        load_dataset(str(root), image_size=(4, 4))


def test_a_single_npy_file_points_at_both_fixes(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 2)))
    with pytest.raises(
        ValueError,
        match=r"single .npy array.*not a dataset; put x.npy and y.npy in a folder and pass "
        r"the folder, or .*np.savez\('mine.npz', x=images, y=labels\)",
    ):
        load_dataset(str(tmp_path / "x.npy"))
    with pytest.raises(ValueError, match="does not exist; pass a folder holding x.npy and y.npy, or an .npz file"):
        load_dataset(str(tmp_path / "missing.npy"))
    np.save(tmp_path / "lone.npy", np.zeros(3))
    (tmp_path / "lone.npy").rename(tmp_path / "lone.npz")
    with pytest.raises(ValueError, match="holds one array of shape .*put x.npy and y.npy in a folder"):
        load_dataset(str(tmp_path / "lone.npz"))
    with pytest.raises(ValueError, match="Dataset path 'no/such/folder' does not exist"):
        load_dataset("no/such/folder")


# --- tensorflow-datasets, any name --------------------------------------------------------------------------------


def _fake_tfds(monkeypatch, splits, n=40):
    """A stand-in ``tensorflow_datasets`` module (this tests cmal's code, not tfds): uint8 (n, 6, 6) images whose
    first pixel is the label, and ``splits`` (name -> size)."""
    import types

    calls = []

    label = types.SimpleNamespace(names=["zero", "one", "two", "three"])  # a tfds ClassLabel's one used field
    info = types.SimpleNamespace(
        splits=dict.fromkeys(splits), supervised_keys=("image", "label"), features={"image": object(), "label": label}
    )

    def load(name, *, split, as_supervised, batch_size, data_dir, with_info=False):
        assert as_supervised and batch_size == -1
        calls.append((name, split, data_dir))
        if split not in splits:
            raise ValueError(f"Unknown split {split!r}")
        y = np.arange(splits[split]) % 4
        x = np.zeros((splits[split], 6, 6), np.uint8)
        x[:, 0, 0] = y * 60
        return ((x, y), info) if with_info else (x, y)

    fake = types.ModuleType("tensorflow_datasets")
    fake.load, fake.as_numpy = load, lambda tree: tree
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    return calls


def test_tfds_any_name_uses_train_and_test(monkeypatch):
    calls = _fake_tfds(monkeypatch, {"train": 40, "validation": 12, "test": 8})
    ds = load_dataset("tfds:fashion_mnist", data_dir="/cache")
    assert calls == [("fashion_mnist", "train", "/cache"), ("fashion_mnist", "test", "/cache")]
    assert ds.name == "fashion_mnist" and ds.x_pool.shape == (40, 6, 6, 1) and ds.x_test.shape == (8, 6, 6, 1)
    assert ds.class_names == ["zero", "one", "two", "three"] and ds.x_pool.dtype == np.float32
    np.testing.assert_allclose(ds.x_pool[:, 0, 0, 0], ds.y_pool * 60 / 255, rtol=1e-6)


def test_tfds_falls_back_to_validation_then_a_held_out_split(monkeypatch):
    calls = _fake_tfds(monkeypatch, {"train": 40, "validation": 12})
    ds = load_dataset("tfds:some_set")
    assert calls[-1][1] == "validation" and ds.x_test.shape[0] == 12 and ds.n_pool == 40
    calls = _fake_tfds(monkeypatch, {"train": 40})
    ds = load_dataset("tfds:train_only")
    assert [c[1] for c in calls] == ["train"] and ds.n_pool == 32 and np.bincount(ds.y_test).tolist() == [2] * 4
    calls = _fake_tfds(monkeypatch, {"train": 40, "test": 8})
    assert load_dataset("cifar10").name == "cifar10" and calls[0][0] == "cifar10"  # the shortcuts use the same path
    with pytest.raises(ValueError, match="tfds: needs a tensorflow-datasets name"):
        load_dataset("tfds:")


def test_tfds_names_fail_clearly_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(
        DatasetUnavailableError,
        match=r"'tfds:fashion_mnist' is loaded through tensorflow-datasets, "
        r"which is not installed; run `pip install tensorflow-datasets`",
    ):
        load_dataset("tfds:fashion_mnist")


def test_is_named_dataset():
    from cmal.data import is_named_dataset

    assert is_named_dataset("mnist") and is_named_dataset("tfds:fashion_mnist") and is_named_dataset("SVHN")
    assert not is_named_dataset("tfds:") and not is_named_dataset("data/pets") and not is_named_dataset("x.npz")
