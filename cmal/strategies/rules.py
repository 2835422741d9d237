"""Diversity rules: how Cluster-Margin turns candidate groups (clusters) into a batch.

A rule is a plain function ``rule(groups, k_t, rng, scores) -> positions``:

- ``groups``: (m,) cluster id of each candidate, candidates ordered most uncertain first;
- ``k_t``: batch size (``1 <= k_t <= m``);
- ``rng``: a numpy Generator (all randomness must come from it, so one seed replays the batch);
- ``scores``: (m,) uncertainty key of each candidate, smaller = more uncertain (margins), or None;
- returns ``k_t`` distinct positions into the candidates, in pick order.

A rule that also declares a ``classes`` parameter receives the (m,) *predicted* class of each candidate (the
argmax of the current model's probabilities), or None when the pool state has no probabilities:
:func:`class_balanced` uses it.

:func:`~cmal.strategies.register_rule` makes a rule a named strategy usable everywhere (loop, CLI, widgets, benchmark).
Most rules are "walk the clusters in some order, one random member per cluster per pass": :func:`round_robin`
does that walk for any cluster order, vectorized, so a new rule is often one line.

Examples
--------
>>> import numpy as np
>>> from cmal.strategies.rules import round_robin, candidate_counts
>>> groups = np.array([4, 4, 4, 9, 9, 2])
>>> def largest_first(groups, k_t, rng, scores=None):
...     return round_robin(groups, k_t, rng, order_key=-candidate_counts(groups))
>>> groups[largest_first(groups, 4, np.random.default_rng(0))].tolist()
[4, 9, 2, 4]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "RULES",
    "Rule",
    "ascending",
    "candidate_counts",
    "class_balanced",
    "cluster_sizes",
    "descending",
    "margin_weighted",
    "occurrence_rank",
    "proportional",
    "random_order",
    "round_robin",
]

#: A diversity rule: ``rule(groups, k_t, rng, scores) -> positions`` (see the module docstring).
Rule = Callable[..., np.ndarray]


def candidate_counts(groups: np.ndarray) -> np.ndarray:
    """Number of candidates in each distinct group, in ``np.unique(groups)`` order. Shape (g,).

    This is what the paper's rule sorts by: how many of the ``k_m`` candidates a cluster holds, not how many pool
    points it has (a cluster of 500 points with one candidate comes before a cluster of 5 with two).
    """
    return np.unique(groups, return_counts=True)[1]


# The earlier name, kept so existing rules keep working; it counts candidates, not cluster members.
cluster_sizes = candidate_counts


def occurrence_rank(values: np.ndarray) -> np.ndarray:
    """For each element, how many equal elements come before it: the round-robin pass of each pick.

    >>> occurrence_rank(np.array([3, 5, 7, 5, 7, 7])).tolist()
    [0, 0, 0, 1, 1, 2]
    """
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, values.size]))
    rank = np.empty(values.size, dtype=np.int64)
    rank[order] = np.arange(values.size) - run_start
    return rank


def _random_ranks(inverse: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random order of the members inside each group: each candidate's rank in its group."""
    shuffled = rng.permutation(inverse.size)
    rank = np.empty(inverse.size, dtype=np.int64)
    rank[shuffled] = occurrence_rank(inverse[shuffled])
    return rank


def round_robin(groups: np.ndarray, k_t: int, rng: np.random.Generator, order_key: np.ndarray) -> np.ndarray:
    """Walk the groups by ascending ``order_key`` (one per distinct group, ``np.unique`` order; ties in random
    order), taking one random member per group per pass, skipping exhausted groups, until ``k_t`` are taken.

    Vectorized: each member's pass is its random rank inside its group; the batch is the first ``k_t`` members in
    (pass, group position) order, O(m log m) without a Python loop.
    """
    groups = np.asarray(groups)
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.lexsort((rng.permutation(counts.size), np.asarray(order_key)))
    position = np.empty(counts.size, dtype=np.int64)
    position[order] = np.arange(counts.size)
    rank = _random_ranks(inverse, rng)
    return np.lexsort((position[inverse], rank))[:k_t]


def ascending(groups: np.ndarray, k_t: int, rng: np.random.Generator, scores: np.ndarray | None = None) -> np.ndarray:
    """The paper's rule: clusters with the fewest candidates first, one random candidate per cluster per pass.

    Examples
    --------
    >>> import numpy as np
    >>> groups = np.array([7, 7, 7, 3, 5, 5])  # candidates per cluster: 7 -> 3, 3 -> 1, 5 -> 2
    >>> groups[ascending(groups, 4, np.random.default_rng(0))].tolist()
    [3, 5, 7, 5]
    """
    return round_robin(groups, k_t, rng, candidate_counts(groups))


