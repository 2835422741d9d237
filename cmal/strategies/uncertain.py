"""Uncertainty sampling: the ``k_t`` unlabeled examples the model is least sure about."""

from __future__ import annotations

from typing import Any

import numpy as np

from cmal.strategies.base import PoolState, Strategy, lowest_k, unlabeled_margins

__all__ = ["MarginSampling"]


class MarginSampling(Strategy):
    """Margin sampling: the ``k_t`` unlabeled examples with the smallest margin ``p_1 - p_2``.

    Ties in margin are broken at random by ``random_state``. Equivalent to Cluster-Margin with ``k_m = k_t``.

    Parameters
    ----------
    aggregate : {"mean", "min"}
        How multi-label per-class margins ``|2p - 1|`` are combined (ignored for multiclass).
    random_state : None, int or numpy Generator

    Examples
    --------
    >>> import numpy as np
    >>> from cmal.strategies import MarginSampling, PoolState
    >>> probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.6, 0.4], [0.5, 0.5]])
    >>> MarginSampling(random_state=0).select(PoolState.create(probs=probs, labeled=[3]), 2).tolist()
    [1, 2]
    """

    name = "margin"
    needs = frozenset({"probs"})

    def __init__(self, *, aggregate: str = "mean", random_state: Any = None) -> None:
        super().__init__(random_state=random_state)
        self.aggregate = aggregate

    def get_params(self) -> dict[str, Any]:
        return {"aggregate": self.aggregate, **super().get_params()}

    def _select(self, state: PoolState, k_t: int, rng: np.random.Generator) -> np.ndarray:
        return state.unlabeled[lowest_k(unlabeled_margins(state, self.aggregate), k_t, rng)]
