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
