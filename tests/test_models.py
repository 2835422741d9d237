"""Keras builders, training and batched embedding on real digits."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_trained_small_cnn_beats_chance_by_far(digits, digits_model):
    from cmal.embed import predict_proba
    from cmal.metrics import accuracy

    probs = predict_proba(digits_model, digits.x_test)
    assert probs.shape == (len(digits.x_test), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert accuracy(digits.y_test, probs) > 0.8


def test_embed_is_batched_and_matches_the_sub_model(digits, digits_model):
    from cmal.embed import embed
    from cmal.models import embedding_model

    e_small = embed(digits_model, digits.x_pool[:100], batch_size=7, progress=False)
    e_big = embed(digits_model, digits.x_pool[:100], batch_size=1000, progress=True)
    assert e_small.shape == (100, 128) and e_small.dtype == np.float32
    np.testing.assert_allclose(e_small, e_big, rtol=1e-4, atol=1e-5)
    direct = np.asarray(embedding_model(digits_model)(digits.x_pool[:100], training=False))
    np.testing.assert_allclose(e_small, direct, rtol=1e-4, atol=1e-5)
    # Same-class examples sit closer in the embedding than different-class ones (it learned something).
    y = digits.y_pool[:100]
    d = np.linalg.norm(e_small[:, None] - e_small[None], axis=-1)
    same, diff = d[y[:, None] == y[None]].mean(), d[y[:, None] != y[None]].mean()
    assert same < diff


def test_same_seed_same_weights():
    from cmal.models import build_model

    a = build_model("small-cnn", (8, 8, 1), 3, random_state=5).get_weights()
    b = build_model("small-cnn", (8, 8, 1), 3, random_state=5).get_weights()
    c = build_model("small-cnn", (8, 8, 1), 3, random_state=6).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_min_steps_extends_training(digits):
    from cmal.models import build_model
    from cmal.training import fit

    model = build_model("small-cnn", digits.image_shape, 10, random_state=0)
    info = fit(model, digits.x_pool[:64], digits.y_pool[:64], epochs=1, batch_size=32, min_steps=20, random_state=0)
    assert info["epochs"] == 10 and info["steps"] == 20 and len(info["history"]["loss"]) == 10


def test_vgg16_layout_builds_for_32x32():
    from cmal.models import build_model, embedding_model

    model = build_model("vgg16", (32, 32, 3), 10, random_state=0)
    conv = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert len(conv) == 13 and model.output_shape == (None, 10)
    assert embedding_model(model).output_shape == (None, 512)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: __import__("cmal.models").models.build_model("resnet", (8, 8, 1), 10), "Unknown model"),
        (lambda: __import__("cmal.models").models.build_model("small-cnn", (8, 8), 10), "height, width"),
        (lambda: __import__("cmal.models").models.build_model("small-cnn", (8, 8, 1), 1), "n_classes"),
    ],
)
def test_builder_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_fit_and_embed_errors(digits_model):
    from cmal.embed import embed
    from cmal.models import embedding_model
    from cmal.training import fit

    with pytest.raises(ValueError, match="same non-zero number of rows"):
        fit(digits_model, np.zeros((3, 8, 8, 1)), np.zeros(2))
    with pytest.raises(ValueError, match="empty"):
        embed(digits_model, np.zeros((0, 8, 8, 1)))
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        embedding_model(digits_model, "nope")


def test_embed_to_a_memory_mapped_file(digits, digits_model, tmp_path):
    from cmal.embed import embed

    x = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=digits.x_pool[:300].shape)
    x[:] = digits.x_pool[:300]
    out = embed(digits_model, x, batch_size=64, progress=False, out=tmp_path / "emb.npy")
    assert isinstance(out, np.memmap) and out.shape == (300, 128)
    np.testing.assert_allclose(out, embed(digits_model, digits.x_pool[:300], progress=False), rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy", "x.npy"]  # no partial file left
    with pytest.raises(ValueError, match="ending in .npy"):
        embed(digits_model, x, out=tmp_path / "emb.bin")
