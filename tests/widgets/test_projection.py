from __future__ import annotations

import numpy as np
import pytest

from cmal_widgets.projection import project


def test_pca_projection_and_cache(tmp_path, rng):
    x = rng.normal(size=(300, 6))
    a = project(x, method="pca", cache_dir=tmp_path)
    assert a.shape == (300, 2) and a.dtype == np.float32
    assert len(list(tmp_path.glob("*.npy"))) == 1
    np.testing.assert_array_equal(project(x, method="pca", cache_dir=tmp_path), a)
    project(x + 1, method="pca", cache_dir=tmp_path)  # different data, different cache entry
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_cached_result_is_used(tmp_path, rng):
    x = rng.normal(size=(50, 4))
    project(x, method="pca", cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npy")
    np.save(path, np.full((50, 2), 7.0, dtype=np.float32))
    assert (project(x, method="pca", cache_dir=tmp_path) == 7).all()


@pytest.mark.slow
def test_umap_separates_real_digit_classes(digits_pool, tmp_path):
    from sklearn.neighbors import KNeighborsClassifier

    xy = project(digits_pool["x"], method="umap", cache_dir=tmp_path)
    # Neighbours in the 2-D map share their digit class far more often than chance (10%).
    knn = KNeighborsClassifier(5).fit(xy[:400], digits_pool["y"][:400])
    assert knn.score(xy[400:], digits_pool["y"][400:]) > 0.8


def test_bad_input(rng):
    with pytest.raises(ValueError, match="method must be"):
        project(rng.normal(size=(5, 3)), method="tsne", cache_dir=None)
    with pytest.raises(ValueError, match="NaN"):
        project(np.full((5, 3), np.nan), cache_dir=None)
    assert project(np.ones((2, 3)), method="pca", cache_dir=None).shape == (2, 2)
