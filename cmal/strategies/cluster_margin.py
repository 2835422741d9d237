"""Cluster-Margin (Algorithm 2 of Citovsky et al., 2021) and Cluster-Random.

Cluster-Margin is three parts in a row:

1. **candidates**: the ``k_m`` unlabeled examples with the smallest margin;
2. **groups**: the HAC cluster of each candidate (clusters with no candidate drop out);
3. **rule**: :func:`round_robin_ascending` turns the groups into a batch: clusters sorted by their
   number of candidates, smallest first, then one random candidate from each in turn, cycling (exhausted
   clusters skipped) until ``k_t`` are chosen.

:meth:`ClusterMargin.explain` returns every intermediate result, for teaching and for the widgets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cmal._validation import check_int, check_positive_float
from cmal.strategies.base import PoolState, Strategy, lowest_k, unlabeled_margins

__all__ = ["ClusterMargin", "ClusterMarginSelection", "ClusterRandom", "round_robin_ascending"]


def round_robin_ascending(
    groups: np.ndarray, k_t: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paper's rule: smallest groups first, one random member per group per pass.

    Vectorized: every member gets a random rank inside its group (its pass number); the batch is the first
    ``k_t`` members in (pass, position of the group in ascending-size order). This equals the walk "take one
    random member from each group in order, start again from the smallest group that still has members"
    without a Python loop, so it costs O(m log m) for ``m`` candidates.

    Parameters
    ----------
    groups : array of shape (m,)
        Group (cluster) id of each candidate.
    k_t : int, 1 <= k_t <= m
    rng : numpy Generator
        Draws the member order inside each group and the order among groups of equal size.

    Returns
    -------
    picks : ndarray of shape (k_t,)
        Positions into ``groups``, in pick order.
    passes : ndarray of shape (k_t,)
        Round-robin pass (0 = first walk over the groups) of each pick.
    order : ndarray of shape (g,)
        The distinct group ids in walk order (ascending size).

    Examples
    --------
    >>> import numpy as np
    >>> groups = np.array([7, 7, 7, 3, 5, 5])  # sizes: 7 -> 3, 3 -> 1, 5 -> 2
    >>> picks, passes, order = round_robin_ascending(groups, 4, np.random.default_rng(0))
    >>> groups[picks].tolist(), passes.tolist(), order.tolist()
    ([3, 5, 7, 5], [0, 0, 0, 1], [3, 5, 7])
    """
    groups = np.asarray(groups)
    m = groups.shape[0]
    ids, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    # Ascending size; among equal sizes a random order (the paper leaves it open; the seed decides).
    group_order = np.lexsort((rng.permutation(counts.size), counts))
    position = np.empty(counts.size, dtype=np.int64)
    position[group_order] = np.arange(counts.size)
    # Random rank inside each group: shuffle, then stable-sort by group.
    shuffled = rng.permutation(m)
    grouped = shuffled[np.argsort(inverse[shuffled], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(m, dtype=np.int64)
    rank[grouped] = np.arange(m) - starts[inverse[grouped]]
    picks = np.lexsort((position[inverse], rank))[:k_t]
    return picks, rank[picks], ids[group_order]


@dataclass(frozen=True)
class ClusterMarginSelection:
    """Every step of one Cluster-Margin selection.

    Attributes
    ----------
    indices : ndarray (k_t,)
        The batch, pool indices in pick order.
    candidates : ndarray (m,)
        The ``k_m`` candidates (pool indices), most uncertain first (all unlabeled for Cluster-Random).
    candidate_margins : ndarray (m,) or None
        Their margins (None when no probabilities were given).
    candidate_clusters : ndarray (m,)
        Their cluster ids.
    cluster_order : ndarray (g,)
        Clusters holding at least one candidate, in round-robin order (ascending candidate count).
    cluster_counts : ndarray (g,)
        Candidates in each of those clusters.
    cluster_picked : ndarray (g,)
        How many batch members each of those clusters gave.
    batch_clusters : ndarray (k_t,)
        Cluster of each batch member.
    batch_pass : ndarray (k_t,)
        Round-robin pass in which each batch member was taken (0 = first walk).
    """

    indices: np.ndarray
    candidates: np.ndarray
    candidate_margins: np.ndarray | None
    candidate_clusters: np.ndarray
    cluster_order: np.ndarray
    cluster_counts: np.ndarray
    cluster_picked: np.ndarray
    batch_clusters: np.ndarray
    batch_pass: np.ndarray


class ClusterMargin(Strategy):
    """Cluster-Margin: diversity among the most uncertain examples through HAC clusters.

    Parameters
    ----------
    k_m : int, "all" or None
        Number of low-margin candidates. ``None`` (default) means ``ceil(k_m_ratio * k_t)`` at call time;
        ``"all"`` takes every unlabeled example (Cluster-Random). ``k_m = k_t`` is plain Margin sampling. When
        the unlabeled pool is smaller than ``k_m``, every unlabeled example is a candidate.
    k_m_ratio : float >= 1
        Used when ``k_m`` is None. 1.25 matches the paper's CIFAR-scale runs and measured best on an 8k MNIST
        pool; about 10 is the paper's large-pool (Open Images) setting.
    aggregate : {"mean", "min"}
        Multi-label margin aggregation (ignored for multiclass).
    random_state : None, int or numpy Generator
        Governs margin ties, the order among equal-size clusters and the pick inside each cluster.

    Examples
    --------
    >>> import numpy as np
    >>> from cmal.strategies import ClusterMargin, PoolState
    >>> probs = np.array([[.5, .5], [.52, .48], [.51, .49], [.9, .1], [.53, .47]])
    >>> clusters = np.array([0, 0, 0, 1, 2])
    >>> state = PoolState.create(probs=probs, clusters=clusters)
    >>> sorted(ClusterMargin(k_m=4, random_state=0).select(state, 2).tolist()) in ([0, 4], [1, 4], [2, 4])
    True
    """

    name = "cluster-margin"
    needs = frozenset({"probs", "clusters"})

    def __init__(self, *, k_m: int | str | None = None, k_m_ratio: float = 1.25, aggregate: str = "mean",
                 random_state: Any = None) -> None:
        super().__init__(random_state=random_state)
        self.k_m = k_m
        self.k_m_ratio = k_m_ratio
        self.aggregate = aggregate

    def get_params(self) -> dict[str, Any]:
        return {"k_m": self.k_m, "k_m_ratio": self.k_m_ratio, "aggregate": self.aggregate,
                **super().get_params()}

    def _resolve_k_m(self, k_t: int, n_unlabeled: int) -> int:
        if self.k_m == "all":
            return n_unlabeled
        if self.k_m is None:
            ratio = check_positive_float(self.k_m_ratio, "k_m_ratio")
            if ratio < 1:
                raise ValueError(f"k_m_ratio must be >= 1 (k_m >= k_t), got {ratio}.")
            k_m = math.ceil(ratio * k_t)
        else:
            k_m = check_int(self.k_m, "k_m (candidates)", minimum=1)
            if k_m < k_t:
                raise ValueError(
                    f"k_m (candidates) is {k_m} but k_t (batch size) is {k_t}; k_m must be >= k_t. "
                    f"Raise k_m to at least {k_t} (k_m = k_t is plain Margin sampling)."
                )
        return min(k_m, n_unlabeled)

    def explain(self, state: PoolState, k_t: int) -> ClusterMarginSelection:
        """Run one selection and return every intermediate step (see :class:`ClusterMarginSelection`).

        Draws from the same generator as :meth:`select`.
        """
        k_t = self._validate(state, k_t)
        plan = self._plan(state, k_t, self._rng)
        self._check_batch(state, k_t, plan.indices)
        return plan

    def _select(self, state: PoolState, k_t: int, rng: np.random.Generator) -> np.ndarray:
        return self._plan(state, k_t, rng).indices

    def _plan(self, state: PoolState, k_t: int, rng: np.random.Generator) -> ClusterMarginSelection:
        unlabeled = state.unlabeled
        k_m = self._resolve_k_m(k_t, unlabeled.size)
        margins = unlabeled_margins(state, self.aggregate) if state.probs is not None else None
        # 1. candidates: the k_m smallest margins (ties at random), or every unlabeled example.
        if k_m == unlabeled.size:
            order = np.argsort(margins, kind="stable") if margins is not None else np.arange(unlabeled.size)
        else:
            order = lowest_k(margins, k_m, rng)
        candidates = unlabeled[order]
        # 2. groups: the cluster of each candidate.
        groups = state.clusters[candidates]
        # 3. rule: ascending-size random round-robin.
        picks, passes, cluster_order = round_robin_ascending(groups, k_t, rng)
        batch = candidates[picks]
        # Candidates and picks per cluster, aligned with cluster_order (searchsorted into the sorted ids).
        ids, counts = np.unique(groups, return_counts=True)
        where = np.searchsorted(ids, cluster_order)
        picked = np.bincount(np.searchsorted(ids, groups[picks]), minlength=ids.size)
        return ClusterMarginSelection(
            indices=batch,
            candidates=candidates,
            candidate_margins=None if margins is None else margins[order],
            candidate_clusters=groups,
            cluster_order=cluster_order,
            cluster_counts=counts[where],
            cluster_picked=picked[where],
            batch_clusters=groups[picks],
            batch_pass=passes,
        )


class ClusterRandom(ClusterMargin):
    """Cluster-Random: Cluster-Margin with every unlabeled example a candidate (``k_m = |unlabeled|``).

    Cluster-balanced random sampling; needs only cluster labels.

    Examples
    --------
    >>> import numpy as np
    >>> from cmal.strategies import ClusterRandom, PoolState
    >>> state = PoolState.create(clusters=np.array([0, 0, 0, 0, 1, 2]))
    >>> sorted(np.array([0, 0, 0, 0, 1, 2])[ClusterRandom(random_state=0).select(state, 3)].tolist())
    [0, 1, 2]
    """

    name = "cluster-random"
    needs = frozenset({"clusters"})

    def __init__(self, *, aggregate: str = "mean", random_state: Any = None) -> None:
        super().__init__(k_m="all", aggregate=aggregate, random_state=random_state)

    def get_params(self) -> dict[str, Any]:
        return {"aggregate": self.aggregate, "random_state": self.random_state}
