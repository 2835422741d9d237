"""Users' own data and models through `cmal run`: every input layout end to end, models by name, callable and
dotted path, and every bad input refused with exit status 2 and one line naming the fix (issue 14)."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

from cmal.cli import main

# The smallest run that still trains, embeds, clusters and selects one batch per strategy.
TINY = [
    "--strategies",
    "cluster-margin,random",
    "--rounds",
    "1",
    "--batch-size",
    "10",
    "--seed-size",
    "20",
    "--min-steps",
    "10",
    "--epochs",
    "1",
    "--target-clusters",
    "12",
    "--no-progress",
]


def _blobs(rng, n, shape, n_classes=3):
    """Examples of ``shape`` whose class sets the mean, so a model can learn them from a few labels."""
    y = np.arange(n) % n_classes
    x = rng.normal(0, 0.3, size=(n, *shape)) + y.reshape(-1, *([1] * len(shape)))
    return x, y


def _run(tmp_path, capsys, *args):
    out = tmp_path / "run"
    code = main(["run", *args, *TINY, "--out", str(out)])
    err = capsys.readouterr().err
    return code, out, err


def _results(out):
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("layout", ["grayscale-uint8", "rgb", "features"])
def test_run_on_each_array_layout(tmp_path, capsys, rng, layout):
    if layout == "grayscale-uint8":  # the layout keras.datasets.mnist.load_data() returns
        x, y = _blobs(rng, 90, (28, 28))
        x = np.clip(x * 60 + 40, 0, 255).astype(np.uint8)
    elif layout == "rgb":
        x, y = _blobs(rng, 90, (32, 32, 3))
    else:
        x, y = _blobs(rng, 90, (64,))
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    code, out, err = _run(tmp_path, capsys, "--dataset", str(tmp_path / "mine.npz"))
    assert code == 0, err
    res = _results(out)
    want_shape = {"grayscale-uint8": [28, 28, 1], "rgb": [32, 32, 3], "features": [64]}[layout]
    assert res["dataset"]["image_shape"] == want_shape
    assert res["config"]["model"] == "auto"
    assert res["model"] == ("mlp" if layout == "features" else "small-cnn")  # what "auto" built
    assert [r["n_labeled"] for r in res["runs"][0]["rounds"]] == [20, 30]
    stage = out / "stages" / "seed0"
    emb = np.load(stage / "embeddings.npy")
    assert emb.shape == (res["dataset"]["n_pool"], 128)  # small-cnn's or the MLP's embedding layer


def test_run_on_an_image_folder(tmp_path, capsys, rng):
    from PIL import Image

    root = tmp_path / "pets"
    for k, name in enumerate(["cat", "dog", "fox"]):
        (root / name).mkdir(parents=True)
        for i in range(30):
            pixels = np.clip(rng.normal(60 + 70 * k, 20, size=(20, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    code, out, err = _run(tmp_path, capsys, "--dataset", str(root), "--image-size", "16", "16")
    assert code == 0, err
    res = _results(out)
    assert res["dataset"]["image_shape"] == [16, 16, 3] and res["dataset"]["n_classes"] == 3
    assert res["config"]["image_size"] == [16, 16]
    # The folder's path and image size are saved, so the run resumes (here: nothing left to do).
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0


def test_linear_head_embeds_with_the_features_themselves(tmp_path, capsys, rng):
    x, y = _blobs(rng, 90, (8,))
    np.savez(tmp_path / "f.npz", x=x, y=y)
    code, out, err = _run(tmp_path, capsys, "--dataset", str(tmp_path / "f.npz"), "--model", "linear")
    assert code == 0, err
    from cmal.data import load_dataset

    ds = load_dataset(str(tmp_path / "f.npz"))
    np.testing.assert_allclose(np.load(out / "stages" / "seed0" / "embeddings.npy"), ds.x_pool, rtol=1e-6)


MODULE = """
import keras

def build(input_shape, n_classes):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Dense(16, activation="relu", name="features_out")(inputs)
    return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(x))

