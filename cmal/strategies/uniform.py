"""Random sampling: the baseline every active-learning curve is compared with."""

from __future__ import annotations

import numpy as np

from cmal.strategies.base import PoolState, Strategy

__all__ = ["RandomSampling"]


class RandomSampling(Strategy):
    """Pick ``k_t`` unlabeled examples uniformly at random, without replacement.

    Examples
    --------
    >>> from cmal.strategies import PoolState, RandomSampling
    >>> state = PoolState.create(n=10, labeled=[0, 1])
    >>> batch = RandomSampling(random_state=0).select(state, 3)
    >>> len(batch), bool(set(batch.tolist()) & {0, 1})
    (3, False)
    """

    name = "random"

    def _select(self, state: PoolState, k_t: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(state.unlabeled, size=k_t, replace=False)
