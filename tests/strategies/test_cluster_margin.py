"""Cluster-Margin (Algorithm 2) on hand-built pools where the right batch is known."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmal.strategies import (
    ClusterMargin,
    ClusterRandom,
    MarginSampling,
    PoolState,
    make_strategy,
    occurrence_rank,
)
from cmal.strategies.rules import ascending as round_robin_ascending


def probs_with_margins(margins) -> np.ndarray:
    """Two-class probabilities whose margin p1 - p2 is exactly each given value."""
    m = np.asarray(margins, dtype=float)
    return np.stack([(1 + m) / 2, (1 - m) / 2], axis=1)


def literal_walk(groups: np.ndarray, k_t: int) -> dict[int, int]:
    """The paper's loop written plainly: how many picks each group gets (sizes must be distinct)."""
    ids, counts = np.unique(groups, return_counts=True)
    remaining = dict(zip(ids.tolist(), counts.tolist()))
    order = sorted(remaining, key=lambda g: remaining[g])
    taken = dict.fromkeys(order, 0)
    chosen = 0
    while chosen < k_t:
        for g in order:
            if chosen == k_t:
                break
            if taken[g] < remaining[g]:
                taken[g] += 1
                chosen += 1
    return {g: t for g, t in taken.items() if t}


def test_one_point_from_each_of_the_smallest_clusters():
    # 12 points. Candidates (k_m = 6 smallest margins): rows 0-5. Their clusters: A=7 has 3 (rows 0,1,2),
    # B=8 has 2 (rows 3,4), C=9 has 1 (row 5). Rows 6-11 have large margins and sit in cluster 9 too:
    # sizes are counted over candidates only, so C is still the smallest.
    margins = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    clusters = [7, 7, 7, 8, 8, 9, 9, 9, 9, 9, 9, 9]
    state = PoolState.create(probs=probs_with_margins(margins), clusters=clusters)
    for seed in range(10):
        plan = ClusterMargin(k_m=6, random_state=seed).explain(state, 3)
        assert plan.indices[0] == 5  # the single candidate of the smallest cluster comes first
        assert plan.indices[1] in (3, 4) and plan.indices[2] in (0, 1, 2)
        assert plan.cluster_order.tolist() == [9, 8, 7]
        assert plan.cluster_counts.tolist() == [1, 2, 3]
        assert plan.cluster_picked.tolist() == [1, 1, 1]
        assert plan.batch_pass.tolist() == [0, 0, 0]
        assert sorted(plan.candidates.tolist()) == [0, 1, 2, 3, 4, 5]


def test_fewer_clusters_than_k_t_cycles_through_larger_clusters():
    # Candidates: cluster 1 has 1, cluster 2 has 4, cluster 3 has 2. k_t = 6 -> passes:
    # pass 0: 1, 3, 2   pass 1: 3, 2   pass 2: 2 (clusters 1 and 3 exhausted).
    clusters = [2, 1, 2, 3, 2, 3, 2]
    state = PoolState.create(probs=probs_with_margins(np.linspace(0.1, 0.7, 7)), clusters=clusters)
    plan = ClusterMargin(k_m=7, random_state=0).explain(state, 6)
    assert plan.batch_clusters.tolist() == [1, 3, 2, 3, 2, 2]
    assert plan.batch_pass.tolist() == [0, 0, 0, 1, 1, 2]
    assert plan.cluster_picked.tolist() == [1, 2, 3]
    assert 1 in plan.indices and {3, 5} <= set(plan.indices.tolist())


def test_labeled_points_are_never_candidates():
    margins = [0.0, 0.0, 0.5, 0.6, 0.7, 0.8]
    state = PoolState.create(probs=probs_with_margins(margins), clusters=[0, 1, 2, 3, 4, 5], labeled=[0, 1])
    plan = ClusterMargin(k_m=2, random_state=0).explain(state, 2)
    assert sorted(plan.candidates.tolist()) == [2, 3]
    assert sorted(plan.indices.tolist()) == [2, 3]


def test_k_m_equal_k_t_is_margin_sampling(pool_state):
    for seed in range(5):
        cm = ClusterMargin(k_m=25, random_state=seed).select(pool_state, 25)
        m = MarginSampling(random_state=seed).select(pool_state, 25)
        assert set(cm.tolist()) == set(m.tolist())


def test_cluster_random_balances_clusters():
    # 5 clusters of unlabeled sizes 1, 2, 3, 10, 20: with k_t = 4 one point from each of the 4 smallest.
    clusters = np.repeat([0, 1, 2, 3, 4], [1, 2, 3, 10, 20])
    state = PoolState.create(clusters=clusters)
    for seed in range(5):
        batch = ClusterRandom(random_state=seed).select(state, 4)
        assert sorted(clusters[batch].tolist()) == [0, 1, 2, 3]
    # k_m="all" in ClusterMargin does the same once probabilities are known.
    probs = np.full((36, 2), 0.5)
    state = PoolState.create(probs=probs, clusters=clusters)
    assert sorted(clusters[ClusterMargin(k_m="all", random_state=0).select(state, 4)].tolist()) == [0, 1, 2, 3]


