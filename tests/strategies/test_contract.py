"""The contract every registered strategy keeps; runs automatically on each name in the registry.

A strategy registered later (a custom rule, a baseline) is picked up by the parametrization without any
change here.
"""

from __future__ import annotations

import numpy as np
import pytest

from cmal.strategies import PoolState, available_strategies, make_strategy

STRATEGIES = available_strategies()


def tied_state(n: int = 60, labeled=(0, 1, 2, 3)) -> PoolState:
    """All margins equal, identical embeddings and 6 equal clusters: every strategy faces ties everywhere, so
    the seed must decide."""
    return PoolState.create(
        probs=np.full((n, 4), 0.25), clusters=np.arange(n) % 6, labeled=list(labeled), embeddings=np.ones((n, 3))
    )


@pytest.fixture(params=STRATEGIES)
def name(request) -> str:
    return request.param


def test_batch_size_exact_distinct_and_unlabeled(name, pool_state):
    for k_t in (1, 7, 60):
        batch = make_strategy(name, random_state=0).select(pool_state, k_t)
        assert batch.shape == (k_t,)
        assert batch.dtype == np.int64
        assert np.unique(batch).size == k_t
        assert not np.isin(batch, pool_state.labeled).any()
        assert batch.min() >= 0 and batch.max() < pool_state.n


def test_same_seed_same_batch(name, pool_state):
    a = make_strategy(name, random_state=7).select(pool_state, 15)
    b = make_strategy(name, random_state=7).select(pool_state, 15)
    np.testing.assert_array_equal(a, b)


def test_different_seed_different_batch_where_possible(name):
    state = tied_state()
    batches = {tuple(sorted(make_strategy(name, random_state=s).select(state, 10).tolist())) for s in range(5)}
    assert len(batches) > 1


def test_repeated_calls_advance_the_generator(name):
    strategy = make_strategy(name, random_state=3)
    state = tied_state()
    first = [tuple(strategy.select(state, 10)) for _ in range(3)]
    strategy = make_strategy(name, random_state=3)
    again = [tuple(strategy.select(state, 10)) for _ in range(3)]
    assert first == again
    assert len(set(first)) > 1


def test_k_t_equal_to_the_unlabeled_pool_takes_everything(name, pool_state):
    k = pool_state.unlabeled.size
    batch = make_strategy(name, random_state=0).select(pool_state, k)
    np.testing.assert_array_equal(np.sort(batch), pool_state.unlabeled)


def test_single_unlabeled_example(name):
    state = tied_state(n=6, labeled=range(5))
    assert make_strategy(name, random_state=0).select(state, 1).tolist() == [5]


@pytest.mark.parametrize(
    "k_t, match", [(0, ">= 1"), (-3, ">= 1"), (2.5, "integer"), ("4", "integer"), (True, "integer"), (57, "only 56")]
)
def test_bad_k_t(name, k_t, match):
    with pytest.raises(ValueError, match=match):
        make_strategy(name, random_state=0).select(tied_state(), k_t)


def test_missing_inputs_name_the_argument(name):
    strategy = make_strategy(name, random_state=0)
    state = PoolState.create(n=20)
    if strategy.needs:
        with pytest.raises(ValueError, match="needs"):
            strategy.select(state, 3)
    else:
        assert strategy.select(state, 3).shape == (3,)


def test_state_must_be_a_pool_state(name):
    with pytest.raises(ValueError, match="PoolState"):
        make_strategy(name, random_state=0).select({"probs": np.ones((3, 2)) / 2}, 1)


def test_params_are_reported(name):
    strategy = make_strategy(name, random_state=11)
    assert strategy.get_params()["random_state"] == 11
    assert name == strategy.name
    assert type(strategy).__name__ in repr(strategy)
