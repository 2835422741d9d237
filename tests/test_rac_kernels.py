"""The compiled RAC engine (cmal.rac_kernels) against the numpy reference rounds of cmal.graph_hac.

The engine is what :func:`cmal.graph_hac.rac` runs when numba is installed, so every test of test_graph_hac.py
(complete graphs against fastcluster, cuts, duplicates, components) exercises it too; here the two engines are
compared merge by merge, and the lower bounds that let the engine skip work are checked to be bounds.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmal.graph_hac import _dedupe, knn_edges, rac

rac_kernels = pytest.importorskip("cmal.rac_kernels", reason="numba is not installed (the scale extra)")


def _merges(engine, monkeypatch, *args, **kwargs):
    monkeypatch.setenv("CMAL_RAC_ENGINE", engine)
    info: dict = {}
    merges = rac(*args, info=info, **kwargs)
    return merges, info


def _same_merges(a, b):
    """Same merges (representative pairs in the same order) and heights equal within 1e-9."""
    assert a.shape == b.shape
    np.testing.assert_array_equal(a[:, [0, 1, 3]], b[:, [0, 1, 3]])
    np.testing.assert_allclose(a[:, 2], b[:, 2], rtol=1e-9)  # the contract with fastcluster


def _graph(x, k, metric="euclidean"):
    x = np.asarray(x, dtype=np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    a, b, d, radius = knn_edges(x, k, metric=metric, backend="exact", exact_max=10**6, random_state=0, progress=False)
    return x, a, b, d, radius


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("mode", ["threshold", "target", "full"])
def test_compiled_equals_numpy_reference(rng, monkeypatch, metric, mode):
    # A mixture (clusters of different sizes and spreads), offset far from the origin: the engine's
    # dot-product form must not lose accuracy to the offset.
    centres = rng.normal(size=(12, 8)) * 3 + 50
    x = centres[rng.integers(0, 12, 1500)] + rng.normal(size=(1500, 8)) * rng.uniform(0.3, 1.5, (1500, 1))
    x, a, b, d, radius = _graph(x, 8, metric)
    kw = {"points": x, "radius": radius, "metric": metric}
    if mode == "threshold":
        kw["threshold"] = float(np.quantile(d, 0.9))
    elif mode == "target":
        kw["target_clusters"] = 40
    ref, ref_info = _merges("numpy", monkeypatch, len(x), a, b, d, **kw)
    got, info = _merges("compiled", monkeypatch, len(x), a, b, d, **kw)
    _same_merges(got, ref)
    assert info["threshold"] == ref_info["threshold"]
    assert info["rounds"] > 3 and info["completed_pairs"] > 0  # the lazy completion was exercised


def test_engines_agree_on_approximate_lists_with_exact_on_graph(rng, monkeypatch):
    """Lists missing nearer points (pynndescent's can, at scale) with radius 0, exact_on_graph's bound: the
    engines complete pairs in different orders, and still merge alike."""
    from cmal.graph_hac import edges_from_neighbours
    from cmal.knn import knn

    x = rng.normal(size=(30, 8))[rng.integers(0, 30, 1200)] + rng.normal(size=(1200, 8)) * 0.7
    idx, dist = knn(x, 16, backend="exact")
    keep = np.sort(np.argsort(rng.random(idx.shape), axis=1)[:, :8], axis=1)
    idx, dist = np.take_along_axis(idx, keep, 1), np.take_along_axis(dist, keep, 1)
    a, b, d, radius = edges_from_neighbours(x, idx, dist, "euclidean", bound=False)
    kw = {"points": x, "radius": radius, "target_clusters": 60}
    ref, _ = _merges("numpy", monkeypatch, len(x), a, b, d, **kw)
    got, info = _merges("compiled", monkeypatch, len(x), a, b, d, **kw)
    _same_merges(got, ref)
    assert info["completed_pairs"] > 0


@pytest.mark.parametrize("linkage", ["graph", "edges"])
def test_compiled_equals_numpy_other_linkages(rng, monkeypatch, linkage):
    x, a, b, d, _ = _graph(rng.normal(size=(600, 4)), 6)
    ref, _ = _merges("numpy", monkeypatch, len(x), a, b, d, linkage=linkage)
    got, _ = _merges("compiled", monkeypatch, len(x), a, b, d, linkage=linkage)
    _same_merges(got, ref)


def test_duplicates_weights_and_unsorted_edges(rng, monkeypatch):
    base = rng.normal(size=(300, 5))
    x = np.concatenate([base, base[:40], base[:40]])  # 40 points with weight 3
    uniq, inverse, _ = _dedupe(x)
    sizes = np.bincount(inverse).astype(np.float64)
    u, a, b, d, radius = _graph(uniq, 7)
    order = rng.permutation(a.size)  # the engine sorts rows itself when edges arrive in any order
    swap = rng.random(a.size) < 0.5
    a2, b2 = np.where(swap, b, a)[order], np.where(swap, a, b)[order]
    kw = {"points": u, "radius": radius, "sizes": sizes}
    ref, _ = _merges("numpy", monkeypatch, len(u), a, b, d, **kw)
    got, _ = _merges("compiled", monkeypatch, len(u), a2, b2, d[order], **kw)
    assert got.shape == ref.shape
    key = lambda m: m[np.lexsort((m[:, 1], m[:, 0]))]  # noqa: E731 - merge order within a round may differ
    np.testing.assert_allclose(key(got), key(ref), rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.integers(2, 30), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_refined_bound_never_exceeds_the_linkage(na, nb, covered, seed):
    """The chord and Jensen bound of a partial pair is at most its exact average linkage, whatever is covered."""
    r = np.random.default_rng(seed)
    pts = np.concatenate([r.normal(size=(na, 6)), r.normal(size=(nb, 6)) + r.normal(size=6) * 2]) + 100.0
    w = r.integers(1, 3, na + nb).astype(np.float64)
    dist = np.linalg.norm(pts[:na, None] - pts[None, na:], axis=2)
    ww = w[:na, None] * w[None, na:]
    exact = (dist * ww).sum() / ww.sum()
    cov = r.random(dist.shape) < covered
    centred = pts - pts.mean(0)
    lab = np.r_[np.zeros(na, int), np.ones(nb, int)]
    sizes = np.array([w[:na].sum(), w[na:].sum()])
    vsum = np.stack([(centred * w[:, None])[lab == c].sum(0) for c in (0, 1)])
    sqsum = np.array([((centred**2).sum(1) * w)[lab == c].sum() for c in (0, 1)])
    cent = vsum / sizes[:, None]
    rho = np.array([np.linalg.norm(centred[lab == c] - cent[c], axis=1).max() for c in (0, 1)])
    rr = dist[~cov].min() if (~cov).any() else 0.0  # a valid lower bound on every missing distance
    bound = rac_kernels.refined_bound(
        0, 1, (dist * ww)[cov].sum(), ww[cov].sum(), (dist**2 * ww)[cov].sum(), ww.sum(), rr, False,
        sizes, vsum, sqsum, rho,
    )  # fmt: skip
    assert bound <= exact * (1 + 1e-12)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=5, max_size=5), st.integers(0, 2**31 - 1))
def test_bound_carried_through_a_merge_never_exceeds_the_linkage(sizes, seed):
    """Clusters A + A' merge, and B + B'; C merges with nobody and has an edge to B or B'. The bounds that
    merge_rows carries into the new entries (A+A', B+B') and (C, B+B') are at most their linkages, whichever parts
    had an entry, how much of each was covered, what bound each part kept and how tight the radii are."""
    r = np.random.default_rng(seed)
    pts = [r.normal(size=(n, 3)) + r.normal(size=3) * 3 for n in sizes]  # 0 = A, 1 = A', 2 = B, 3 = B', 4 = C
    w = [r.integers(1, 3, n).astype(np.float64) for n in sizes]  # point weights (duplicates collapsed)
    parts = [(0, 2), (0, 3), (1, 2), (1, 3), (4, 2), (4, 3)]
    present = [r.random() < 0.75 for _ in parts]
    present[0] = True
    present[4] = not present[5] if r.random() < 0.5 else True  # C: an edge to B or B' (or both)
    entries = {}
    for (a, b), here in zip(parts, present):
        d = np.linalg.norm(pts[a][:, None] - pts[b][None], axis=2)
        ww = w[a][:, None] * w[b][None]
        cov = (r.random(d.shape) < r.random()) & here
        entries[a, b] = (d, ww, cov, here)
    # Each cluster's radius: at most the distance of every pair of its points without an edge; tight for some.
    radius = np.array(
        [min([e[0][~e[2]].min() for key, e in entries.items() if c in key and (~e[2]).any()] + [9.0]) for c in range(5)]
    ) * np.where(r.random(5) < 0.5, 1.0, r.uniform(0.5, 1.0, 5))
    old_sizes = np.array([x.sum() for x in w])
    rows = {c: [] for c in range(5)}
    for (a, b), (d, ww, cov, here) in entries.items():
        if not here:
            continue
        pairs, s_e, m_e, q_e = ww.sum(), (d * ww)[cov].sum(), ww[cov].sum(), (d**2 * ww)[cov].sum()
        linkage = (d * ww).sum() / pairs
        rr = max(radius[a], radius[b])
        bound = linkage * (1 - 1e-9 * r.random()) if r.random() < 0.5 else linkage * r.random()  # tight or loose
        kept = rac_kernels.excess_of(bound, s_e, m_e, pairs, rr) if m_e < pairs else 0.0
        lb = (
            -np.inf if m_e >= pairs else [-np.inf, kept, -kept - rac_kernels._TINY][r.integers(3)]
        )  # none, refined, carried
        rows[a].append((b, s_e, m_e, q_e, lb))
        rows[b].append((a, s_e, m_e, q_e, lb))
    starts, ends, flat = [], [], []
    for c in range(5):
        starts.append(len(flat))
        flat += sorted(rows[c])
        ends.append(len(flat))
    col = np.array([e[0] for e in flat], dtype=np.int32)
    s_, m_, q_, lb_ = (np.array([e[i] for e in flat], dtype=np.float64) for i in (1, 2, 3, 4))
    out = rac_kernels.entry_arrays(len(flat))
    new_starts, new_ends, _ = rac_kernels.merge_rows(
        np.array(starts), np.array(ends), col, s_, m_, q_, lb_, np.zeros(5, dtype=np.bool_),
        np.array([0, 0, 2, 2, 4]), np.array([0, -1, 1, -1, 2]), 3, True, *out,
    )  # fmt: skip
    new_sizes = np.array([old_sizes[0] + old_sizes[1], old_sizes[2] + old_sizes[3], old_sizes[4]])
    new_radius = np.array([min(radius[0], radius[1]), min(radius[2], radius[3]), radius[4]])
    members = {0: (0, 1), 1: (2, 3), 2: (4,)}
    checked = 0
    for u in range(3):
        for e in range(new_starts[u], new_ends[u]):
            v = int(out[0][e])
            pairs = new_sizes[u] * new_sizes[v]
            total = 0.0
            for a in members[u]:
                for b in members[v]:
                    d = np.linalg.norm(pts[a][:, None] - pts[b][None], axis=2)
                    total += (d * w[a][:, None] * w[b][None]).sum()
            link, _ = rac_kernels.kept_link(out[1][e], out[2][e], pairs, max(new_radius[u], new_radius[v]), out[4][e])
            assert out[2][e] >= pairs or link <= total / pairs * (1 + 1e-12)
            checked += 1
    assert checked == 4  # (A+A', B+B'), (B+B', A+A'), (B+B', C), (C, B+B')


@pytest.mark.parametrize("engine", ["numpy", "compiled"])
def test_stages_are_aimed_at_the_target(rng, monkeypatch, engine):
    """Stage thresholds grow by x1.005 to x1.25; every stage but the last ends above the target."""
    centres = rng.normal(size=(30, 8)) * 2
    x = centres[rng.integers(0, 30, 3000)] + rng.normal(size=(3000, 8))
    x, a, b, d, radius = _graph(x, 10)
    merges, info = _merges(engine, monkeypatch, len(x), a, b, d, points=x, radius=radius, target_clusters=150)
    thresholds, counts = np.array(info["stages"]).T
    assert len(thresholds) >= 3 and counts[-1] == len(x) - len(merges) <= 150 < counts[:-1].min()
    factors = thresholds[1:] / thresholds[:-1]
    assert np.all(factors >= 1.005 - 1e-12) and np.all(factors <= 1.25 + 1e-12)


@pytest.mark.parametrize("engine", ["numpy", "compiled"])
def test_target_with_mostly_zero_distances_ends(monkeypatch, engine):
    """Cosine on rows that are multiples of 60 directions: most edges are 0, so the median is 0; the stages must
    start from the smallest positive distance (multiplying 0 never ended)."""
    from cmal.graph_hac import graph_linkage_tree

    monkeypatch.setenv("CMAL_RAC_ENGINE", engine)
    dirs = np.random.default_rng(0).normal(size=(60, 5))
    x = np.concatenate([dirs * s for s in (1.0, 3.0, 7.0, 11.0, 13.0, 17.0, 19.0, 23.0)])
    with pytest.warns(UserWarning, match="connected components"):
        tree = graph_linkage_tree(x, k=5, metric="cosine", target_clusters=20, knn_backend="exact")
    # The 5-NN graph leaves more components than 20: everything that can merge did.
    assert tree.n_components > 20 and len(np.unique(tree.cut(2.0))) == tree.n_components  # cosine distances <= 2


def test_next_stage_steps_without_overflow():
    import warnings

    from cmal.graph_hac import RoundState, next_stage

    st = RoundState(
        1, np.ones(1), np.zeros(1), np.zeros(1, np.int64), 1.03, "average", 1.0, None, np.ones(1), "euclidean"
    )
    st.stages = ((1.0, 100_001),)  # a stage that merged one cluster in 10^5: a tiny slope
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert next_stage(st, 100_000, 50_000, float("inf"))
    assert st.threshold == pytest.approx(1.03 * 1.25) and st.stages[-1] == (1.03, 100_000)


def test_missing_distance_must_be_finite(rng):
    x, a, b, d, _ = _graph(rng.normal(size=(50, 3)), 5)
    with pytest.raises(ValueError, match="missing_distance"):
        rac(len(x), a, b, d, linkage="graph", missing_distance=np.inf)
