"""The adaptive candidate count (k_m="auto") on hand-built pools, and the exact k_m ratio."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmal.loop import RunConfig
from cmal.strategies import ClusterMargin, PoolState, make_strategy
from cmal.strategies.cluster_margin import auto_candidate_count, candidate_count


def ranked_state(clusters_by_rank, n_extra_clusters: int = 0, labeled=()):
    """A pool whose i-th most uncertain example (margin i / 100) lies in cluster ``clusters_by_rank[i]``.

    ``n_extra_clusters`` more examples, each alone in a new cluster, come after them (margins near 1)."""
    clusters = list(clusters_by_rank)
    top = max(clusters) + 1
    clusters += list(range(top, top + n_extra_clusters))
    margins = np.concatenate([np.arange(len(clusters_by_rank)) / 100, 0.9 + np.arange(n_extra_clusters) / 1000])
    p1 = (1 + margins) / 2
    probs = np.stack([p1, 1 - p1], axis=1)  # margin = p1 - p2 = margins
    return PoolState.create(probs=probs, clusters=np.array(clusters), labeled=list(labeled))


def test_candidates_grow_until_they_span_k_t_clusters():
    # The 6 most uncertain are all in cluster 0; clusters 1 and 2 appear at ranks 6 and 9.
    state = ranked_state([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 3, 3], n_extra_clusters=5)
    plan = ClusterMargin(k_m="auto", random_state=0).explain(state, 3)
    assert plan.k_m == 10  # ranks 0..9 hold clusters {0, 1, 2}
    np.testing.assert_array_equal(plan.candidates, np.arange(10))
    assert sorted(plan.batch_clusters.tolist()) == [0, 1, 2]  # one from each: the point of growing k_m
    assert "span 3 clusters" in plan.k_m_reason
    # Plain Margin (k_m = k_t) would take three copies from cluster 0.
    assert set(state.clusters[ClusterMargin(k_m=3, random_state=0).select(state, 3)]) == {0}


def test_no_growth_when_the_most_uncertain_already_differ():
    state = ranked_state([4, 3, 2, 1, 0, 0, 0])
    plan = ClusterMargin(k_m="auto", random_state=0).explain(state, 4)
    assert plan.k_m == 4 and "k_m = k_t" in plan.k_m_reason
    np.testing.assert_array_equal(np.sort(plan.indices), [0, 1, 2, 3])


def test_fewer_clusters_than_k_t_spans_all_of_them():
    state = ranked_state([0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    plan = ClusterMargin(k_m="auto", random_state=0).explain(state, 3)
    assert plan.k_m == 6  # cluster 1 first appears at rank 5: both clusters are then covered
    assert "only 2 clusters" in plan.k_m_reason


def test_cap_stops_growth_and_says_so():
    # 40 candidates in cluster 0 before any other cluster: the cap (2 k_t = 10) is reached first.
    state = ranked_state([0] * 40, n_extra_clusters=10)
    plan = ClusterMargin(k_m="auto", auto_max_ratio=2, random_state=0).explain(state, 5)
    assert plan.k_m == 10 and "cap" in plan.k_m_reason and "span 1 clusters" in plan.k_m_reason
    wide = ClusterMargin(k_m="auto", random_state=0).explain(state, 5)  # default cap 10 k_t = 50
    assert wide.k_m == 44  # 40 in cluster 0, then 4 new clusters make 5
    with pytest.raises(ValueError, match="auto_max_ratio must be >= 1"):
        ClusterMargin(k_m="auto", auto_max_ratio=0.5).select(state, 5)


def test_labeled_points_leave_the_candidates_and_the_cluster_count():
    state = ranked_state([0, 0, 1, 2, 2, 3], labeled=[2])  # rank 2 (the only point of cluster 1) is labeled
    plan = ClusterMargin(k_m="auto", random_state=0).explain(state, 3)
    assert 2 not in plan.candidates
    assert plan.k_m == 5 and set(plan.candidate_clusters.tolist()) == {0, 2, 3}  # ranks 0, 1, 3, 4, 5
    # With k_t = 4 only 3 clusters still hold unlabeled points (cluster 1 is used up): span those 3.
    plan = ClusterMargin(k_m="auto", random_state=0).explain(state, 4)
    assert plan.k_m == 5 and "only 3 clusters" in plan.k_m_reason


@pytest.mark.parametrize("seed", range(5))
def test_ties_the_prefix_is_minimal_in_the_drawn_order(seed):
    # All margins equal: the seed orders the candidates; k_m is still the shortest prefix that spans k_t clusters.
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, 8, size=80)
    state = PoolState.create(probs=np.full((80, 3), 1 / 3), clusters=clusters)
    plan = ClusterMargin(k_m="auto", random_state=seed).explain(state, 5)
    assert np.unique(plan.candidate_clusters).size >= 5
    if plan.k_m > 5:
        assert np.unique(plan.candidate_clusters[:-1]).size < 5
    assert np.unique(plan.batch_clusters).size == 5


def test_same_seed_same_auto_batch_and_last_k_m():
    state = PoolState.create(probs=np.full((80, 3), 1 / 3), clusters=np.arange(80) % 7)
    a, b = ClusterMargin(k_m="auto", random_state=4), ClusterMargin(k_m="auto", random_state=4)
    np.testing.assert_array_equal(a.select(state, 9), b.select(state, 9))
    assert a.last_k_m == b.last_k_m and 9 <= a.last_k_m <= 80


def test_auto_with_cluster_random_keeps_every_unlabeled_candidate():
    state = ranked_state([0, 0, 1, 2, 2, 3], labeled=[0])
    s = make_strategy("cluster-random", k_m="auto", random_state=0)  # k_m is not a Cluster-Random parameter
    plan = s.explain(state, 3)
    assert plan.k_m == 5 and plan.k_m_reason.startswith("all:")
    assert make_strategy("cluster-margin-auto", k_m=4, random_state=0).k_m == "auto"  # a shared k_m does not apply


def test_auto_candidate_count_direct():
    assert auto_candidate_count(np.array([], dtype=int), 0) == (0, 0, 0)
    assert auto_candidate_count(np.array([5, 5, 5]), 1) == (1, 1, 1)
    assert auto_candidate_count(np.array([1, 1, 2, 2, 3]), 2, n_groups=3) == (3, 2, 2)


def test_bad_k_m_string_is_a_clear_error():
    state = ranked_state([0, 1, 2])
    with pytest.raises(ValueError, match="'auto', 'all' or None"):
        ClusterMargin(k_m="automatic").select(state, 2)
    with pytest.raises(ValueError, match="candidates \\(k_m\\) must be an integer or 'auto'"):
        RunConfig(candidates="many").validate()
    assert RunConfig(candidates="auto").validate().k_m == "auto"


# ------------------------------------------------------------------- exact ratio
def test_ratio_float_rounding_fixed():
    assert 1.1 * 100 > 110  # the float product is 110.00000000000001: ceil of it was 111
    assert candidate_count(100, 1.1) == 110
    state = PoolState.create(probs=np.random.default_rng(0).dirichlet(np.ones(3), 500), clusters=np.arange(500) % 50)
    assert ClusterMargin(k_m_ratio=1.1, random_state=0).explain(state, 100).k_m == 110
    assert ClusterMargin(k_m_ratio=1.1, random_state=0).explain(state, 100).candidates.size == 110
    assert RunConfig(batch_size=200).k_m == 250


@settings(max_examples=300, deadline=None)
@given(k_t=st.integers(1, 10**6), thousandths=st.integers(1000, 20000))
def test_ratio_equals_the_decimal_product(k_t, thousandths):
    ratio = thousandths / 1000  # a ratio as a user types it, e.g. 1.1 or 2.375
    assert candidate_count(k_t, ratio) == math.ceil(Fraction(thousandths, 1000) * k_t)


def test_auto_with_negative_and_huge_cluster_ids():
    # Any integer ids work (e.g. -1 for "noise", or hashed ids); nothing is sized by the largest id.
    probs = np.random.default_rng(0).dirichlet(np.ones(3), 100)
    for clusters in (np.r_[-np.ones(50, int), np.arange(50)], np.arange(100) * 10**12):
        state = PoolState.create(probs=probs, clusters=clusters)
        plan = ClusterMargin(k_m="auto", random_state=0).explain(state, 10)
        assert np.unique(plan.batch_clusters).size == 10


def test_auto_cut_reaches_at_least_2_k_t_clusters_despite_tied_heights():
    from cmal.hac import linkage_tree
    from cmal.loop import SeedStage, auto_cut

    # 20 pairs of points: only 40, 20, 10, ... clusters are reachable (tied merge heights).
    x = np.array([[10.0 * i + j, 0.0] for i in range(20) for j in (0, 1)])
    tree = linkage_tree(x)
    coarse = tree.cut(tree.epsilon_for_clusters(2))
    stage = SeedStage(None, 0, np.arange(2), None, x, tree, coarse, {"n_clusters": 2}, None, {}, 0.0)
    auto = make_strategy("cluster-margin-auto")
    assert auto_cut(stage, auto, RunConfig(batch_size=14)).max() + 1 == 40  # 28 wanted: 20 is too few
    assert auto_cut(stage, auto, RunConfig(batch_size=5)).max() + 1 == 10  # 10 wanted: exactly reachable
    assert auto_cut(stage, auto, RunConfig(batch_size=50)).max() + 1 == 40  # more than the pool: all points
    np.testing.assert_array_equal(auto_cut(stage, make_strategy("cluster-margin"), RunConfig(batch_size=14)), coarse)
    np.testing.assert_array_equal(auto_cut(stage, auto, RunConfig(batch_size=14, epsilon=1.0)), coarse)
    # Identical points (zero heights) cannot be separated: the finest cut there is.
    dup = np.repeat(np.arange(6.0)[:, None], 4, axis=0) * np.array([[10.0, 0.0]])
    tree = linkage_tree(dup)
    stage = SeedStage(
        None, 0, np.arange(2), None, dup, tree, tree.cut(tree.epsilon_for_clusters(1)), {"n_clusters": 1}, None, {}, 0.0
    )
    assert auto_cut(stage, auto, RunConfig(batch_size=10)).max() + 1 == 6