def logits(input_shape, n_classes):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Dense(16, activation="relu", name="embedding")(inputs)
    return keras.Model(inputs, keras.layers.Dense(n_classes)(x))

def sequential(input_shape, n_classes):      # every layer named by Keras: dense, dense_1, ... per build
    return keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(n_classes, activation="softmax")])

def one_argument(input_shape):
    return None

def wrong_size(input_shape, n_classes):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Dense(16, activation="relu", name="embedding")(inputs)
    return keras.Model(inputs, keras.layers.Dense(n_classes + 1, activation="softmax")(x))
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    name = f"user_models_{tmp_path.name.replace('-', '_')}"  # unique: other tests must not find it imported
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_user_model_by_dotted_path(tmp_path, capsys, rng, user_module):
    x, y = _blobs(rng, 90, (12,))
    np.savez(tmp_path / "f.npz", x=x, y=y)
    code, out, err = _run(
        tmp_path,
        capsys,
        "--dataset",
        str(tmp_path / "f.npz"),
        "--model",
        f"{user_module}:build",
        "--embedding-layer",
        "features_out",
    )
    assert code == 0, err
    res = _results(out)
    assert res["config"]["model"] == f"{user_module}:build" and res["config"]["embedding_layer"] == "features_out"
    assert np.load(out / "stages" / "seed0" / "embeddings.npy").shape[1] == 16


def test_user_model_by_callable(tmp_path, rng):
    import keras

    from cmal.data import from_arrays
    from cmal.loop import RunConfig, run

    def build(input_shape, n_classes):
        inputs = keras.Input(shape=input_shape)
        x = keras.layers.Dense(24, activation="relu", name="embedding")(inputs)
        return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(x))

    x, y = _blobs(rng, 90, (12,))
    np.savez(tmp_path / "f.npz", x=x, y=y)
    config = RunConfig(
        dataset=str(tmp_path / "f.npz"),
        strategies=("cluster-margin",),
        rounds=1,
        batch_size=10,
        seed_size=20,
        min_steps=10,
        epochs=1,
        target_clusters=12,
        model=build,
    )
    with pytest.warns(UserWarning, match="a nested function, a partial or a callable object: no later process"):
        res = run(config, tmp_path / "run", progress=False)
    assert res["config"]["model"].endswith(":test_user_model_by_callable.<locals>.build")
    assert np.load(tmp_path / "run" / "stages" / "seed0" / "embeddings.npy").shape[1] == 24
    assert from_arrays(x, y).n_pool == res["dataset"]["n_pool"]


