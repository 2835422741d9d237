"""Label-free embeddings for cold-start seed sets (cmal.unsupervised)."""

from __future__ import annotations

import numpy as np
import pytest

from cmal.unsupervised import autoencoder_embeddings, pca_embeddings, unsupervised_embeddings


def test_pca_is_seeded_float32_and_scales_uint8_pixels():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(120, 6, 6), dtype=np.uint8)
    a = pca_embeddings(pixels, 8, random_state=1)
    assert a.shape == (120, 8) and a.dtype == np.float32
    np.testing.assert_array_equal(a, pca_embeddings(pixels, 8, random_state=1))
    # uint8 pixels are read as [0, 1]: the same leading components as the float image, up to rounding (random
    # pixels have nearly equal trailing singular values, which rounding may mix).
    np.testing.assert_allclose(a[:, :2], pca_embeddings(pixels / 255.0, 8, random_state=1)[:, :2], atol=1e-3)
    # More components than features or rows: as many as there are.
    assert pca_embeddings(rng.normal(size=(10, 3)), 32).shape == (10, 3)


def test_pca_keeps_separated_groups_apart():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (50, 20)), rng.normal(3, 0.1, (50, 20))])
    e = pca_embeddings(x, 2)
    assert abs(e[:50, 0].mean() - e[50:, 0].mean()) > 10 * e[:50, 0].std()


@pytest.mark.parametrize(
    "x, kwargs, match",
    [
        (np.zeros(5), {}, "at least 2 examples"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), {}, "NaN or inf"),
        (np.zeros((5, 3)), {"dim": 0}, "dim"),
    ],
)
def test_bad_input_is_a_clear_error(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pca_embeddings(x, **kwargs)


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="pca, autoencoder"):
        unsupervised_embeddings(np.zeros((5, 3)), "tsne")


@pytest.mark.slow
def test_autoencoder_bottleneck_is_seeded_and_separates_groups():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.random((100, 16)) * 0.2, 0.8 + rng.random((100, 16)) * 0.2]).astype(np.float32)
    a = autoencoder_embeddings(x, 4, epochs=3, hidden=16, random_state=0)
    assert a.shape == (200, 4) and a.dtype == np.float32
    np.testing.assert_allclose(
        a, autoencoder_embeddings(x, 4, epochs=3, hidden=16, random_state=0), rtol=1e-4, atol=1e-5
    )
    # The two groups' codes are further apart than the spread inside a group.
    gap = np.linalg.norm(a[:100].mean(0) - a[100:].mean(0))
    assert gap > 2 * np.linalg.norm(a[:100] - a[:100].mean(0), axis=1).mean()