def descending(groups: np.ndarray, k_t: int, rng: np.random.Generator, scores: np.ndarray | None = None) -> np.ndarray:
    """Clusters with the most candidates first (the opposite of the paper), one random candidate per cluster per
    pass."""
    return round_robin(groups, k_t, rng, -candidate_counts(groups))


def random_order(
    groups: np.ndarray, k_t: int, rng: np.random.Generator, scores: np.ndarray | None = None
) -> np.ndarray:
    """Clusters in random order, one random candidate per cluster per pass."""
    return round_robin(groups, k_t, rng, np.zeros(candidate_counts(groups).size))


def margin_weighted(
    groups: np.ndarray, k_t: int, rng: np.random.Generator, scores: np.ndarray | None = None
) -> np.ndarray:
    """Clusters whose candidates are most uncertain on average (lowest mean margin) first."""
    if scores is None:
        raise ValueError("the margin-weighted rule needs candidate scores: pass probabilities (probs).")
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    mean = np.bincount(inverse.reshape(-1), weights=scores) / counts
    return round_robin(groups, k_t, rng, mean)


def proportional(
    groups: np.ndarray, k_t: int, rng: np.random.Generator, scores: np.ndarray | None = None
) -> np.ndarray:
    """Each cluster gives a share of the batch proportional to its candidate count (largest remainders, ties
    at random); members drawn at random inside each cluster."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    exact = k_t * counts / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    short = k_t - int(quota.sum())
    if short:
        quota[np.lexsort((rng.permutation(counts.size), -(exact - quota)))[:short]] += 1
    rank = _random_ranks(inverse, rng)
    chosen = np.flatnonzero(rank < quota[inverse])
    return chosen[rng.permutation(chosen.size)]


def class_balanced(
    groups: np.ndarray,
    k_t: int,
    rng: np.random.Generator,
    scores: np.ndarray | None = None,
    classes: np.ndarray | None = None,
) -> np.ndarray:
    """Balance the batch over *predicted* classes first, then over clusters inside each class.

    Each pass takes one candidate from every predicted class, the classes with the fewest candidates first (ties
    at random); inside a class the candidates come in the paper's order (:func:`ascending` on that class's
    clusters). Why: on a long-tailed pool the most uncertain examples sit mostly between the frequent classes,
    and one-per-cluster alone still fills the batch with them (the rare classes starve; Emam et al., 2021). The
    predicted class is the model's guess, so the balance is only as good as the model; a cluster split between
    two predicted classes can give two picks in one pass. With ``classes=None`` this is :func:`ascending`.

    Parameters
    ----------
    groups : ndarray of shape (m,)
        Cluster id of each candidate, most uncertain first.
    k_t : int
    rng : numpy Generator
    scores : ndarray of shape (m,), optional
        Unused (accepted so the rule has the standard signature).
    classes : ndarray of shape (m,), optional
        Predicted class of each candidate.

    Returns
    -------
    ndarray of shape (k_t,): positions into the candidates, in pick order.

    Examples
    --------
    >>> import numpy as np
    >>> groups = np.array([1, 2, 3, 4, 5, 6, 7])
    >>> classes = np.array([0, 0, 0, 0, 0, 1, 2])  # class 0 holds 5 candidates, classes 1 and 2 one each
    >>> sorted(classes[class_balanced(groups, 3, np.random.default_rng(0), classes=classes)].tolist())
    [0, 1, 2]
    """
    if classes is None:
        return ascending(groups, k_t, rng, scores)
    groups, classes = np.asarray(groups), np.asarray(classes)
    if classes.shape != groups.shape:
        raise ValueError(
            f"classes must have one predicted class per candidate, shape {groups.shape}, got {classes.shape}."
        )
    _, inverse, counts = np.unique(classes, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.lexsort((rng.permutation(counts.size), counts))  # fewest candidates first, ties at random
    position = np.empty(counts.size, dtype=np.int64)
    position[order] = np.arange(counts.size)
    # Each candidate's rank inside its class, in the paper's order over that class's clusters.
    rank = np.empty(groups.size, dtype=np.int64)
    for c in range(counts.size):  # one pass per predicted class: C is small (tens to thousands)
        members = np.flatnonzero(inverse == c)
        rank[members[ascending(groups[members], members.size, rng)]] = np.arange(members.size)
    return np.lexsort((position[inverse], rank))[:k_t]


#: The shipped rules by name, for ``ClusterMargin(rule=name)``; each is also registered as a strategy
#: (``cluster-margin-<name>``, ``cluster-margin`` for ascending). Your own rule: pass the function, or
#: :func:`~cmal.strategies.register_rule`.
RULES: dict[str, Rule] = {
    "ascending": ascending,
    "descending": descending,
    "random-order": random_order,
    "margin-weighted": margin_weighted,
    "proportional": proportional,
    "class-balanced": class_balanced,
}
