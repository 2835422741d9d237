"""Uncertainty sampling: the ``k_t`` unlabeled examples the model is least sure about.

One class, :class:`UncertaintySampling`, over the scores of :mod:`cmal.uncertainty`; Margin, Entropy and
Least-Confidence are its three settings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cmal import uncertainty
from cmal.strategies.base import PoolState, Strategy, lowest_k
from cmal.uncertainty import Aggregate

__all__ = ["EntropySampling", "LeastConfidenceSampling", "MarginSampling", "UncertaintySampling"]


class UncertaintySampling(Strategy):
    """The ``k_t`` unlabeled examples with the most uncertain score ``kind``; ties broken at random.

    Parameters
    ----------
    kind : {"margin", "entropy", "least-confidence"}
    aggregate : {"mean", "min"}
        How multi-label per-class margins ``|2p - 1|`` are combined (margin only).
    random_state : None, int or numpy Generator
    """

    name = "uncertainty"
    needs = frozenset({"probs"})
    kind = "margin"

    def __init__(self, *, aggregate: Aggregate = "mean", random_state: Any = None) -> None:
        super().__init__(random_state=random_state)
        self.aggregate = aggregate

    def get_params(self) -> dict[str, Any]:
        return {"aggregate": self.aggregate, **super().get_params()}

    @property
    def score_kind(self) -> str:
        """The uncertainty score this strategy ranks by (a precomputed ``PoolState.scores`` entry works)."""
        return self.kind

    def _select(self, state: PoolState, k_t: int, rng: np.random.Generator) -> np.ndarray:
        # Score every row (no copy of the probability matrix), then keep the unlabeled ones.
        values = state.score(self.kind, aggregate=self.aggregate)[state.unlabeled]
        return state.unlabeled[lowest_k(uncertainty.uncertainty_order(values, self.kind), k_t, rng)]


class MarginSampling(UncertaintySampling):
    """Margin sampling: the ``k_t`` unlabeled examples with the smallest margin ``p_1 - p_2``.

    Equivalent to Cluster-Margin with ``k_m = k_t``.

    Examples
    --------
    >>> import numpy as np
    >>> from cmal.strategies import MarginSampling, PoolState
    >>> probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.6, 0.4], [0.5, 0.5]])
    >>> MarginSampling(random_state=0).select(PoolState.create(probs=probs, labeled=[3]), 2).tolist()
    [1, 2]
    """

    name = "margin"
    kind = "margin"


class EntropySampling(UncertaintySampling):
    """The ``k_t`` unlabeled examples with the highest predictive entropy."""

    name = "entropy"
    kind = "entropy"


class LeastConfidenceSampling(UncertaintySampling):
    """The ``k_t`` unlabeled examples whose top class probability is lowest."""

    name = "least-confidence"
    kind = "least-confidence"
