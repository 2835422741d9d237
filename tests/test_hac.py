"""Exact HAC against SciPy's reference: linkage(..., "average") + fcluster(criterion="distance")."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage

from cmal.hac import ExactHACTooLargeError, canonical_labels, hac, linkage_tree, max_exact_points


def scipy_partition(x: np.ndarray, epsilon: float, metric: str = "euclidean") -> np.ndarray:
    return canonical_labels(fcluster(linkage(x, method="average", metric=metric), t=epsilon, criterion="distance"))


def safe_thresholds(x: np.ndarray, metric: str = "euclidean") -> list[float]:
    """Thresholds halfway between distinct merge heights (a threshold equal to a height is ill-posed)."""
    h = np.unique(np.round(linkage(x, method="average", metric=metric)[:, 2], 9))
    mids = (h[1:] + h[:-1]) / 2
    return [float(m) for m in mids[np.linspace(0, mids.size - 1, 6).astype(int)] if m > 0]


@pytest.mark.parametrize("backend", ["fastcluster", "scipy"])
def test_matches_scipy_on_gaussian_blobs(rng, backend):
    x = np.concatenate([rng.normal(c, 0.3, size=(40, 5)) for c in (0, 2, 5)])
    for eps in safe_thresholds(x):
        np.testing.assert_array_equal(hac(x, eps, backend=backend), scipy_partition(x, eps))


def test_matches_scipy_with_ties_and_duplicates(rng):
    # Integer grid points: many equal pairwise distances; every point appears 1-3 times.
    base = rng.integers(0, 6, size=(60, 2)).astype(float)
    x = np.concatenate([base, base[:30], base[:10]])
    for eps in safe_thresholds(x):
        np.testing.assert_array_equal(hac(x, eps), scipy_partition(x, eps))
    # Duplicates always share a cluster, whatever epsilon > 0.
    labels = hac(x, 1e-9)
    np.testing.assert_array_equal(labels[:30], labels[60:90])


def test_cosine_metric_matches_scipy(rng):
    x = rng.normal(size=(80, 6))
    for eps in safe_thresholds(x, "cosine"):
        np.testing.assert_array_equal(hac(x, eps, metric="cosine"), scipy_partition(x, eps, "cosine"))


def test_tree_recut_equals_fresh_clustering(rng):
    x = rng.normal(size=(150, 4))
    tree = linkage_tree(x)
    for eps in safe_thresholds(x):
        np.testing.assert_array_equal(tree.cut(eps), hac(x, eps))
        assert tree.n_clusters(eps) == tree.cut(eps).max() + 1


def test_heights_are_monotone_and_cut_semantics(rng):
    tree = linkage_tree(rng.normal(size=(100, 3)))
    assert np.all(np.diff(tree.heights) >= 0)
    assert tree.n_clusters(tree.heights[-1] + 1) == 1
    assert tree.n_clusters(tree.heights[0] / 2) == 100
    # A merge at height exactly epsilon is performed ("stop when the smallest distance exceeds epsilon").
    assert tree.n_clusters(tree.heights[0]) == 99


@pytest.mark.parametrize("k", [1, 2, 5, 17, 99, 100])
def test_epsilon_for_clusters_hits_target(rng, k):
    tree = linkage_tree(rng.normal(size=(100, 3)))
    assert tree.cut(tree.epsilon_for_clusters(k)).max() + 1 == k


def test_epsilon_for_clusters_with_tied_heights_gets_nearest():
    # Four points in two identical pairs: heights 1, 1, then one larger; 3 clusters is impossible.
    x = np.array([[0.0], [1.0], [10.0], [11.0]])
    tree = linkage_tree(x)
    got = tree.n_clusters(tree.epsilon_for_clusters(3))
    assert got in (2, 4)
    assert tree.n_clusters(tree.epsilon_for_mean_size(2)) == 2


def test_labels_are_canonical():
    labels = hac(np.array([[5.0], [0.0], [5.1], [0.1]]), 1.0)
    assert labels.tolist() == [0, 1, 0, 1]
    assert labels.dtype == np.int64


def test_single_point():
    tree = linkage_tree(np.zeros((1, 3)))
    assert tree.cut(1.0).tolist() == [0]


def test_refuses_pools_too_large_for_exact_hac(rng):
    n_fit = max_exact_points(memory_bytes=8 * 4950)  # exactly 100 points' pairwise distances
    assert n_fit == 100
    with pytest.raises(ExactHACTooLargeError, match=r"only 100 points fit.*graph"):
        linkage_tree(rng.normal(size=(101, 2)), memory_bytes=8 * 4950)
    assert max_exact_points(24 * 2**30, "fastcluster") > 70_000
    assert max_exact_points(24 * 2**30, "scipy") > 50_000


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"embeddings": np.array([[np.nan, 1.0], [0.0, 0.0]]), "epsilon": 1.0}, "NaN"),
        ({"embeddings": np.zeros((3,)), "epsilon": 1.0}, "2-D"),
        ({"embeddings": np.zeros((3, 2)), "epsilon": 0.0}, "epsilon"),
        ({"embeddings": np.zeros((3, 2)), "epsilon": -1}, "epsilon"),
        ({"embeddings": np.zeros((3, 2)), "epsilon": float("nan")}, "epsilon"),
        ({"embeddings": np.zeros((3, 2)), "epsilon": 1.0, "metric": "cosine"}, "all-zero"),
        ({"embeddings": np.zeros((3, 2)), "epsilon": 1.0, "metric": "manhattan"}, "metric"),
        ({"embeddings": np.zeros((0, 2)), "epsilon": 1.0}, "at least 1 row"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hac(**kwargs)


def test_exact_tree_speaks_like_a_graph_tree():
    """Code written for graph-HAC trees (describe(), max_epsilon) also works on an exact tree."""
    from cmal.hac import build_tree

    tree = build_tree(np.random.default_rng(0).normal(size=(50, 3)), method="exact")
    assert (
        tree.max_epsilon == float("inf") and tree.describe().startswith("exact HAC") and "49 merges" in tree.describe()
    )