@pytest.mark.parametrize(
    "case, fix",
    [
        ("rank-1", "one row per example"),
        ("rank-5", "x.reshape(len(x), -1)"),
        ("fractional-labels", "integer class"),
        ("no-softmax", "activation='softmax'"),
        ("wrong-output-size", "Dense(3, activation='softmax')"),
        ("missing-embedding-layer", "--embedding-layer 'features_out'"),
        ("images-to-mlp", "model='small-cnn' or 'auto'"),
        ("unknown-module", "Cannot import model builder"),
        ("file-path", "give the module's name instead"),
        ("wrong-signature", "a builder is called with (input_shape, n_classes)"),
        ("syntax-error", "failed (line 1) with SyntaxError"),
        ("auto-named-layer", "--embedding-layer -2"),
        ("label-gap", "never 0"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_fix(tmp_path, capsys, rng, user_module, case, fix):
    x, y = _blobs(rng, 90, (12,))
    model = []
    if case == "rank-1":
        x = x[:, 0]
    elif case == "rank-5":
        x = x.reshape(90, 1, 2, 2, 3)
    elif case == "fractional-labels":
        y = y + 0.5
    elif case == "no-softmax":
        model = ["--model", f"{user_module}:logits"]
    elif case == "wrong-output-size":
        model = ["--model", f"{user_module}:wrong_size"]
    elif case == "missing-embedding-layer":
        model = ["--model", f"{user_module}:build"]
    elif case == "images-to-mlp":
        x, y = _blobs(rng, 90, (8, 8, 1))
        model = ["--model", "mlp"]
    elif case == "file-path":
        model = ["--model", f"./{user_module}.py:build"]
    elif case == "wrong-signature":
        model = ["--model", f"{user_module}:one_argument"]
    elif case == "syntax-error":
        (tmp_path / f"{user_module}_broken.py").write_text("def build(:\n")
        model = ["--model", f"{user_module}_broken:build"]
    elif case == "auto-named-layer":
        model = ["--model", f"{user_module}:sequential"]
    elif case == "label-gap":
        y = y + 1  # labels 1..3: class 0 would be a class no example has
    else:
        model = ["--model", "no_such_module_here:build"]
    np.savez(tmp_path / "bad.npz", x=x, y=y)
    code, out, err = _run(tmp_path, capsys, "--dataset", str(tmp_path / "bad.npz"), *model)
    assert code == 2
    assert err.startswith("cmal run: error:") and err.count("\n") == 1, err
    assert fix in err, err
    assert "Traceback" not in err
    assert not out.exists()  # refused before the run folder was made


def test_multilabel_feature_vectors_train_a_sigmoid_mlp(tmp_path, rng):
    from cmal.loop import RunConfig, run

    x = rng.normal(size=(120, 10))
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0, x[:, 2] > 0.5], axis=1).astype(int)  # 0/1 per class: multi-label
    np.savez(tmp_path / "ml.npz", x=x, y=y)
    config = RunConfig(
        dataset=str(tmp_path / "ml.npz"),
        strategies=("cluster-margin",),
        rounds=1,
        batch_size=10,
        seed_size=20,
        min_steps=10,
        epochs=1,
        target_clusters=12,
    )
    res = run(config, tmp_path / "run", progress=False)
    assert res["metric"] == "pooled_ap" and res["dataset"]["multilabel"]
    assert 0 < res["runs"][0]["rounds"][-1]["pooled_ap"] <= 1


def test_a_saved_model_with_unregistered_custom_layers_is_rebuilt_from_its_builder(tmp_path, user_module):
    import importlib

    from cmal.data import from_arrays
    from cmal.loop import RunConfig, load_saved_model

    (tmp_path / f"{user_module}_custom.py").write_text(
        textwrap.dedent("""
        import keras

        class Doubler(keras.layers.Layer):      # not registered: Keras cannot load it from a file alone
            def call(self, x):
                return 2.0 * x

        def build(input_shape, n_classes):
            inputs = keras.Input(shape=input_shape)
            x = keras.layers.Dense(8, activation="relu", name="embedding")(Doubler()(inputs))
            return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(x))
    """)
    )
    module = importlib.import_module(f"{user_module}_custom")
    ds = from_arrays(np.random.default_rng(0).normal(size=(40, 5)), np.arange(40) % 2)
    model = module.build((5,), 2)
    model.save(tmp_path / "m.keras")
    config = RunConfig(model=f"{user_module}_custom:build")
    try:
        loaded = load_saved_model(tmp_path / "m.keras", config, ds)
    finally:
        sys.modules.pop(f"{user_module}_custom", None)
    x = ds.x_pool[:4]
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-5)