def test_default_k_m_is_ceil_1_25_k_t(pool_state):
    plan = ClusterMargin(random_state=0).explain(pool_state, 10)
    assert plan.candidates.size == 13
    plan = ClusterMargin(k_m_ratio=10, random_state=0).explain(pool_state, 10)
    assert plan.candidates.size == 100


def test_k_m_larger_than_the_pool_takes_every_unlabeled(pool_state):
    plan = ClusterMargin(k_m=10_000, random_state=0).explain(pool_state, 5)
    assert plan.candidates.size == pool_state.unlabeled.size


def test_candidates_are_the_lowest_margins(pool_state):
    from cmal.uncertainty import margin

    plan = ClusterMargin(k_m=40, random_state=0).explain(pool_state, 10)
    m = margin(pool_state.probs)
    unl = np.sort(m[pool_state.unlabeled])
    np.testing.assert_allclose(np.sort(m[plan.candidates]), unl[:40])
    np.testing.assert_allclose(plan.candidate_margins, m[plan.candidates])
    assert np.all(np.diff(plan.candidate_margins) >= 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k_m": 5}, "k_m must be >= k_t"),
        ({"k_m": 0}, ">= 1"),
        ({"k_m": 2.5}, "integer"),
        ({"k_m_ratio": 0.5}, ">= 1"),
        ({"k_m_ratio": -1.0}, "> 0"),
    ],
)
def test_bad_k_m(pool_state, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClusterMargin(random_state=0, **kwargs).select(pool_state, 10)


def test_multilabel_probabilities():
    rng = np.random.default_rng(0)
    probs = rng.uniform(size=(50, 6))
    state = PoolState.create(probs=probs, clusters=rng.integers(0, 8, 50), multilabel=True)
    for aggregate in ("mean", "min"):
        batch = make_strategy("cluster-margin", k_m=15, aggregate=aggregate, random_state=0).select(state, 5)
        assert np.unique(batch).size == 5


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=10, unique=True),
    frac=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_robin_matches_the_literal_walk(sizes, frac, seed):
    groups = np.repeat(np.arange(len(sizes)) * 3 + 1, sizes)
    np.random.default_rng(seed).shuffle(groups)
    k_t = max(1, int(frac * groups.size))
    picks = round_robin_ascending(groups, k_t, np.random.default_rng(seed))
    passes = occurrence_rank(groups[picks])
    assert np.unique(picks).size == k_t
    got = dict(zip(*np.unique(groups[picks], return_counts=True)))
    assert {int(k): int(v) for k, v in got.items()} == literal_walk(groups, k_t)
    # Pick order: passes never decrease, and within a pass groups come in ascending size.
    assert np.all(np.diff(passes) >= 0)
    size = dict(zip(*np.unique(groups, return_counts=True)))
    for p in np.unique(passes):
        s = [size[g] for g in groups[picks][passes == p]]
        assert s == sorted(s)


def test_members_within_a_cluster_are_picked_uniformly():
    # One cluster of 4 candidates and k_t = 1: each member should win about a quarter of the time.
    groups = np.zeros(4, dtype=int)
    wins = np.bincount(
        [round_robin_ascending(groups, 1, np.random.default_rng(s))[0] for s in range(2000)], minlength=4
    )
    assert wins.min() > 400 and wins.max() < 600


def test_a_custom_rule_replaces_only_the_last_step(pool_state):
    def largest_first(groups, k_t, rng):
        ids, counts = np.unique(groups, return_counts=True)
        order = ids[np.argsort(-counts, kind="stable")]
        # One candidate per cluster, largest clusters first, then the remaining candidates in margin order.
        first = [int(np.flatnonzero(groups == g)[0]) for g in order]
        rest = [i for i in range(groups.size) if i not in first]
        return np.array((first + rest)[:k_t])

    plan = ClusterMargin(k_m=40, rule=largest_first, random_state=0).explain(pool_state, 5)
    assert plan.cluster_counts[:5].tolist() == sorted(plan.cluster_counts.tolist(), reverse=True)[:5]
    assert plan.batch_pass.tolist() == [0] * 5
    assert ClusterMargin(rule=largest_first).get_params()["rule"] == "largest_first"

    def broken(groups, k_t, rng):
        return np.zeros(k_t, dtype=int)

    with pytest.raises(RuntimeError, match="rule 'broken' must return"):
        ClusterMargin(k_m=40, rule=broken, random_state=0).select(pool_state, 5)
