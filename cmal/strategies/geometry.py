"""Diversity baselines on embeddings: CoreSet (k-center greedy) and BADGE (k-means++ on gradient embeddings).

Both keep one O(n) vector, the distance of every point to its nearest chosen center, and update it after each
pick, so memory stays O(n (d + C)) however large the batch: peer implementations allocate n x k (CoreSet) or
n x (d C) (BADGE) matrices and run out of memory at 10^6 points. This greedy loop is hand-written because no
maintained library offers k-center greedy or BADGE seeding without those matrices.

:class:`Partitioned` runs either on ``m`` random parts of the pool with ``k_t / m`` picks each, as the paper does
to make them feasible on large pools.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cmal._validation import FLOAT32_DISTANCE_MAX_ABS, check_int, check_magnitude
from cmal.strategies.base import PoolState, Strategy

__all__ = ["Badge", "CoreSet", "Partitioned", "gradient_embedding_parts"]

# Rows per block when computing distances to many centers at once (bounds the temporary to ~64 MB).
_BLOCK = 1 << 16


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _min_sq_dist_to(x: np.ndarray, x_sq: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared distance of every row of ``x`` to its nearest row of ``centers``, in row blocks. Shape (n,)."""
    out = np.full(x.shape[0], np.inf, dtype=np.float64)
    if centers.shape[0] == 0:
        return out
    c_sq = _sq_norms(centers)
    step = max(1, _BLOCK * 16 // max(1, centers.shape[0]))
    for start in range(0, x.shape[0], step):
        block = x[start : start + step]
        d = x_sq[start : start + step, None] - 2.0 * block @ centers.T + c_sq[None, :]
        out[start : start + step] = d.min(axis=1)
    return np.maximum(out, 0.0)


class CoreSet(Strategy):
    """k-center greedy (Sener & Savarese, 2018) on embeddings, starting from the labeled set.

    Each pick is the unlabeled point farthest from every labeled or already-picked point; the nearest-center
    distance of every point is one O(n) vector updated per pick (one matrix-vector product).

    Examples
    --------
    >>> import numpy as np
    >>> from cmal.strategies import CoreSet, PoolState
    >>> emb = np.array([[0.0, 0], [0.1, 0], [5, 5], [5.1, 5], [-6, 2]])
    >>> sorted(CoreSet(random_state=0).select(PoolState.create(embeddings=emb, labeled=[0]), 2).tolist())
    [3, 4]
    """

    name = "coreset"
    needs = frozenset({"embeddings"})

    def _validate(self, state: PoolState, k_t: Any) -> int:
        k_t = super()._validate(state, k_t)
        _check_float32_range(_embeddings(state))
        return k_t

    def _select(self, state: PoolState, k_t: int, rng: np.random.Generator) -> np.ndarray:
        x = np.asarray(_embeddings(state), dtype=np.float32)
        x_sq = _sq_norms(x).astype(np.float64)
        dist = _min_sq_dist_to(x, x_sq, x[state.labeled])
        dist[state.labeled] = -1.0  # never picked
        picks = np.empty(k_t, dtype=np.int64)
        for i in range(k_t):
            # With no labeled point there is no "farthest" yet: start from a random unlabeled point.
            if i == 0 and state.labeled.size == 0:
                j = int(rng.choice(state.unlabeled))
            else:
                j = int(np.argmax(dist))
                if dist[j] == 0.0:  # duplicates of chosen points only: all tied, let the seed decide
                    j = int(rng.choice(np.flatnonzero(dist == 0.0)))
            picks[i] = j
            d_new = x_sq - 2.0 * (x @ x[j]) + x_sq[j]
            np.minimum(dist, np.maximum(d_new, 0.0), out=dist)
            dist[j] = -1.0
        return picks


def gradient_embedding_parts(
    probs: np.ndarray, embeddings: np.ndarray, multilabel: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The two factors of BADGE's last-layer gradient embedding ``g_i = a_i (x) h_i``.

    ``a_i = p_i - onehot(argmax p_i)`` (multiclass) or ``p_i - [p_i > 0.5]`` (multi-label) and ``h_i`` the
    embedding. Since ``<g_i, g_j> = <a_i, a_j> <h_i, h_j>``, every distance BADGE needs comes from these two
    small matrices, never from the n x (d C) gradient matrix. Returns ``(a, h)``, shapes (n, C) and (n, d).
    """
    # float32: each pick streams both matrices once, so half the bytes is nearly half the time at 10^6 rows.
    p = np.asarray(probs, dtype=np.float32)
    if multilabel:
        a = p - (p > 0.5)
    else:
        a = p.copy()
        a[np.arange(len(p)), p.argmax(axis=1)] -= 1.0
    return a.astype(np.float32, copy=False), np.asarray(embeddings, dtype=np.float32)


def _embeddings(state: PoolState) -> np.ndarray:
    """``state.embeddings``, which every strategy here has in ``needs`` (so ``Strategy._validate`` checked it)."""
    assert state.embeddings is not None
    return state.embeddings


def _check_float32_range(embeddings: np.ndarray) -> None:
    check_magnitude(embeddings, FLOAT32_DISTANCE_MAX_ABS, "this strategy (float32 distances)")


class Badge(Strategy):
    """BADGE (Ash et al., 2020): k-means++ seeding over last-layer gradient embeddings with the hypothesized
    label (argmax), computed from the factorized distances (see :func:`gradient_embedding_parts`).

    The first center is the point with the largest gradient norm; each next one is drawn with probability
    proportional to its squared distance to the nearest chosen center.
    """

    name = "badge"
    needs = frozenset({"probs", "embeddings"})

    def _validate(self, state: PoolState, k_t: Any) -> int:
        k_t = super()._validate(state, k_t)
        _check_float32_range(_embeddings(state))
        return k_t

    def _select(self, state: PoolState, k_t: int, rng: np.random.Generator) -> np.ndarray:
        unl = state.unlabeled
        assert state.probs is not None  # in needs, checked by _validate
        a, h = gradient_embedding_parts(state.probs[unl], _embeddings(state)[unl], state.multilabel)
        a_sq, h_sq = _sq_norms(a).astype(np.float64), _sq_norms(h).astype(np.float64)
        g_sq = a_sq * h_sq
        picks = np.empty(k_t, dtype=np.int64)
        j = int(np.argmax(g_sq))
        dist = np.full(unl.size, np.inf)
        for i in range(k_t):
            picks[i] = j
            d_new = g_sq - 2.0 * (a @ a[j]) * (h @ h[j]) + g_sq[j]
            np.minimum(dist, np.maximum(d_new, 0.0), out=dist)
            dist[picks[: i + 1]] = 0.0
            if i + 1 == k_t:
                break
            # D^2 sampling by inverting the cumulative sum: one pass, unlike rng.choice(p=...) which also
            # normalizes and validates p.
            cdf = np.cumsum(dist)
            if cdf[-1] <= 0:  # every remaining point coincides with a center: pick uniformly among the rest
                rest = np.setdiff1d(np.arange(unl.size), picks[: i + 1])
                j = int(rng.choice(rest))
            else:
                j = int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), unl.size - 1))
        return unl[picks]


class Partitioned(Strategy):
    """Run ``base`` independently on ``m`` uniformly random parts of the unlabeled pool, ``k_t / m`` picks each
    (the remainder spread over the first parts), as the paper does for CoreSet and BADGE on large pools."""

    name = "partitioned"

    def __init__(self, base: type[Strategy], *, m: int = 10, random_state: Any = None) -> None:
        super().__init__(random_state=random_state)
        self.base, self.m = base, m
        self.needs = base.needs
        self.name = f"{base.name}-partitioned"

    def get_params(self) -> dict[str, Any]:
        return {"base": self.base.name, "m": self.m, **super().get_params()}

    def _validate(self, state: PoolState, k_t: Any) -> int:
        k_t = super()._validate(state, k_t)
        _check_float32_range(_embeddings(state))
        return k_t

    def _select(self, state: PoolState, k_t: int, rng: np.random.Generator) -> np.ndarray:
        m = min(check_int(self.m, "m (partitions)", minimum=1), k_t)
        # Partition the whole pool: each part keeps its own labeled points (CoreSet's starting centers).
        parts = np.array_split(rng.permutation(state.n), m)
        labeled = np.zeros(state.n, dtype=bool)
        labeled[state.labeled] = True
        room = np.array([int((~labeled[p]).sum()) for p in parts])
        quotas = np.minimum(np.full(m, k_t // m) + (np.arange(m) < k_t % m), room)
        while quotas.sum() < k_t:  # a part without enough unlabeled points: give its share to others
            quotas[np.argmax(room - quotas)] += 1
        out = []
        for part, quota in zip(parts, quotas):
            if quota == 0:
                continue
            probs, clusters, embeddings = (
                None if a is None else a[part] for a in (state.probs, state.clusters, state.embeddings)
            )
            sub = PoolState(part.size, np.flatnonzero(labeled[part]), probs, clusters, embeddings, state.multilabel)
            out.append(part[self.base(random_state=rng)._select(sub, int(quota), rng)])
        return np.concatenate(out)