def test_label_export_of_a_feature_pool_names_pool_indices_and_refuses_images(tmp_path, capsys, rng):
    from cmal.loop import RunConfig, prepare
    from cmal.session import Session

    x, y = _blobs(rng, 90, (12,))
    np.savez(tmp_path / "f.npz", x=x, y=y)
    config = RunConfig(
        dataset=str(tmp_path / "f.npz"),
        strategies=("cluster-margin",),
        rounds=1,
        batch_size=10,
        seed_size=20,
        min_steps=10,
        epochs=1,
        target_clusters=12,
    )
    with Session(prepare(config), "cluster-margin", config, out=tmp_path / "run", oracle="human") as session:
        batch = session.select()
        assert session.label_store is not None  # what a waiting round opens: the store the CLI exports from
    # What `cmal run` writes first; a Session alone does not (the export reads the dataset from it).
    (tmp_path / "run" / "config.json").write_text(json.dumps({"config": config.resolved().to_dict()}))
    args = ["label", "export", "--run", str(tmp_path / "run"), "--session", "cluster-margin_seed0"]
    assert main(args + ["--out", str(tmp_path / "batch.csv")]) == 0
    rows = (tmp_path / "batch.csv").read_text().splitlines()
    assert sorted(int(r.split(",")[0]) for r in rows if r[:1].isdigit()) == sorted(batch.tolist())
    capsys.readouterr()
    assert main(args + ["--out", str(tmp_path / "b2.csv"), "--images", str(tmp_path / "img")]) == 2
    err = capsys.readouterr().err
    assert "feature vectors" in err and "without --images" in err and err.count("\n") == 1


def test_keras_named_layers_are_given_by_position_and_a_run_resumes_from_another_folder(
    tmp_path, capsys, rng, user_module, monkeypatch
):
    x, y = _blobs(rng, 90, (12,))
    np.savez(tmp_path / "f.npz", x=x, y=y)
    code, out, err = _run(
        tmp_path,
        capsys,
        "--dataset",
        str(tmp_path / "f.npz"),
        "--model",
        f"{user_module}:sequential",
        "--embedding-layer",
        "-2",
    )
    assert code == 0, err
    assert _results(out)["config"]["embedding_layer"] == -2
    assert np.load(out / "stages" / "seed0" / "embeddings.npy").shape[1] == 16
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_import_root"] == str(tmp_path.resolve())
    # Another process in another folder, the module's folder not on its path: the run's record finds it.
    import subprocess

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "cmal", "run", "--resume", str(out), "--no-progress"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env={k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"},
    )
    assert proc.returncode == 0, proc.stderr[-1500:]


def test_one_hot_labels_are_single_label_and_uint8_features_are_not_pixels(rng):
    from cmal.data import from_arrays

    x, y = _blobs(rng, 60, (5,))
    ds = from_arrays(x, np.eye(3, dtype=int)[y])  # keras.utils.to_categorical's layout
    assert not ds.multilabel and ds.y_pool.ndim == 1 and ds.n_classes == 3
    counts = from_arrays(rng.integers(0, 17, size=(60, 5)).astype(np.uint8), y)
    assert counts.kind == "features" and counts.x_pool.max() > 1  # counts stay counts, not pixels / 255


def test_a_dataset_object_in_runconfig_gets_a_short_message_with_the_fix(rng):
    from cmal.data import from_arrays
    from cmal.loop import RunConfig, run

    ds = from_arrays(*_blobs(rng, 60, (5,)))
    with pytest.raises(ValueError) as err:
        run(RunConfig(dataset=ds), progress=False)
    text = str(err.value)
    assert "np.savez('mine.npz'" in text and "array(" not in text and len(text) < 300


def test_a_run_saved_before_data_format_2_resumes_with_its_data_read_as_then(tmp_path, capsys, rng, monkeypatch):
    """Runs saved by cmal before this version: uint8 images were not scaled, config.json and session states lack
    data_format, embedding_layer and image_size. Resuming reads the data as then (same fingerprint)."""
    import cmal.data

    x, y = _blobs(rng, 90, (8, 8, 1))
    np.savez(tmp_path / "u8.npz", x=np.clip(x * 60 + 40, 0, 255).astype(np.uint8), y=y)
    monkeypatch.setattr(cmal.data, "DATA_FORMAT", 1)  # what the older version did
    code, out, err = _run(tmp_path, capsys, "--dataset", str(tmp_path / "u8.npz"))
    assert code == 0, err
    monkeypatch.undo()
    assert np.load(out / "stages" / "seed0" / "embeddings.npy").shape == (72, 128)
    config = json.loads((out / "config.json").read_text())
    assert config.pop("data_format") == 1
    for key in ("embedding_layer", "image_size"):
        del config["config"][key]
    (out / "config.json").write_text(json.dumps(config))
    for state in (out / "sessions").glob("*.state.json"):
        from cmal.state import read_checked, write_checked

        st = read_checked(state)
        for key in ("embedding_layer", "image_size"):
            st["config"].pop(key)
        write_checked(state, st)
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0, capsys.readouterr().err


