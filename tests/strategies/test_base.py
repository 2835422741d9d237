"""PoolState validation, tie-breaking, and the registry."""

from __future__ import annotations

import numpy as np
import pytest

from cmal.strategies import _REGISTRY, PoolState, Strategy, lowest_k, make_strategy, register_strategy


def test_pool_state_unlabeled_and_with_labeled():
    s = PoolState.create(n=6, labeled=[4, 1])
    assert s.unlabeled.tolist() == [0, 2, 3, 5]
    assert s.with_labeled([0]).unlabeled.tolist() == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"probs": np.full((4, 2), 0.5), "clusters": np.zeros(5, int)}, "disagree"),
        ({"probs": np.full((4, 2), 0.5), "labeled": [0, 0]}, "repeats index 0"),
        ({"probs": np.full((4, 2), 0.5), "labeled": [4]}, "outside the pool"),
        ({"probs": np.full((4, 2), 0.5), "labeled": [-1]}, "outside the pool"),
        ({"probs": np.full((4, 2), 0.5), "labeled": [0.5]}, "integer"),
        ({"probs": np.full((4, 2), 0.5), "labeled": [[0, 1]]}, "1-D"),
        ({"clusters": np.zeros((4, 2), int)}, "1-D"),
        ({"clusters": np.array([0.5, 1.0])}, "integer"),
        ({"embeddings": np.array([[np.inf]])}, "NaN or inf"),
        ({}, "pool size"),
        ({"n": 0}, ">= 1"),
    ],
)
def test_pool_state_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PoolState.create(**kwargs)


def test_lowest_k_exact_and_sorted(rng):
    key = rng.permutation(1000).astype(float)
    got = lowest_k(key, 10, rng)
    assert key[got].tolist() == list(range(10))


def test_lowest_k_breaks_ties_at_random_under_the_seed():
    key = np.array([0.0, 1, 1, 1, 1, 1, 2])
    picks = {tuple(sorted(lowest_k(key, 3, np.random.default_rng(s)).tolist())) for s in range(30)}
    assert all(p[0] == 0 and set(p[1:]) <= {1, 2, 3, 4, 5} for p in picks)
    assert len(picks) > 3
    a = lowest_k(key, 3, np.random.default_rng(5))
    b = lowest_k(key, 3, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_lowest_k_edges(rng):
    assert lowest_k(np.arange(3.0), 0, rng).size == 0
    assert sorted(lowest_k(np.arange(3.0), 5, rng).tolist()) == [0, 1, 2]


def test_registry_errors_and_custom_registration():
    with pytest.raises(ValueError, match="Unknown strategy 'nope'.*cluster-margin"):
        make_strategy("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("margin", Strategy)
    with pytest.raises(ValueError, match="does not accept"):
        make_strategy("random", bogus=1)

    class FirstUnlabeled(Strategy):
        name = "first-unlabeled"

        def _select(self, state, k_t, rng):
            return state.unlabeled[:k_t]

    register_strategy("first-unlabeled", FirstUnlabeled)
    try:
        # Shared options (k_m) are dropped for strategies that do not take them.
        s = make_strategy("first-unlabeled", k_m=50, random_state=0)
        assert s.select(PoolState.create(n=5, labeled=[0]), 2).tolist() == [1, 2]
    finally:
        del _REGISTRY["first-unlabeled"]


def test_a_broken_strategy_is_caught():
    class Duplicates(Strategy):
        name = "dup"

        def _select(self, state, k_t, rng):
            return np.zeros(k_t, dtype=int)

    with pytest.raises(RuntimeError, match="broke the protocol"):
        Duplicates().select(PoolState.create(n=5), 2)


def test_random_state_validation():
    with pytest.raises(ValueError, match="random_state"):
        make_strategy("random", random_state=-1)
    with pytest.raises(ValueError, match="random_state"):
        make_strategy("random", random_state="seed")
