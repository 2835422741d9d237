"""Cluster-Margin (Algorithm 2 of Citovsky et al., 2021) and Cluster-Random.

Cluster-Margin is three parts in a row:

1. **candidates**: the ``k_m`` unlabeled examples with the smallest margin;
2. **groups**: the HAC cluster of each candidate (clusters with no candidate drop out);
3. **rule**: :func:`cmal.strategies.rules.ascending` turns the groups into a batch: clusters sorted by
   their number of candidates, smallest first, then one random candidate from each in turn, cycling (exhausted
   clusters skipped) until ``k_t`` are chosen. Other rules live in :mod:`cmal.strategies.rules`.

The candidates' uncertainty is the margin by default; ``uncertainty="entropy"`` or ``"least-confidence"``
swaps the first part.

:meth:`ClusterMargin.explain` returns every intermediate result, for teaching and for the widgets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from cmal import uncertainty
from cmal._validation import check_int, check_positive_float
from cmal.strategies.base import PoolState, Strategy, lowest_k
from cmal.strategies.rules import Rule, ascending, occurrence_rank
from cmal.uncertainty import Aggregate

__all__ = [
    "AUTO_MAX_RATIO",
    "ClusterMargin",
    "ClusterMarginSelection",
    "ClusterRandom",
    "auto_candidate_count",
    "candidate_count",
]

#: k_m="auto" never takes more than this many times k_t candidates: the paper's large-pool ratio (Open Images).
AUTO_MAX_RATIO = 10.0


def candidate_count(k_t: int, ratio: float) -> int:
    """``ceil(ratio * k_t)`` computed exactly: ``candidate_count(100, 1.1)`` is 110, not 111.

    The float product ``1.1 * 100`` is ``110.00000000000001``; the ratio is read as the decimal the user
    wrote (its shortest round-trip ``repr``) and multiplied as a fraction.

    Examples
    --------
    >>> candidate_count(100, 1.1), candidate_count(200, 1.25), candidate_count(7, 1.5)
    (110, 250, 11)
    """
    k_t = check_int(k_t, "k_t", minimum=0)
    ratio = check_positive_float(ratio, "ratio")
    return math.ceil(Fraction(repr(ratio)) * k_t)


def auto_candidate_count(groups: np.ndarray, k_t: int, n_groups: int | None = None) -> tuple[int, int, int]:
    """The adaptive ``k_m``: the shortest prefix of ``groups`` (the candidates' clusters, most uncertain first)
    that spans ``min(k_t, n_groups)`` distinct clusters, and at least ``k_t`` long.

    Parameters
    ----------
    groups : int array (m,)
        Cluster of each of the ``m`` most uncertain unlabeled examples, most uncertain first; ``m`` is the cap.
    k_t : int
        Batch size.
    n_groups : int, optional
        Distinct clusters among all unlabeled examples (default: among ``groups``). When fewer than ``k_t``, the
        target is to span all of them.

    Returns
    -------
    (k_m, covered, target) : tuple of int
        The chosen count (``min(k_t, m) <= k_m <= m``), how many distinct clusters its candidates span and how
        many were wanted; ``covered < target`` means the cap was reached first.

    Examples
    --------
    >>> auto_candidate_count(np.array([0, 0, 1, 1, 2, 3, 3, 4]), 3)   # 3 clusters after 5 candidates
    (5, 3, 3)
    >>> auto_candidate_count(np.array([0, 1, 2, 0]), 2)               # the first k_t already differ
    (2, 2, 2)
    >>> auto_candidate_count(np.array([0, 0, 0, 1]), 3)               # only 2 clusters: span both
    (4, 2, 2)
    >>> auto_candidate_count(np.array([0, 0, 0, 1]), 3, n_groups=5)   # cap reached first
    (4, 2, 3)
    """
    groups = np.asarray(groups)
    m = int(groups.size)
    first = np.sort(np.unique(groups, return_index=True)[1])  # position where each cluster first appears
    target = min(int(k_t), int(first.size if n_groups is None else n_groups))
    if first.size >= target:
        k_m = max(int(k_t), int(first[target - 1]) + 1) if target > 0 else int(k_t)
        return min(k_m, m), target, target
    return m, int(first.size), target


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
        Their uncertainty key, smaller = more uncertain: the margins by default (None without probabilities).
    candidate_clusters : ndarray (m,)
        Their cluster ids.
    cluster_order : ndarray (g,)
        Clusters holding at least one candidate, in the order the rule first took from them (clusters it did
        not take from follow, by ascending candidate count).
    cluster_counts : ndarray (g,)
        Candidates in each of those clusters.
    cluster_picked : ndarray (g,)
        How many batch members each of those clusters gave.
    batch_clusters : ndarray (k_t,)
        Cluster of each batch member.
    batch_pass : ndarray (k_t,)
        How many earlier picks came from the same cluster: the round-robin pass (0 = first walk).
    k_m : int
        The number of candidates used (the one ``k_m="auto"`` chose).
    k_m_reason : str
        Where that number comes from, in one sentence.
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
    k_m: int = 0
    k_m_reason: str = ""


class ClusterMargin(Strategy):
    """Cluster-Margin: diversity among the most uncertain examples through HAC clusters.

    Parameters
    ----------
    k_m : int, "auto", "all" or None
        Number of low-margin candidates. ``None`` (default) means ``ceil(k_m_ratio * k_t)`` at call time
        (computed exactly, see :func:`candidate_count`); ``"all"`` takes every unlabeled example
        (Cluster-Random). ``k_m = k_t`` is plain Margin sampling. When the unlabeled pool is smaller than
        ``k_m``, every unlabeled example is a candidate.

        ``"auto"`` (beyond the paper) chooses, at every selection, the smallest ``k_m >= k_t`` whose candidates
        span at least ``k_t`` distinct clusters (or every cluster that still has unlabeled points, when there
        are fewer), capped at ``auto_max_ratio * k_t`` (:func:`auto_candidate_count`). Where the most uncertain
        examples are spread over many clusters it stays near ``k_t`` (Margin's choice); where they pile up in a
        few clusters of near-duplicates it widens the candidate set so the batch can take one from each.
        :meth:`explain` reports the ``k_m`` it chose and why; ``last_k_m`` keeps it after :meth:`select`.
    k_m_ratio : float >= 1
        Used when ``k_m`` is None. 1.25 is our reading of the paper's CIFAR-scale runs; about 10, our reading of
        its large-pool (Open Images) setting. On our MNIST pools 1.25 was safe but close to Margin, and
        ``k_m="auto"`` did better where the pool holds near-duplicates (the ``k_m`` study in the benchmarks
        guide).
    auto_max_ratio : float >= 1
        The cap of ``k_m="auto"``, as a multiple of ``k_t`` (default 10, the paper's large-pool ratio).
    aggregate : {"mean", "min"}
        Multi-label margin aggregation (ignored for multiclass).
    rule : callable or str, optional
        How candidate groups become a batch (see :mod:`cmal.strategies.rules`); a function or the name of a
        shipped rule; default ``"ascending"``, the paper's rule. Swap it to prototype a diversity rule without
        touching the rest of the method.
    uncertainty : {"margin", "entropy", "least-confidence"}
        Which score picks the candidates (default margin, the paper's).
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
    >>> plan = ClusterMargin(k_m="auto", random_state=0).explain(state, 2)
    >>> plan.k_m, plan.k_m_reason
    (4, 'auto: the 4 most uncertain candidates span 2 clusters (the target: k_t = 2)')
    """

    name = "cluster-margin"
    needs = frozenset({"probs", "clusters"})

    def __init__(
        self,
        *,
        k_m: int | str | None = None,
        k_m_ratio: float = 1.25,
        aggregate: Aggregate = "mean",
        rule: Rule | str | None = None,
        uncertainty: str = "margin",
        auto_max_ratio: float = AUTO_MAX_RATIO,
        random_state: Any = None,
    ) -> None:
        super().__init__(random_state=random_state)
        self.k_m = k_m
        self.k_m_ratio = k_m_ratio
        self.auto_max_ratio = auto_max_ratio
        self.last_k_m: int | None = None  # the k_m of the latest selection (varies with k_m="auto")
        self.aggregate = aggregate
        self.rule = rule
        self.uncertainty = uncertainty

    def get_params(self) -> dict[str, Any]:
        rule = None if self.rule is None else getattr(self.rule, "__name__", repr(self.rule))
        return {
            "k_m": self.k_m,
            "k_m_ratio": self.k_m_ratio,
            "auto_max_ratio": self.auto_max_ratio,
            "aggregate": self.aggregate,
            "rule": rule,
            "uncertainty": self.uncertainty,
            **super().get_params(),
        }

    def _rule(self) -> Rule:
        from cmal.strategies.rules import RULES

        if self.rule is None:
            return ascending
        if isinstance(self.rule, str):
            if self.rule not in RULES:
                raise ValueError(f"Unknown rule {self.rule!r}; choose one of {', '.join(RULES)} or pass a function.")
            return RULES[self.rule]
        if not callable(self.rule):
            raise ValueError(f"rule must be a function or a rule name, got {type(self.rule).__name__}.")
        return self.rule

    def _resolve_k_m(self, k_t: int, n_unlabeled: int) -> tuple[int, str]:
        """The candidate count (or, for ``"auto"``, its cap) and a sentence saying where it comes from."""
        if self.k_m == "all":
            return n_unlabeled, f"all: every one of the {n_unlabeled} unlabeled examples (Cluster-Random)"
        if self.k_m == "auto":
            ratio = check_positive_float(self.auto_max_ratio, "auto_max_ratio")
            if ratio < 1:
                raise ValueError(f"auto_max_ratio must be >= 1 (k_m >= k_t), got {ratio}.")
            return min(candidate_count(k_t, ratio), n_unlabeled), "auto"
        if self.k_m is None:
            ratio = check_positive_float(self.k_m_ratio, "k_m_ratio")
            if ratio < 1:
                raise ValueError(f"k_m_ratio must be >= 1 (k_m >= k_t), got {ratio}.")
            k_m = candidate_count(k_t, ratio)
            why = f"fixed ratio, ceil({ratio:g} * k_t)"
        else:
            if isinstance(self.k_m, str):
                raise ValueError(f"k_m must be an integer, 'auto', 'all' or None, got {self.k_m!r}.")
            k_m = check_int(self.k_m, "k_m (candidates)", minimum=1)
            if k_m < k_t:
                raise ValueError(
                    f"k_m (candidates) is {k_m} but k_t (batch size) is {k_t}; k_m must be >= k_t. "
                    f"Raise k_m to at least {k_t} (k_m = k_t is plain Margin sampling), or pass k_m='auto'."
                )
            why = "fixed, given as a number"
        if k_m > n_unlabeled:
            return n_unlabeled, why + f", reduced to the {n_unlabeled} unlabeled examples"
        return k_m, why

    def explain(self, state: PoolState, k_t: int) -> ClusterMarginSelection:
        """Run one selection and return every intermediate step (see :class:`ClusterMarginSelection`).

        Draws from the same generator as :meth:`select`.
        """
        k_t = self._validate(state, k_t)
        plan = self._plan(state, k_t, self._rng)
        self._check_batch(state, k_t, plan.indices)
        return plan

    @property
    def score_kind(self) -> str:
        """The uncertainty score picking candidates (a precomputed ``PoolState.scores`` entry works)."""
        return self.uncertainty

    def _select(self, state: PoolState, k_t: int, rng: np.random.Generator) -> np.ndarray:
        candidates, _, _, picks, _ = self._pick(state, k_t, rng)
        return candidates[picks]

    def _pick(
        self, state: PoolState, k_t: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray, str]:
        """The three parts; returns candidates, their uncertainty key, their clusters, the rule's picks and
        why the candidate count is what it is."""
        unlabeled = state.unlabeled
        k_m, why = self._resolve_k_m(k_t, unlabeled.size)
        margins = None
        if state.probs is not None or (state.scores is not None and self.uncertainty in state.scores):
            values = state.score(self.uncertainty, aggregate=self.aggregate)[unlabeled]
            margins = uncertainty.uncertainty_order(values, self.uncertainty)  # smaller = more uncertain
        # 1. candidates: the k_m most uncertain (ties at random), or every unlabeled example.
        if k_m == unlabeled.size and why != "auto":  # the whole pool: the set is fixed, its order is not used
            order = np.argsort(margins, kind="stable") if margins is not None else np.arange(unlabeled.size)
        else:
            # No scores only for a strategy without probs in needs (Cluster-Random), whose k_m="all" took the branch
            # above.
            assert margins is not None
            order = lowest_k(margins, k_m, rng)
        candidates = unlabeled[order]
        # 2. groups: the cluster of each candidate.
        clusters = state.clusters
        assert clusters is not None  # in needs, checked by _validate
        groups = clusters[candidates]
        if why == "auto":
            # The shortest prefix (most uncertain first) that spans enough clusters; ``order`` holds the cap.
            k_m, covered, target = auto_candidate_count(groups, k_t)
            if covered < k_t:  # the cap spans fewer than k_t clusters: the target is every cluster left, if fewer
                # np.unique, not bincount: cluster ids may be negative or huge.
                n_groups = int(np.unique(clusters[unlabeled]).size)
                k_m, covered, target = auto_candidate_count(groups, k_t, n_groups)
            candidates, groups, order = candidates[:k_m], groups[:k_m], order[:k_m]
            why = _auto_reason(k_m, k_t, covered, target, self.auto_max_ratio)
        self.last_k_m = int(k_m)
        # 3. rule: by default the paper's random round-robin over clusters by ascending candidate count.
        rule = self._rule()
        scores = None if margins is None else margins[order]
        classes = None
        if state.probs is not None and _takes_classes(rule):
            classes = np.argmax(state.probs[candidates], axis=1)  # the model's guess, for class-aware rules
        picks = np.asarray(_call_rule(rule, groups, k_t, rng, scores, classes), dtype=np.int64)
        if picks.shape != (k_t,) or np.unique(picks).size != k_t or picks.min() < 0 or picks.max() >= groups.size:
            raise RuntimeError(
                f"rule {getattr(rule, '__name__', rule)!r} must return {k_t} distinct positions into the "
                f"{groups.size} candidates, got shape {picks.shape}."
            )
        return candidates, scores, groups, picks, why

    def _plan(self, state: PoolState, k_t: int, rng: np.random.Generator) -> ClusterMarginSelection:
        candidates, scores, groups, picks, why = self._pick(state, k_t, rng)
        # Per-cluster bookkeeping for explain(): clusters in the order the rule first took from them.
        ids, counts = np.unique(groups, return_counts=True)
        picked = np.bincount(np.searchsorted(ids, groups[picks]), minlength=ids.size)
        first = np.full(ids.size, groups.size + k_t, dtype=np.int64)
        np.minimum.at(first, np.searchsorted(ids, groups[picks]), np.arange(k_t))
        where = np.lexsort((counts, first))
        return ClusterMarginSelection(
            indices=candidates[picks],
            candidates=candidates,
            candidate_margins=scores,
            candidate_clusters=groups,
            cluster_order=ids[where],
            cluster_counts=counts[where],
            cluster_picked=picked[where],
            batch_clusters=groups[picks],
            batch_pass=occurrence_rank(groups[picks]),
            k_m=int(candidates.size),
            k_m_reason=why,
        )


def _auto_reason(k_m: int, k_t: int, covered: int, target: int, max_ratio: float) -> str:
    """The sentence explain() shows for k_m="auto" (the cap can only bind below the whole unlabeled pool)."""
    if covered < target:
        return (
            f"auto: stopped at the cap ({max_ratio:g} * k_t), k_m = {k_m}; those candidates span {covered} "
            f"clusters, fewer than the {target} wanted"
        )
    if target < k_t:
        return (
            f"auto: only {target} clusters hold unlabeled examples (< k_t = {k_t}); the {k_m} most "
            f"uncertain candidates span all of them (cut finer, at least 2 k_t clusters, for one pick per cluster)"
        )
    if k_m == k_t:
        return f"auto: the {k_t} most uncertain examples already lie in {k_t} different clusters (k_m = k_t)"
    return f"auto: the {k_m} most uncertain candidates span {target} clusters (the target: k_t = {k_t})"


def _takes_classes(rule: Rule) -> bool:
    """Whether a rule declares a ``classes`` parameter (the candidates' predicted classes)."""
    import inspect

    try:
        return "classes" in inspect.signature(rule).parameters
    except (TypeError, ValueError):
        return False


def _call_rule(
    rule: Rule,
    groups: np.ndarray,
    k_t: int,
    rng: np.random.Generator,
    scores: np.ndarray | None,
    classes: np.ndarray | None = None,
) -> np.ndarray:
    """Call a rule; rules written with only (groups, k_t, rng) keep working, and only rules that declare
    ``classes`` receive the predicted classes."""
    import inspect

    try:
        params = inspect.signature(rule).parameters
    except (TypeError, ValueError):  # builtins / C callables: assume the full signature
        return rule(groups, k_t, rng, scores)
    if "classes" in params:
        return rule(groups, k_t, rng, scores, classes=classes)
    takes_scores = len(params) >= 4 or any(p.kind is p.VAR_POSITIONAL for p in params.values()) or "scores" in params
    return rule(groups, k_t, rng, scores) if takes_scores else rule(groups, k_t, rng)


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

    def __init__(self, *, aggregate: Aggregate = "mean", rule: Rule | None = None, random_state: Any = None) -> None:
        # k_m is not a parameter: make_strategy("cluster-random", k_m="auto") drops it, candidates stay "all".
        super().__init__(k_m="all", aggregate=aggregate, rule=rule, random_state=random_state)