def _features_dataset(rng):
    from cmal.data import from_arrays

    return from_arrays(*_blobs(rng, 60, (6,)))


def test_model_check_under_mixed_precision_wants_a_float32_output():
    import keras

    from cmal.models import check_model

    def half_output(input_shape, n_classes):
        inputs = keras.Input(shape=input_shape)
        x = keras.layers.Dense(8, activation="relu", name="embedding")(inputs)
        return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(x))

    check_model(half_output, (6,), 3)  # float32: fine
    with pytest.raises(ValueError, match="outputs bfloat16 under the mixed_bfloat16 policy.*dtype='float32'"):
        check_model(half_output, (6,), 3, policy="mixed_bfloat16")  # what a TPU run would train with
    check_model("mlp", (6,), 3, policy="mixed_bfloat16")  # cmal's own heads output float32
    assert keras.mixed_precision.global_policy().name == "float32"  # the check leaves the policy as it was


def test_sequential_without_input_subclassed_models_and_keras_generated_names():
    import keras

    from cmal.models import check_model

    def no_input(input_shape, n_classes):
        return keras.Sequential(
            [
                keras.layers.Dense(8, activation="relu", name="embedding"),
                keras.layers.Dense(n_classes, activation="softmax"),
            ]
        )

    check_model(no_input, (6,), 3)  # built with the data's input shape

    class Sub(keras.Model):
        def __init__(self, n):
            super().__init__()
            self.head = keras.layers.Dense(n, activation="softmax")

        def call(self, x):
            return self.head(x)

    with pytest.raises(ValueError, match="subclassed keras.Model.*functional API or keras.Sequential"):
        check_model(lambda shape, n: Sub(n), (6,), 3)

    def auto(input_shape, n_classes):
        return keras.Sequential(
            [
                keras.Input(shape=input_shape),
                keras.layers.Dense(8, activation="relu"),
                keras.layers.Dense(n_classes, activation="softmax"),
            ]
        )

    keras.backend.clear_session()  # a fresh process: the names model.summary() showed
    first_name = auto((6,), 3).layers[0].name
    keras.backend.clear_session()  # ... and the check's build gets the same ones
    with pytest.raises(ValueError, match="a name Keras generated.*embedding_layer=-2"):
        check_model(auto, (6,), 3, embedding_layer=first_name)
    check_model(auto, (6,), 3, embedding_layer=-2)


def test_prepare_refuses_to_cluster_probabilities_of_a_model_without_an_embedding_layer(tmp_path, rng):
    import keras

    from cmal.loop import RunConfig, prepare

    def plain(input_shape, n_classes):
        inputs = keras.Input(shape=input_shape)
        x = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
        return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(x))

    config = RunConfig(
        strategies=("margin",),
        seed_size=10,
        batch_size=5,
        rounds=1,
        min_steps=5,
        epochs=1,
        model=plain,
        target_clusters=5,
    )
    with pytest.raises(ValueError, match="no layer named 'embedding'.*embedding_layer='hidden'"):
        prepare(config, dataset=_features_dataset(rng))


def test_a_damaged_model_file_of_a_user_model_is_a_clear_error(tmp_path, rng, user_module):
    from cmal.loop import RunConfig, load_saved_model
    from cmal.models import build_model

    ds = _features_dataset(rng)
    config = RunConfig(model=f"{user_module}:build")
    model = build_model(config.model, ds.image_shape, ds.n_classes)
    model.save(tmp_path / "m.keras")
    data = (tmp_path / "m.keras").read_bytes()
    (tmp_path / "m.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot load"):
        load_saved_model(tmp_path / "m.keras", config, ds)
