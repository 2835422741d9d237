"""The strategy protocol: what every strategy receives, what it returns, and the checks around it.

A strategy sees only plain numpy arrays collected in a :class:`PoolState` (probabilities, cluster labels,
embeddings, the labeled indices) and returns ``k_t`` distinct unlabeled pool indices. It never sees a model
or an image, so it works with outputs of any framework and from ``cmal select``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cmal._validation import (
    as_generator,
    check_finite_matrix,
    check_indices,
    check_int,
    check_labels,
    check_probabilities,
)

if TYPE_CHECKING:
    from cmal.uncertainty import Aggregate

__all__ = ["PoolState", "Strategy", "lowest_k"]


@dataclass(frozen=True)
class PoolState:
    """Everything a strategy may look at, as validated numpy arrays.

    Build it with :meth:`PoolState.create`, which checks every array; the fields are then trusted.

    Attributes
    ----------
    n : int
        Pool size.
    labeled : ndarray of shape (n_labeled,), int64
        Pool indices already labeled (never selected again).
    probs : ndarray of shape (n, C) or None
        Current model's class probabilities (softmax rows, or sigmoids when ``multilabel``).
    clusters : ndarray of shape (n,) or None
        Cluster id of every pool row (from HAC, computed once).
    embeddings : ndarray of shape (n, d) or None
        Pool embeddings, for strategies that need geometry.
    multilabel : bool
        Whether ``probs`` holds one independent sigmoid per class.
    scores : dict of str to ndarray of shape (n,), or None
        Precomputed uncertainty scores by kind (``"margin"``, ``"entropy"``, ``"least-confidence"``), e.g.
        margins computed in chunks from a memory-mapped probability file
        (:func:`cmal.uncertainty.score_chunked`). Uncertainty strategies use them instead of ``probs``, so a
        pool of millions needs only its margins, cluster labels and labeled set in memory.
    """

    n: int
    labeled: np.ndarray
    probs: np.ndarray | None = None
    clusters: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    multilabel: bool = False
    scores: dict[str, np.ndarray] | None = None
    _unlabeled: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        mask = np.ones(self.n, dtype=bool)
        mask[self.labeled] = False
        object.__setattr__(self, "_unlabeled", np.flatnonzero(mask))

    @classmethod
    def create(
        cls,
        *,
        probs: Any = None,
        clusters: Any = None,
        labeled: Any = None,
        embeddings: Any = None,
        n: int | None = None,
        multilabel: bool = False,
        scores: dict[str, Any] | None = None,
    ) -> PoolState:
        """Validate the arrays and build a state.

        The pool size ``n`` is taken from whichever array is given (they must agree) or from ``n``.

        Examples
        --------
        >>> import numpy as np
        >>> s = PoolState.create(probs=np.full((4, 2), 0.5), labeled=[0, 2])
        >>> s.n, s.unlabeled.tolist()
        (4, [1, 3])
        """
        sizes: dict[str, int] = {}
        if probs is not None:
            probs = check_probabilities(probs, "probs", multilabel=multilabel)
            sizes["probs"] = probs.shape[0]
        if embeddings is not None:
            embeddings = check_finite_matrix(embeddings, "embeddings")
            sizes["embeddings"] = embeddings.shape[0]
        if clusters is not None:
            clusters = np.asarray(clusters)
            if clusters.ndim != 1:
                raise ValueError(f"clusters must be 1-D with one cluster id per pool row, got shape {clusters.shape}.")
            sizes["clusters"] = clusters.shape[0]
        if scores is not None:
            scores = _check_scores(scores)
            for kind, values in scores.items():
                sizes[f"scores[{kind!r}]"] = values.shape[0]
        if n is not None:
            sizes["n"] = check_int(n, "n", minimum=1)
        if not sizes:
            raise ValueError("PoolState needs the pool size: pass probs, clusters, embeddings or n.")
        if len(set(sizes.values())) > 1:
            detail = ", ".join(f"{k} has {v}" for k, v in sizes.items())
            raise ValueError(f"Pool arrays disagree on the number of rows ({detail}); they must describe one pool.")
        size = next(iter(sizes.values()))
        if size < 1:
            raise ValueError("The pool is empty; pass at least one row.")
        if clusters is not None:
            clusters = check_labels(clusters, size, "clusters")
        labeled = check_indices([] if labeled is None else labeled, size, "labeled")
        return cls(size, labeled, probs, clusters, embeddings, bool(multilabel), scores)

    def score(self, kind: str = "margin", *, aggregate: Aggregate = "mean") -> np.ndarray:
        """Uncertainty scores of every pool row, shape (n,): precomputed ``scores[kind]`` if given, else from
        ``probs``."""
        from cmal import uncertainty

        if self.scores is not None and kind in self.scores:
            return self.scores[kind]
        if self.probs is None:
            raise ValueError(f"the pool state has neither probs nor scores[{kind!r}]; pass one to PoolState.create.")
        return uncertainty.score_validated(self.probs, kind, multilabel=self.multilabel, aggregate=aggregate)

    @property
    def unlabeled(self) -> np.ndarray:
        """Unlabeled pool indices, ascending, shape (n - n_labeled,)."""
        return self._unlabeled

    def with_labeled(self, labeled: Any) -> PoolState:
        """A copy of this state with a different labeled set (arrays are shared, not copied)."""
        labeled = check_indices(labeled, self.n, "labeled")
        return PoolState(self.n, labeled, self.probs, self.clusters, self.embeddings, self.multilabel, self.scores)


def _check_scores(scores: Any) -> dict[str, np.ndarray]:
    from cmal.uncertainty import SCORES

    if not isinstance(scores, dict):
        raise ValueError(f"scores must be a dict like {{'margin': array of shape (n,)}}, got {type(scores).__name__}.")
    out = {}
    for kind, values in scores.items():
        if kind not in SCORES:
            raise ValueError(f"scores has an unknown kind {kind!r}; use one of {sorted(SCORES)}.")
        arr = np.asarray(values)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(
                f"scores[{kind!r}] must be a 1-D float array (one score per pool row), got shape "
                f"{arr.shape} and dtype {arr.dtype}."
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"scores[{kind!r}] contains NaN or inf; recompute it from valid probabilities.")
        out[kind] = arr
    return out


def lowest_k(key: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of the ``k`` smallest values of ``key``, ties broken uniformly at random.

    Runs in O(n) (``argpartition``) plus O(k log k) to sort the result by key, so it stays fast at 10^6.

    Parameters
    ----------
    key : array of shape (n,)
    k : int, 0 <= k <= n
    rng : numpy Generator used for ties.

    Returns
    -------
    ndarray of shape (k,), sorted by ``key`` ascending; equal keys in random order.
    """
    key = np.asarray(key)
    n = key.shape[0]
    if k >= n:
        chosen = np.arange(n)
    elif k == 0:
        return np.empty(0, dtype=np.int64)
    else:
        chosen = np.argpartition(key, k - 1)[:k]
        threshold = key[chosen].max()
        # Only when the k-th value is shared with points left out is the choice ambiguous; then the seed
        # decides among the tied points. (Float margins rarely tie, so this extra work is rare.)
        if np.count_nonzero(key == threshold) > np.count_nonzero(key[chosen] == threshold):
            below = np.flatnonzero(key < threshold)
            tied = np.flatnonzero(key == threshold)
            chosen = np.concatenate([below, rng.choice(tied, k - below.size, replace=False)])
    chosen = chosen[rng.permutation(chosen.size)]  # random order among equal keys after the stable sort
    return chosen[np.argsort(key[chosen], kind="stable")].astype(np.int64)


