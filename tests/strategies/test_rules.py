"""Shipped diversity rules, the rule protocol and rule registration."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from cmal.strategies import _REGISTRY, ClusterMargin, PoolState, available_strategies, make_strategy, register_rule
from cmal.strategies.rules import RULES, ascending, descending, margin_weighted, proportional, random_order

GROUPS = np.repeat([10, 20, 30, 40], [1, 2, 3, 6])  # sizes 1, 2, 3, 6


def picked(rule, k_t, seed=0, scores=None):
    return GROUPS[rule(GROUPS, k_t, np.random.default_rng(seed), scores)].tolist()


def test_ascending_and_descending_first_pass():
    assert picked(ascending, 4) == [10, 20, 30, 40]
    assert picked(descending, 4) == [40, 30, 20, 10]
    assert picked(descending, 6)[4:] == [40, 30]  # second pass, largest first again


def test_random_order_varies_with_the_seed():
    orders = {tuple(picked(random_order, 4, seed)) for seed in range(20)}
    assert len(orders) > 3 and all(sorted(o) == [10, 20, 30, 40] for o in orders)


def test_margin_weighted_orders_by_mean_uncertainty():
    scores = np.array([0.9] + [0.1, 0.1] + [0.5] * 3 + [0.3] * 6)  # mean per cluster: .9 .1 .5 .3
    assert picked(margin_weighted, 4, scores=scores) == [20, 40, 30, 10]
    with pytest.raises(ValueError, match="needs candidate scores"):
        picked(margin_weighted, 4)


def test_proportional_allocates_by_size():
    counts = dict(zip(*np.unique(picked(proportional, 6), return_counts=True)))
    assert counts == {20: 1, 30: 2, 40: 3} or counts == {10: 1, 20: 1, 30: 1, 40: 3}
    assert len(picked(proportional, 12)) == 12


@pytest.mark.parametrize("name", list(RULES))
def test_every_rule_returns_distinct_positions(name):
    for k in (1, 5, 12):
        out = RULES[name](GROUPS, k, np.random.default_rng(1), np.linspace(0, 1, GROUPS.size))
        assert len(out) == k and len(set(np.asarray(out).tolist())) == k


def test_rules_are_registered_strategies():
    for name in RULES:
        if name != "ascending":
            assert f"cluster-margin-{name}" in available_strategies()
    s = make_strategy("cluster-margin-descending", k_m=20, random_state=0)
    assert isinstance(s, ClusterMargin) and s.name == "cluster-margin-descending"


def test_a_notebook_rule_in_a_few_lines_is_usable_by_name_and_dotted_path(rng):
    def every_other(groups, k_t, rng):  # the older three-argument form keeps working
        return np.arange(0, 2 * k_t, 2)

    register_rule("every-other", every_other)
    module = types.ModuleType("my_rules")
    module.every_other = every_other
    sys.modules["my_rules"] = module
    try:
        state = PoolState.create(probs=rng.dirichlet(np.ones(3), 100), clusters=rng.integers(0, 9, 100))
        a = make_strategy("every-other", k_m=40, random_state=0).select(state, 5)
        b = make_strategy("my_rules:every_other", k_m=40, random_state=0).select(state, 5)
        np.testing.assert_array_equal(a, b)
        with pytest.raises(ValueError, match="Cannot import strategy"):
            make_strategy("my_rules:nope")
    finally:
        del _REGISTRY["every-other"]
        del sys.modules["my_rules"]


def test_rule_by_name_and_uncertainty_choice(pool_state):
    plan = ClusterMargin(k_m=30, rule="descending", uncertainty="entropy", random_state=0).explain(pool_state, 8)
    assert plan.cluster_counts[0] == plan.cluster_counts.max()
    with pytest.raises(ValueError, match="Unknown rule"):
        ClusterMargin(k_m=30, rule="zigzag").select(pool_state, 8)


def test_class_balanced_takes_one_per_predicted_class_per_pass_rarest_first():
    from cmal.strategies.rules import class_balanced

    groups = np.arange(12)  # every candidate its own cluster: only the classes can make a difference
    classes = np.repeat([0, 1, 2], [8, 3, 1])
    picks = class_balanced(groups, 6, np.random.default_rng(0), classes=classes)
    # Pass 1: one of each class, rarest (class 2) first; pass 2: classes 1 and 0 (class 2 exhausted); pass 3: 1, 0.
    assert classes[picks].tolist() == [2, 1, 0, 1, 0, 1]
    assert len(set(picks.tolist())) == 6
    # Without predicted classes it is the paper's rule, draw for draw.
    np.testing.assert_array_equal(
        class_balanced(GROUPS, 5, np.random.default_rng(3)), ascending(GROUPS, 5, np.random.default_rng(3))
    )
    with pytest.raises(ValueError, match="one predicted class per candidate"):
        class_balanced(groups, 2, np.random.default_rng(0), classes=classes[:5])


def test_class_balanced_inside_a_class_follows_the_papers_cluster_order():
    from cmal.strategies.rules import class_balanced

    groups = np.array([7, 7, 7, 3, 5, 5])  # one class: candidates per cluster 7 -> 3, 3 -> 1, 5 -> 2
    picks = class_balanced(groups, 4, np.random.default_rng(0), classes=np.zeros(6, dtype=int))
    assert groups[picks].tolist() == [3, 5, 7, 5]


def test_class_balanced_strategy_gets_the_candidates_predicted_classes():
    # 40 uncertain candidates: 36 predicted class 0, 4 predicted class 1, each in its own cluster.
    n = 60
    probs = np.tile([0.9, 0.05, 0.05], (n, 1))
    probs[:36] = [0.5, 0.45, 0.05]
    probs[36:40] = [0.45, 0.5, 0.05]
    state = PoolState.create(probs=probs, clusters=np.arange(n), labeled=[59])
    for seed in range(5):
        cm = make_strategy("cluster-margin", k_m=40, random_state=seed).select(state, 8)
        cb = make_strategy("cluster-margin-class-balanced", k_m=40, random_state=seed).select(state, 8)
        assert np.isin(cb, np.arange(40)).all() and np.isin(cm, np.arange(40)).all()
        assert np.isin(cb, np.arange(36, 40)).sum() == 4  # every class-1 candidate: one per pass
    # Over seeds the paper's rule takes the 4 class-1 candidates only as often as chance (8 of 40 picked).
    cm_minority = [
        np.isin(make_strategy("cluster-margin", k_m=40, random_state=s).select(state, 8), np.arange(36, 40)).sum()
        for s in range(20)
    ]
    assert np.mean(cm_minority) < 2
