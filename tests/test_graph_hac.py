"""Graph HAC (RAC): equality with exact HAC on complete graphs, cuts, duplicates, components, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmal.graph_hac import DisconnectedGraphWarning, GraphHACTree, graph_hac, graph_linkage_tree, rac
from cmal.hac import build_tree, choose_method, hac, linkage_tree


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("linkage", ["average", "graph", "edges"])
def test_complete_graph_equals_exact_hac(rng, metric, linkage):
    x = rng.normal(size=(400, 5))
    exact = linkage_tree(x, metric=metric)
    graph = graph_linkage_tree(x, k=399, metric=metric, linkage=linkage)
    np.testing.assert_allclose(graph.heights, exact.heights, rtol=1e-9, atol=1e-12)
    for n_clusters in (1, 5, 40, 200, 399):
        eps = exact.epsilon_for_clusters(n_clusters)
        np.testing.assert_array_equal(graph.cut(eps), exact.cut(eps))


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 40), st.integers(0, 2**31 - 1))
def test_complete_graph_equals_exact_hac_property(n, seed):
    # Continuous random data: no ties in linkage, so the partition is unique at every threshold.
    x = np.random.default_rng(seed).normal(size=(n, 3))
    exact = linkage_tree(x)
    graph = graph_linkage_tree(x, k=n)
    np.testing.assert_allclose(graph.heights, exact.heights, rtol=1e-9)
    eps = float(np.median(exact.heights)) + 1e-9
    np.testing.assert_array_equal(graph.cut(eps), exact.cut(eps))


def test_knn_graph_close_to_exact_on_real_data(digits):
    from sklearn.metrics import adjusted_rand_score

    x = digits.x_pool.reshape(len(digits.x_pool), -1)
    exact = linkage_tree(x)
    eps = exact.epsilon_for_mean_size(20)
    labels = graph_hac(x, eps, k=30)
    assert adjusted_rand_score(exact.cut(eps), labels) > 0.9


def test_max_epsilon_cut_matches_full_run(rng):
    x = rng.normal(size=(500, 4))
    full = graph_linkage_tree(x, k=10)
    eps = float(np.quantile(full.heights, 0.7))
    np.testing.assert_array_equal(graph_hac(x, eps, k=10), full.cut(eps))
    partial = graph_linkage_tree(x, k=10, max_epsilon=eps)
    assert partial.heights.max() <= eps
    with pytest.raises(ValueError, match="max_epsilon"):
        partial.cut(eps * 2)
    # Asking for fewer clusters than the partial tree reaches returns its coarsest cut, and says so.
    fewest = int(np.unique(partial.cut(partial.max_epsilon)).size)
    with pytest.warns(UserWarning, match=f"has {fewest:,}; returning that cut"):
        assert partial.epsilon_for_clusters(2) == partial.max_epsilon


def test_tree_api_like_exact(rng):
    x = rng.normal(size=(300, 3))
    tree = graph_linkage_tree(x, k=15)
    assert isinstance(tree, GraphHACTree)
    assert (np.diff(tree.heights) >= 0).all()
    eps = tree.epsilon_for_clusters(30)
    assert tree.n_clusters(eps) == tree.cut(eps).max() + 1 == 30
    assert "15-NN graph" in tree.describe()


def test_duplicates_merge_at_zero_and_match_exact(rng):
    base = rng.normal(size=(60, 3))
    x = np.concatenate([base, np.repeat(base[:3], 30, axis=0)])  # 3 points with 30 copies each: > k
    exact = linkage_tree(x)
    graph = graph_linkage_tree(x, k=len(x))
    eps = exact.epsilon_for_clusters(10)
    np.testing.assert_array_equal(graph.cut(eps), exact.cut(eps))
    # With a small k the copies would otherwise form cliques cut off from the pool.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DisconnectedGraphWarning)
        small = graph_linkage_tree(x, k=5)
    assert small.n_components == 1
    labels = small.cut(1e-9)
    assert len(set(labels[60:90])) == 1 and labels[0] == labels[60]


def test_disconnected_components_never_merge():
    x = np.concatenate(
        [np.zeros((5, 2)) + np.arange(5)[:, None] * 0.01, np.full((5, 2), 100.0) + np.arange(5)[:, None] * 0.01]
    )
    with pytest.warns(DisconnectedGraphWarning, match="2 connected components"):
        tree = graph_linkage_tree(x, k=2)
    assert tree.n_components == 2
    assert tree.n_clusters(1e6) == 2
    assert tree.cut(1e6).tolist() == [0] * 5 + [1] * 5


def test_cosine_zero_vectors_rejected():
    with pytest.raises(ValueError, match="all-zero row"):
        graph_linkage_tree(np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]), metric="cosine")


def test_small_and_degenerate_pools():
    assert graph_hac(np.ones((1, 3)), 1.0).tolist() == [0]
    assert graph_hac(np.ones((4, 3)), 1.0).tolist() == [0, 0, 0, 0]
    assert graph_hac(np.array([[0.0], [10.0]]), 1.0, k=100).tolist() == [0, 1]


def test_rac_rejects_missing_distance_below_edges():
    with pytest.raises(ValueError, match="missing_distance"):
        rac(3, np.array([0, 1]), np.array([1, 2]), np.array([1.0, 2.0]), linkage="graph", missing_distance=1.5)
    with pytest.raises(ValueError, match="linkage"):
        rac(3, np.array([0]), np.array([1]), np.array([1.0]), linkage="single")


def test_auto_method_and_entry_point(rng):
    assert choose_method(10) == "exact" and choose_method(10**6) == "graph"
    assert choose_method(10, "graph") == "graph"
    with pytest.raises(ValueError, match="method"):
        choose_method(10, "fast")
    x = rng.normal(size=(200, 3))
    assert build_tree(x, method="graph", k=199).backend == "rac"
    np.testing.assert_array_equal(hac(x, 1.5, method="graph", k=199), hac(x, 1.5, method="exact"))
    assert build_tree(x, method="auto", exact_max=100).backend == "rac"


def test_memmap_input(tmp_path, rng):
    x = rng.normal(size=(300, 4)).astype(np.float32)
    np.save(tmp_path / "e.npy", x)
    mm = np.load(tmp_path / "e.npy", mmap_mode="r")
    np.testing.assert_array_equal(graph_hac(mm, 1.0, k=10), graph_hac(x, 1.0, k=10))


@pytest.mark.parametrize("target", [1, 7, 60, 250])
def test_target_clusters_builds_just_far_enough(rng, target):
    x = rng.normal(size=(300, 3))
    full = graph_linkage_tree(x, k=20)
    part = graph_linkage_tree(x, k=20, target_clusters=target)
    assert part.linkage.shape[0] <= full.linkage.shape[0]
    eps = part.epsilon_for_clusters(target)
    assert part.n_clusters(eps) == full.n_clusters(eps) == target
    np.testing.assert_array_equal(part.cut(eps), full.cut(eps))
    if part.max_epsilon < np.inf:
        with pytest.raises(ValueError, match="max_epsilon"):
            part.cut(part.max_epsilon * 2)
    with pytest.raises(ValueError, match="target_clusters"):
        graph_linkage_tree(x, k=20, target_clusters=0)


def test_knn_options_reach_the_knn_library(monkeypatch):
    """graph_linkage_tree(knn_options=...) and build_tree(knn_options=...) hand the options to cmal.knn.knn."""
    import cmal.graph_hac as gh
    from cmal.hac import build_tree

    seen = []
    real = gh.knn

    def spy(*args, **kwargs):
        seen.append(kwargs.get("options"))
        return real(*args, **kwargs)

    monkeypatch.setattr(gh, "knn", spy)
    x = np.random.default_rng(0).normal(size=(300, 4))
    a = gh.graph_linkage_tree(x, k=10, knn_options={"n_iters": 3}, target_clusters=20)
    b = build_tree(x, method="graph", k=10, knn_options={"n_iters": 3}, target_clusters=20)
    assert seen == [{"n_iters": 3}, {"n_iters": 3}]
    assert (a.cut(a.epsilon_for_clusters(20)) == b.cut(b.epsilon_for_clusters(20))).all()


def _brute_force_rac(x, a, b):
    """Merge heights of RAC with every linkage computed in full: each round, every cluster finds the connected
    cluster with the smallest average distance over all point pairs, and reciprocal pairs merge. (Not sequential
    HAC: on a graph that misses pairs, merging can bring a cluster nearer than a merge already made.)"""
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    clusters = {i: [i] for i in range(len(x))}
    adjacent = {i: set() for i in range(len(x))}
    for i, j in zip(a.tolist(), b.tolist()):
        adjacent[i].add(j)
        adjacent[j].add(i)
    heights = []
    while True:
        nearest = {
            i: min((d[np.ix_(clusters[i], clusters[j])].mean(), j) for j in adjacent[i])
            for i in adjacent
            if adjacent[i]
        }
        pairs = [(h, i, j) for i, (h, j) in nearest.items() if i < j and nearest[j][1] == i]
        if not pairs:
            return np.sort(heights)
        for h, i, j in pairs:
            heights.append(h)
            clusters[i] += clusters.pop(j)
            adjacent[i] = (adjacent[i] | adjacent.pop(j)) - {i, j}
            for c in adjacent[i]:
                adjacent[c] = (adjacent[c] - {j}) | {i}


def test_approximate_lists_exact_on_graph():
    """Lists that miss nearer points (as pynndescent's can at scale) break the k-th-neighbour bound; with
    exact_on_graph (radius 0) every merge is still RAC's with exact average linkages."""
    from cmal.graph_hac import edges_from_neighbours
    from cmal.knn import knn

    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 6))[rng.integers(0, 12, 150)] + rng.normal(size=(150, 6)) * 0.6
    idx, dist = knn(x, 14, backend="exact")
    keep = np.sort(np.argsort(rng.random((150, 14)), axis=1)[:, :8], axis=1)  # 8 of the 14, the rest "missed"
    idx, dist = np.take_along_axis(idx, keep, 1), np.take_along_axis(dist, keep, 1)
    a, b, d, listed = edges_from_neighbours(x, idx, dist, "euclidean")
    # The premise: some pair with no edge is nearer than the larger of its two listed radii.
    edges = set(zip(a.tolist(), b.tolist()))
    full = np.linalg.norm(x[:, None] - x[None], axis=-1)
    assert any(
        full[i, j] < max(listed[i], listed[j]) for i in range(150) for j in range(i + 1, 150) if (i, j) not in edges
    )
    *_, zero = edges_from_neighbours(x, idx, dist, "euclidean", bound=False)
    assert not zero.any()
    expected = _brute_force_rac(x, a, b)
    merges = rac(150, a, b, d, points=x, radius=zero)
    np.testing.assert_allclose(np.sort(merges[:, 2]), expected, rtol=1e-9)
    trusted = rac(150, a, b, d, points=x, radius=listed)
    assert not np.allclose(np.sort(trusted[:, 2]), expected, rtol=1e-9), "the listed radius was a bound here"


def test_exact_on_graph_drops_the_radius_only_for_approximate_lists(monkeypatch):
    import cmal.graph_hac as gh

    seen = []
    real = gh.rac

    def spy(*args, **kwargs):
        seen.append(bool(np.asarray(kwargs["radius"]).any()))
        return real(*args, **kwargs)

    monkeypatch.setattr(gh, "rac", spy)
    x = np.random.default_rng(0).normal(size=(300, 4))
    # faiss, not pynndescent: the same rule for any approximate backend, without pynndescent's compilation.
    for backend, strict in [("faiss", False), ("faiss", True), ("exact", True)]:
        gh.graph_linkage_tree(x, k=10, knn_backend=backend, exact_max=1, exact_on_graph=strict, target_clusters=20)
    assert seen == [True, False, True]