class Strategy:
    """Base class: one ``select`` method; hyper-parameters set at construction, checked at call time.

    Subclasses implement ``_select`` and declare which :class:`PoolState` fields they need in
    ``needs``. The generator made from ``random_state`` advances with every call, so repeated calls on one
    instance give different draws, and a new instance with the same seed replays the same sequence.

    Parameters
    ----------
    random_state : None, int or numpy Generator
        Seeds every random choice the strategy makes (tie-breaking included).
    """

    # Class attributes that an instance may override (Partitioned names itself after its base; make_strategy
    # gives a strategy the name it was asked by), hence not ClassVar.
    name: str = "base"
    needs: frozenset[str] = frozenset()

    def __init__(self, *, random_state: Any = None) -> None:
        self.random_state = random_state
        self._rng = as_generator(random_state)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters, for logs and ``config.json``."""
        return {"random_state": self.random_state}

    def select(self, state: PoolState, k_t: int) -> np.ndarray:
        """Choose a batch.

        Parameters
        ----------
        state : PoolState
        k_t : int
            Batch size, ``1 <= k_t <=`` number of unlabeled examples.

        Returns
        -------
        ndarray of shape (k_t,), int64
            Distinct unlabeled pool indices, in the order the strategy picked them.
        """
        k_t = self._validate(state, k_t)
        return self._check_batch(state, k_t, self._select(state, k_t, self._rng))

    def _validate(self, state: PoolState, k_t: Any) -> int:
        """Check the call's arguments against this strategy's needs; return ``k_t`` as an int."""
        if not isinstance(state, PoolState):
            raise ValueError(f"state must be a cmal PoolState (use PoolState.create(...)), got {type(state).__name__}.")
        k_t = self._check_k_t(state, k_t)
        kind = getattr(self, "score_kind", None)
        has_scores = state.scores is not None and kind in state.scores
        missing = [f for f in sorted(self.needs) if getattr(state, f) is None and not (f == "probs" and has_scores)]
        if missing:
            raise ValueError(
                f"Strategy {self.name!r} needs {', '.join(missing)} in the pool state; "
                f"pass {' and '.join(missing)} to PoolState.create."
            )
        return k_t

    def _check_batch(self, state: PoolState, k_t: int, batch: Any) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.int64)
        # The protocol's promise, checked on every call because a broken custom rule must not corrupt a run.
        if batch.shape != (k_t,) or np.unique(batch).size != k_t or np.isin(batch, state.labeled).any():
            raise RuntimeError(
                f"Strategy {self.name!r} broke the protocol: it must return {k_t} distinct unlabeled indices, "
                f"got shape {batch.shape}."
            )
        return batch

    @staticmethod
    def _check_k_t(state: PoolState, k_t: Any) -> int:
        k_t = check_int(k_t, "k_t (batch size)", minimum=1)
        n_unlabeled = state.unlabeled.size
        if k_t > n_unlabeled:
            raise ValueError(
                f"k_t (batch size) is {k_t} but only {n_unlabeled} pool examples are unlabeled; "
                f"lower k_t to at most {n_unlabeled}."
            )
        return k_t

    def _select(self, state: PoolState, k_t: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError
