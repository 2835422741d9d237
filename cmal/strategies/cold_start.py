"""Cold-start strategies: choose the seed set from embeddings alone (no labels, no model probabilities).

Active learning starts from a seed set that is usually drawn at random. With a small budget, a seed set that
covers the dense, typical regions of the pool trains a better first model (Hacohen et al., 2022). Both
strategies here need only ``PoolState.embeddings`` (e.g. a self-supervised or pretrained encoder's features),
so they can choose the seed set before any model exists, and they keep working in later rounds.

- :class:`TypiClust` (TPC-RP; Hacohen, Dekel & Weinshall, "Active Learning on a Budget", ICML 2022):
  k-means into ``n_labeled + k_t`` clusters, then the most *typical* point (see :func:`typicality`) of the
  largest cluster that holds no labeled or picked point, repeatedly.
- :class:`ProbCover` (Yehuda, Dekel, Hacohen & Weinshall, "Active Learning Through a Covering Lens",
  NeurIPS 2022): greedy maximum coverage with balls of radius ``delta``; ``delta`` by the paper's purity rule
  (:func:`choose_delta`), coverage measured by :func:`coverage`.

Both take every random choice (k-means seeding, sampling, ties) from the strategy's generator, so one seed
replays the batch.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import numbers
import os
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import numpy as np

from cmal._validation import (
    FLOAT32_DISTANCE_MAX_ABS,
    as_generator,
    check_finite_matrix,
    check_indices,
    check_int,
    check_labels,
    check_magnitude,
)
from cmal.strategies.base import PoolState, Strategy

__all__ = ["ProbCover", "TypiClust", "choose_delta", "coverage", "typicality"]

#: Above this many rows k-means runs as scikit-learn's ``MiniBatchKMeans`` (batches of 4,096) instead of full
#: Lloyd ``KMeans``, which took 2 to 4 times as long with 100 clusters at 50,000 x 32 on 2 busy cores.
MINIBATCH_ABOVE = 50_000
#: Rows per purity estimate in :func:`choose_delta`; more rows than this are subsampled (standard error of the
#: estimated purity about sqrt(0.05 * 0.95 / 5000) = 0.003 at purity 0.95).
PURITY_SAMPLE = 5_000
# ProbCover splits a pool larger than this into k-means cells and skips pairs of cells that no ball can join.
_PRUNE_ABOVE = 10_000
_PRUNE_CELLS = 16
_MAX_CELLS = 64  # more pseudo-classes than this are not used as cells (the bound matrix is n x cells)
# Elements per distance block (16 MB of float32) where whole rows are needed, so memory stays O(n) plus a block.
_TILE = 1 << 22
# ProbCover's ball tests: tiles of at most _TILE_PAIRS pairs, _TILE_COLS columns wide; symmetric blocks of rows.
_TILE_PAIRS = 1 << 20
_TILE_COLS = 8192
_SYMMETRIC_BLOCK = 2048
_FEW_COLUMNS = 64
# Clusters up to this size get exact pairwise distances (scipy cdist); larger ones use scikit-learn's kNN.
_SMALL_CLUSTER = 2048


def _seed(rng: np.random.Generator) -> int:
    """An int seed for scikit-learn drawn from ``rng``, so the strategy's seed decides k-means too."""
    return int(rng.integers(2**31 - 1))


def _kmeans(x: np.ndarray, n_clusters: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """k-means labels (n,) and centres (n_clusters, d); full Lloyd up to MINIBATCH_ABOVE rows, mini-batch above.

    Duplicate embeddings (fewer distinct points than clusters) make scikit-learn warn; the clustering is still
    valid (some clusters coincide), so the ConvergenceWarning is silenced rather than shown to every user.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    model: Any
    if x.shape[0] > MINIBATCH_ABOVE:
        model = MiniBatchKMeans(n_clusters, batch_size=4096, n_init=1, random_state=_seed(rng))
    else:
        model = KMeans(n_clusters, n_init=1, random_state=_seed(rng))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x)
    return np.asarray(model.labels_, dtype=np.int64), np.asarray(model.cluster_centers_, dtype=np.float64)


def _float32_centred(embeddings: np.ndarray) -> np.ndarray:
    """float32 copy with the mean removed: halves the memory of float64 input, and centring keeps the squared
    norms small so the float32 expansion |x|^2 - 2 x.y + |y|^2 loses little precision."""
    x = np.asarray(embeddings)
    return np.ascontiguousarray(x - x.mean(axis=0, dtype=np.float64), dtype=np.float32)


def _check_float32_range(embeddings: np.ndarray) -> None:
    check_magnitude(embeddings, FLOAT32_DISTANCE_MAX_ABS, "this strategy (float32 distances)")


def _embeddings(state: PoolState) -> np.ndarray:
    """``state.embeddings``, which both strategies have in ``needs`` (so ``Strategy._validate`` checked it)."""
    assert state.embeddings is not None
    return state.embeddings


# ---------------------------------------------------------------------------------------------- TypiClust


def _cluster_typicality(xc: np.ndarray, k: int) -> np.ndarray:
    """Typicality of each row of one cluster: 1 / mean distance to its ``min(k, m - 1)`` nearest other rows."""
    m = xc.shape[0]
    if m == 1:
        return np.zeros(1)  # no neighbour, no evidence of density
    kk = min(k, m - 1)
    if m <= _SMALL_CLUSTER:
        # Exact differences (not the dot-product expansion), so duplicates are at distance exactly 0.
        from scipy.spatial.distance import cdist

        d = np.sqrt(cdist(xc, xc, "sqeuclidean"))
        np.fill_diagonal(d, np.inf)
        mean = np.partition(d, kk - 1, axis=1)[:, :kk].mean(axis=1)
    else:
        from sklearn.neighbors import NearestNeighbors

        # kneighbors() without X leaves each row out of its own neighbours, duplicates included.
        dist, _ = NearestNeighbors(n_neighbors=kk, algorithm="brute").fit(xc).kneighbors()
        mean = dist.mean(axis=1)
    with np.errstate(divide="ignore"):
        return 1.0 / mean


def typicality(embeddings: Any, labels_of_clusters: Any, k: int = 20) -> np.ndarray:
    """Typicality of every point within its cluster (Hacohen et al., 2022, eq. 3).

    ``typicality(x) = 1 / mean ||x - x_i||`` over the ``K = min(k, m - 1)`` nearest neighbours ``x_i`` of ``x``
    inside its cluster of ``m`` points (Euclidean). Dense points score high, outliers low.

    Parameters
    ----------
    embeddings : array of shape (n, d)
    labels_of_clusters : int array of shape (n,)
        Cluster id of every row (any integers, e.g. k-means labels).
    k : int, default 20
        Neighbours per point, as in the paper's code.

    Returns
    -------
    ndarray of shape (n,), float64
        ``inf`` where the K nearest neighbours all coincide with the point (duplicates); ``0`` for a cluster of one
        point (no neighbour to measure density by).

    Notes
    -----
    Exact; the cost is ``O(sum_c m_c^2 d)`` over clusters of ``m_c`` points (pairwise distances within clusters).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0, 0], [0.1, 0], [-0.1, 0], [0, 0.1], [3, 3], [5.0, 5], [5.1, 5]])
    >>> t = typicality(x, [0, 0, 0, 0, 0, 1, 1], k=3)
    >>> int(np.argmax(t[:5])), int(np.argmin(t[:5]))  # the blob's centre, then its outlier
    (0, 4)
    >>> t[5:].round(2).tolist()  # a cluster of two: each point's one neighbour at distance 0.1
    [10.0, 10.0]
    """
    x = check_finite_matrix(embeddings, "embeddings")
    labels = check_labels(labels_of_clusters, x.shape[0], "labels_of_clusters")
    k = check_int(k, "k (neighbours for typicality)", minimum=1)
    out = np.empty(x.shape[0])
    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1]])
    for members in np.split(order, starts[1:]):
        out[members] = _cluster_typicality(x[members], k)
    return out


class TypiClust(Strategy):
    """TypiClust, TPC-RP variant (Hacohen, Dekel & Weinshall, "Active Learning on a Budget", ICML 2022).

    Cluster the embeddings with k-means into ``min(n_labeled + k_t, max_clusters)`` clusters. Then, repeatedly,
    take the cluster holding the fewest labeled or already-picked points, the largest first, and pick its most
    typical unlabeled point (:func:`typicality`, computed over all the cluster's points). So every uncovered
    cluster gets one point, largest first, before any cluster gets a second; after that the clusters are
    visited round-robin in the same order, each giving its next most typical point, so ``k_t`` up to the whole
    unlabeled pool works. Clusters smaller than ``min_cluster_size`` come last (the paper drops them; here they
    are used only once every larger cluster is exhausted). Ties (equal sizes, equal typicality) are broken by
    the seed.

    Needs only ``embeddings``: use it to choose the seed set before any model exists.

    Parameters
    ----------
    max_clusters : int, default 500
        Cap on the number of k-means clusters (the paper's code uses 500).
    min_cluster_size : int, default 5
        Clusters with fewer points are visited last.
    n_neighbors : int, default 20
        ``k`` of :func:`typicality` (the paper's K = 20).
    random_state : None, int or numpy Generator

    Notes
    -----
    Differences from the paper's code: typicality is computed once per cluster over all its points (the code
    recomputes it over the cluster's unlabeled points after each pick; the first pick of an uncovered cluster
    is the same), with Euclidean rather than squared distances and ``K = min(20, m - 1)`` rather than
    ``min(20, m // 2)``; clusters are re-ranked after each pick by how many points they hold, instead of once.
    k-means is scikit-learn's ``KMeans`` up to :data:`MINIBATCH_ABOVE` rows and ``MiniBatchKMeans`` above.
    Typicality is computed only for clusters picked from; a cluster of ``m`` points costs ``O(m^2 d)``.

    Examples
    --------
    >>> import numpy as np
    >>> from cmal.strategies import PoolState, TypiClust
    >>> blob = np.array([[0.0, 0], [0.2, 0], [-0.2, 0], [0, 0.2], [0, -0.2], [0.5, 0.5]])
    >>> emb = np.vstack([blob, blob + 10, blob[:5] + [0, 20]])  # three blobs of 6, 6 and 5 points
    >>> batch = TypiClust(random_state=0).select(PoolState.create(embeddings=emb, labeled=[6]), 2)
    >>> sorted(batch.tolist())  # each unlabeled blob's centre; the labeled point's blob is skipped
    [0, 12]
    """

    name = "typiclust"
    needs = frozenset({"embeddings"})

    def __init__(
        self, *, max_clusters: int = 500, min_cluster_size: int = 5, n_neighbors: int = 20, random_state: Any = None
    ) -> None:
        super().__init__(random_state=random_state)
        self.max_clusters = max_clusters
        self.min_cluster_size = min_cluster_size
        self.n_neighbors = n_neighbors

    def get_params(self) -> dict[str, Any]:
        return {
            "max_clusters": self.max_clusters,
            "min_cluster_size": self.min_cluster_size,
            "n_neighbors": self.n_neighbors,
            **super().get_params(),
        }

    def _validate(self, state: PoolState, k_t: Any) -> int:
        k_t = super()._validate(state, k_t)
        check_int(self.max_clusters, "max_clusters", minimum=1)
        check_int(self.min_cluster_size, "min_cluster_size", minimum=1)
        check_int(self.n_neighbors, "n_neighbors", minimum=1)
        _check_float32_range(_embeddings(state))
        return k_t

    def _select(self, state: PoolState, k_t: int, rng: np.random.Generator) -> np.ndarray:
        x = _float32_centred(_embeddings(state))
        n_clusters = min(state.labeled.size + k_t, int(self.max_clusters), state.n)
        labels, _ = _kmeans(x, n_clusters, rng)
        n_clusters = int(labels.max()) + 1
        labeled = np.zeros(state.n, dtype=bool)
        labeled[state.labeled] = True
        sizes = np.bincount(labels, minlength=n_clusters)
        taken = np.bincount(labels[state.labeled], minlength=n_clusters)
        free = sizes - taken
        order = np.argsort(labels, kind="stable")
        members = np.split(order, np.cumsum(sizes)[:-1])
        # Priority: large-enough clusters first, then fewest labeled/picked points, then largest, then the seed.
        tie = rng.permutation(n_clusters)
        small = sizes < int(self.min_cluster_size)
        heap = [(bool(small[c]), int(taken[c]), -int(sizes[c]), int(tie[c]), int(c)) for c in np.flatnonzero(free)]
        heapq.heapify(heap)
        queues: dict[int, np.ndarray] = {}
        picks = np.empty(k_t, dtype=np.int64)
        for i in range(k_t):
            is_small, n_taken, neg_size, rank, c = heapq.heappop(heap)
            if c not in queues:
                # Typicality only for clusters actually picked from: at 10^5 rows and few clusters this is the
                # expensive part, and most clusters of a large pool are never visited in one round.
                typ = _cluster_typicality(x[members[c]], int(self.n_neighbors))
                free_members = ~labeled[members[c]]
                cand, t = members[c][free_members], typ[free_members]
                queues[c] = cand[np.lexsort((rng.random(cand.size), -t))][::-1]  # most typical last: pop() it
            queue = queues[c]
            picks[i] = queue[-1]
            queues[c] = queue[:-1]
            if queue.size > 1:
                heapq.heappush(heap, (is_small, n_taken + 1, neg_size, rank, c))
        return picks


# ---------------------------------------------------------------------------------------------- ProbCover


def _check_delta(delta: Any, hint: str = "") -> float:
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not math.isfinite(delta) or delta < 0:
        raise ValueError(f"delta (ball radius) must be a finite number >= 0, got {delta!r}{hint}.")
    return float(delta)


def _check_purity(purity: Any) -> float:
    if isinstance(purity, bool) or not isinstance(purity, numbers.Real) or not 0 < float(purity) <= 1:
        raise ValueError(
            f"purity must be a number in (0, 1], the fraction of pure balls to keep (the paper uses 0.95), "
            f"got {purity!r}."
        )
    return float(purity)


def coverage(embeddings: Any, delta: float, chosen: Any) -> float:
    """Fraction of the points within distance ``delta`` (inclusive) of at least one chosen point.

    Parameters
    ----------
    embeddings : array of shape (n, d)
    delta : float >= 0
        Ball radius (Euclidean).
    chosen : int array of shape (m,)
        Indices of the chosen points (each covers itself).

    Returns
    -------
    float in [0, 1]

    Notes
    -----
    Exact, in float64 from coordinate differences; costs ``O(n m d)`` in blocks of bounded memory.

    Examples
    --------
    >>> import numpy as np
    >>> grid = np.array([(i, j) for i in range(10) for j in range(10)], dtype=float)
    >>> coverage(grid, 1.0, [55])  # one interior point of a unit grid covers itself and its 4 neighbours
    0.05
    >>> coverage(grid, 1.0, [0, 99])  # corners cover 3 points each
    0.06
    """
    x = check_finite_matrix(embeddings, "embeddings")
    delta = _check_delta(delta)
    chosen = check_indices(chosen, x.shape[0], "chosen")
    if chosen.size == 0:
        return 0.0
    from scipy.spatial.distance import cdist

    covered = np.zeros(x.shape[0], dtype=bool)
    covered[chosen] = True
    centres = np.asarray(x[chosen], dtype=np.float64)
    step = max(1, _TILE // chosen.size)
    for start in range(0, x.shape[0], step):
        d2 = cdist(np.asarray(x[start : start + step], dtype=np.float64), centres, "sqeuclidean")
        covered[start : start + step] |= (d2 <= delta * delta).any(axis=1)
    return float(covered.mean())


def _nearest_other_label(
    x: np.ndarray, labels: np.ndarray, queries: np.ndarray, dtype: Any, pool: Executor | None
) -> np.ndarray:
    """Distance from each query row to the nearest row with a different label (inf if there is none).

    Expansion ``|q|^2 - 2 max_y (q.y - |y|^2 / 2)`` over centred data in ``dtype``, tiled; with the columns
    sorted by label, a query's other labels are the two column ranges before and after its own.
    """
    xc = np.asarray(x, dtype=np.float64)
    xc = np.asarray(xc - xc.mean(axis=0), dtype=dtype)
    order = np.argsort(labels, kind="stable")
    right = np.ascontiguousarray(np.hstack([xc[order], -0.5 * np.einsum("ij,ij->i", xc[order], xc[order])[:, None]]).T)
    sorted_labels = labels[order]
    uniq, first = np.unique(sorted_labels, return_index=True)
    last = np.r_[first[1:], sorted_labels.size]
    q_labels = labels[queries]
    q_order = np.argsort(q_labels, kind="stable")
    jobs: list[tuple[np.ndarray, int, int]] = []  # (positions in queries, first column, last column)
    for c, pos in zip(*_groups(q_labels[q_order], q_order)):
        p = int(np.searchsorted(uniq, c))
        for lo, hi in ((0, int(first[p])), (int(last[p]), sorted_labels.size)):
            for c0 in range(lo, hi, _TILE_COLS):
                c1 = min(hi, c0 + _TILE_COLS)
                step = max(1, _TILE_PAIRS // (c1 - c0))
                jobs.extend((pos[s : s + step], c0, c1) for s in range(0, pos.size, step))
    left = np.hstack([xc, np.ones((xc.shape[0], 1), dtype=dtype)])

    def work(job: tuple[np.ndarray, int, int]) -> np.ndarray:
        pos, c0, c1 = job
        return (left[queries[pos]] @ right[:, c0:c1]).max(axis=1)

    best = np.full(queries.size, -np.inf)
    results = map(work, jobs) if pool is None else pool.map(work, jobs)
    for (pos, _, _), value in zip(jobs, results):
        best[pos] = np.maximum(best[pos], value)
    q_sq = np.einsum("ij,ij->i", xc[queries], xc[queries], dtype=np.float64)
    return np.sqrt(np.maximum(q_sq - 2.0 * best, 0.0))  # -inf best (no other label): inf


def _groups(sorted_keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Distinct keys of a sorted key array and the matching runs of ``values``."""
    if sorted_keys.size == 0:
        return sorted_keys, []
    uniq, first = np.unique(sorted_keys, return_index=True)
    return uniq, np.split(values, first[1:])


@contextlib.contextmanager
def _threads() -> Iterator[Executor | None]:
    """A pool of one thread per core, with BLAS single-threaded inside, for tiled products.

    Many small products on a multi-threaded BLAS measured up to 10x slower than on one thread each when another
    process kept a core busy; one single-threaded product per core uses the machine and degrades gently.
    """
    from threadpoolctl import threadpool_limits

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows
        cores = os.cpu_count() or 1
    with threadpool_limits(limits=1, user_api="blas"):
        if cores <= 1:
            yield None
        else:
            with ThreadPoolExecutor(min(cores, 8)) as pool:
                yield pool


def choose_delta(
    embeddings: Any,
    pseudo_labels: Any,
    purity: float = 0.95,
    *,
    max_points: int = PURITY_SAMPLE,
    random_state: Any = None,
) -> float:
    """The largest ball radius whose balls are pure for at least a fraction ``purity`` of the points.

    A point's ball of radius ``delta`` is *pure* when every point in it (distance <= delta) has the point's own
    pseudo-label; ``purity(delta)`` is the fraction of points with a pure ball (Yehuda et al., 2022, sec. 4).
    ``purity(delta)`` falls as ``delta`` grows, so the answer is exact without a search: a point's ball is pure
    iff ``delta`` is below its distance ``r`` to the nearest point of another pseudo-label, and the largest
    admissible ``delta`` sits just below the order statistic of ``r`` that keeps ``ceil(purity * n)`` points pure.

    Parameters
    ----------
    embeddings : array of shape (n, d)
    pseudo_labels : int array of shape (n,)
        E.g. k-means cluster ids with as many clusters as classes (what :class:`ProbCover` uses).
    purity : float in (0, 1], default 0.95
        The paper's alpha.
    max_points : int, default 5000
        Pools larger than this estimate purity on this many random points (each one's ``r`` still against the
        whole pool, in float32), keeping the cost at ``O(max_points n d)``; smaller pools are exact (float64).
    random_state : None, int or numpy Generator
        Draws that sample.

    Returns
    -------
    float
        Just below (relative 1e-7) the critical radius, so the rule holds after rounding; ``0.0`` if that radius
        is 0 (duplicates with different pseudo-labels); ``inf`` if there is a single pseudo-label (every ball
        is pure at any radius).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.r_[np.arange(10.0), np.arange(10.0) + 20][:, None]  # two blobs, 11 apart
    >>> y = np.r_[np.zeros(10, int), np.ones(10, int)]
    >>> delta = choose_delta(x, y, purity=1.0)  # every ball must stay inside its blob
    >>> delta < 11, round(delta, 3)
    (True, 11.0)
    >>> round(choose_delta(x, y, purity=0.9), 3)  # 2 of 20 balls may reach across the gap
    12.0
    """
    x = check_finite_matrix(embeddings, "embeddings")
    labels = check_labels(pseudo_labels, x.shape[0], "pseudo_labels")
    purity = _check_purity(purity)
    max_points = check_int(max_points, "max_points", minimum=1)
    with _threads() as pool:
        return _choose_delta(x, labels, purity, max_points, as_generator(random_state), pool)


def _choose_delta(
    x: np.ndarray,
    labels: np.ndarray,
    purity: float,
    max_points: int,
    rng: np.random.Generator,
    pool: Executor | None,
) -> float:
    n = x.shape[0]
    if n <= max_points:
        # Every point: exact, in float64, so the radius is right to rounding.
        r = _nearest_other_label(x, labels, np.arange(n), np.float64, pool)
    else:
        # A sample estimates purity anyway; float32 halves the cost.
        queries = np.sort(rng.choice(n, max_points, replace=False))
        r = _nearest_other_label(x, labels, queries, np.float32, pool)
    r = np.sort(r)
    impure_allowed = r.size - math.ceil(purity * r.size - 1e-9)
    critical = float(r[impure_allowed])  # delta >= this makes too many balls impure
    if math.isinf(critical):
        return math.inf
    return critical * (1.0 - 1e-7)


def _voronoi(x: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances (n, C) from every row to every centre, float64, and the nearest centre of every row."""
    from scipy.spatial.distance import cdist

    dist = np.empty((x.shape[0], centres.shape[0]))
    step = max(1, _TILE // max(1, centres.shape[0]))
    for start in range(0, x.shape[0], step):
        dist[start : start + step] = cdist(np.asarray(x[start : start + step], dtype=np.float64), centres)
    return dist, dist.argmin(axis=1)


# A tile: row indices, column indices, the columns' right-hand factors (d + 1, n_cols), and whether to count the
# pairs for the columns too.
_Tile = tuple[np.ndarray, np.ndarray, np.ndarray, bool]


class _Balls:
    """Which pairs of pool rows lie within ``delta`` of each other, computed tile by tile on demand.

    Nothing of size n x n or n x degree is stored: a pair (r, c) is in range when
    ``[x_r, 1] . [x_c, -|x_c|^2 / 2] >= (|x_r|^2 - max(delta^2, s_r)) / 2``, i.e.
    ``|x_r - x_c|^2 <= max(delta^2, s_r)``, one float32 matrix product and one comparison per tile. ``s_r = 4
    (d + 2) eps32 |x_r|^2`` bounds the float32 rounding of that expansion: a radius below the rounding cannot be
    resolved, and taking it as the radius keeps a point in its own ball and duplicates in each other's.
    Otherwise the test is plain ``<= delta^2`` in float32 (pairs within rounding of ``delta`` may go either way).

    With cells (k-means on large pools), a row of cell ``a`` skips cell ``b`` when a lower bound on its distance
    to every member of ``b`` exceeds ``delta``: the larger of its distance to the bisecting hyperplane of the
    two centres (cells are the centres' Voronoi regions) and ``|x - centre_b| - radius_b``. On clustered
    embeddings this removes most pairs; on unstructured ones it removes none, and the work is one pass over
    all pairs.

    Tiles run on a pool of threads, one per core, each with single-threaded BLAS (the caller limits BLAS): small
    products on a multi-threaded BLAS measured up to 10x slower on a busy 2-core machine. Results are reduced
    in submission order, so they do not depend on the number of threads.
    """

    def __init__(
        self, x: np.ndarray, delta: float, cells: tuple[np.ndarray, np.ndarray] | None, pool: Executor | None
    ) -> None:
        n, d = x.shape
        sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)
        radius2 = np.maximum(delta * delta, 4.0 * (d + 2) * float(np.finfo(np.float32).eps) * sq)
        self.left = np.hstack([x, np.ones((n, 1), dtype=np.float32)])
        self.right = np.hstack([x, (-sq / 2.0).astype(np.float32)[:, None]])
        self.threshold = ((sq - radius2) / 2.0).astype(np.float32)
        self.n = n
        self.pool = pool
        self.bound: np.ndarray | None = None
        self.cell = np.zeros(n, dtype=np.int64)
        if cells is None:
            return
        dist, self.cell = _voronoi(x, cells[1])
        own = dist[np.arange(n), self.cell]
        radius = np.zeros(cells[1].shape[0])
        np.maximum.at(radius, self.cell, own)
        centre_gap = np.sqrt(((cells[1][:, None, :] - cells[1][None, :, :]) ** 2).sum(-1))
        gap = centre_gap[self.cell]  # (n, C): distance from the row's centre to every centre
        with np.errstate(divide="ignore", invalid="ignore"):
            plane = np.where(gap > 0, (dist**2 - own[:, None] ** 2) / (2.0 * gap), 0.0)
        bound = np.maximum(plane, dist - radius[None, :])
        # Rounding margin: the bounds are float64, the ball test float32.
        reach = math.sqrt(float(radius2.max())) * (1.0 + 1e-5) + 1e-6 * (1.0 + float(dist.max()))
        self.bound = bound > reach  # True: the row can reach no member of that cell
        self.bound[np.arange(n), self.cell] = False

    # -- planning: which tiles to compute

    def _split(self, idx: np.ndarray) -> dict[int, np.ndarray]:
        """``idx`` grouped by cell."""
        if self.bound is None:
            return {0: idx} if idx.size else {}
        cell = self.cell[idx]
        order = np.argsort(cell, kind="stable")
        uniq, first = np.unique(cell[order], return_index=True)
        return {int(c): part for c, part in zip(uniq, np.split(idx[order], first[1:]))}

    def _tiles(self, row_idx: np.ndarray, col_idx: np.ndarray, two_sided: bool = False) -> list[_Tile]:
        # Tiles of about 2^20 pairs (4 MB of float32) stay in cache between the product and the comparison.
        tiles: list[_Tile] = []
        for cstart in range(0, col_idx.size, _TILE_COLS):
            cc = col_idx[cstart : cstart + _TILE_COLS]
            right = np.ascontiguousarray(self.right[cc].T)
            step = max(1, _TILE_PAIRS // cc.size)
            tiles.extend((row_idx[s : s + step], cc, right, two_sided) for s in range(0, row_idx.size, step))
        return tiles

    def _plan(self, rows: np.ndarray, cols: np.ndarray) -> list[_Tile]:
        """Tiles covering every pair of ``rows`` x ``cols`` (boolean masks (n,)) that may be in range."""
        col_idx, row_idx = np.flatnonzero(cols), np.flatnonzero(rows)
        if col_idx.size == 0 or row_idx.size == 0:
            return []
        if self.bound is None or col_idx.size <= 256:
            # Few columns (a pick's newly covered points): one pass over the rows beats splitting by cells.
            return self._tiles(row_idx, col_idx)
        tiles: list[_Tile] = []
        for b, cb in self._split(col_idx).items():
            rr = row_idx[~self.bound[row_idx, b]]
            if rr.size:
                tiles.extend(self._tiles(rr, cb))
        return tiles

    def _plan_symmetric(self, idx: np.ndarray) -> list[_Tile]:
        """Tiles covering every pair within ``idx`` once; two-sided tiles count for both ends."""
        groups = self._split(idx)
        cells = sorted(groups)
        tiles: list[_Tile] = []
        for i, a in enumerate(cells):
            blocks = [groups[a][s : s + _SYMMETRIC_BLOCK] for s in range(0, groups[a].size, _SYMMETRIC_BLOCK)]
            for j, ra in enumerate(blocks):
                tiles.extend(self._tiles(ra, ra))  # a diagonal block in full (it is small)
                for cb in blocks[j + 1 :]:
                    tiles.extend(self._tiles(ra, cb, two_sided=True))
            for b in cells[i + 1 :]:
                assert self.bound is not None  # several cells
                ra = groups[a][~self.bound[groups[a], b]]
                cb = groups[b][~self.bound[groups[b], a]]
                if ra.size and cb.size:
                    tiles.extend(self._tiles(ra, cb, two_sided=True))
        return tiles

    # -- computing

    def _run(self, work: Callable[[_Tile], Any], tiles: list[_Tile]) -> Iterator[Any]:
        if self.pool is None or len(tiles) < 2:
            return map(work, tiles)
        return self.pool.map(work, tiles)

    def _inside(self, tile: _Tile) -> np.ndarray:
        rr, _, right, _ = tile
        return (self.left[rr] @ right) >= self.threshold[rr, None]

    def ball(self, u: int) -> np.ndarray:
        """Boolean (n,): the points in the ball of row ``u`` (one product against all rows, no planning)."""
        return (self.right @ self.left[u]) >= self.threshold[u]

    def count(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """For every row: how many ``cols`` lie in its ball. Shape (n,), zero outside ``rows``."""
        if np.count_nonzero(cols) <= _FEW_COLUMNS:
            # A pick that covered a few new points: one thin product against all rows beats gathering rows and
            # planning tiles (this runs once per pick, thousands of times when the batch is large).
            inside = (self.left @ self.right[cols].T) >= self.threshold[:, None]
            return np.where(rows, inside.view(np.uint8).sum(axis=1, dtype=np.int64), 0)
        both = rows & cols
        if np.count_nonzero(both) > 2 * _SYMMETRIC_BLOCK:
            # The relation is symmetric: among rows that are also columns each pair is computed once and counted
            # for both ends, which halves the one pass over all pairs that dominates on a fresh pool. The other
            # pairs: those rows against the other columns, and the other rows against all columns.
            tiles = self._plan_symmetric(np.flatnonzero(both))
            tiles += self._plan(both, cols & ~both)
            tiles += self._plan(rows & ~both, cols)
        else:
            tiles = self._plan(rows, cols)

        def work(tile: _Tile) -> tuple[np.ndarray, np.ndarray | None]:
            inside = self._inside(tile).view(np.uint8)
            # Byte sums into int32 (a tile is at most 2^20 pairs): the column sums measured 2.5x faster than
            # into int64.
            row_sums = inside.sum(axis=1, dtype=np.int32)
            return row_sums, (inside.sum(axis=0, dtype=np.int32) if tile[3] else None)

        out = np.zeros(self.n, dtype=np.int64)
        for (rr, cc, _, _), (row_sums, col_sums) in zip(tiles, self._run(work, tiles)):
            out[rr] += row_sums
            if col_sums is not None:
                out[cc] += col_sums
        return out

    def reached(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Boolean (n,): the ``cols`` lying in the ball of at least one of ``rows``."""
        tiles = self._plan(rows, cols)
        out = np.zeros(self.n, dtype=bool)
        for (_, cc, _, _), hit in zip(tiles, self._run(lambda t: self._inside(t).any(axis=0), tiles)):
            out[cc] |= hit
        return out


class ProbCover(Strategy):
    """ProbCover (Yehuda, Dekel, Hacohen & Weinshall, "Active Learning Through a Covering Lens", NeurIPS 2022).

    Greedy maximum coverage with balls of radius ``delta``: points within ``delta`` of a labeled point start
    covered; each pick is the unlabeled point whose ball holds the most still-uncovered points (ties by the
    seed), and its ball becomes covered. Once every point is covered the rest of the batch is uniformly random
    among the unlabeled points (as in the paper). With ``delta=None`` the radius comes from the paper's purity
    rule: pseudo-labels from k-means with ``n_classes`` clusters, then :func:`choose_delta`. The radius used is
    kept in ``last_delta``.

    Needs only ``embeddings``: use it to choose the seed set before any model exists.

    Parameters
    ----------
    delta : float >= 0 or None, default None
        Ball radius (Euclidean). ``None``: chosen by purity on every call.
    purity : float in (0, 1], default 0.95
        The paper's alpha for choosing ``delta``.
    n_classes : int >= 2 or None, default None
        k-means clusters for the pseudo-labels; ``None``: the number of columns of ``probs`` when the pool state
        has them, else 10. Capped at the pool size.
    random_state : None, int or numpy Generator

    Attributes
    ----------
    last_delta : float or None
        The radius used by the last call.

    Notes
    -----
    No graph is stored and no ball is capped. The paper's code keeps every pair within ``delta`` as an edge;
    at the purity radius of well-clustered embeddings each ball holds thousands of points, so at 60,000 rows
    that is 10^8 edges or more, and a cap on the degree would change which points count as covered. Here the
    number of uncovered points in every ball is counted once, in tiles of float32 distances, and after each
    pick only the counts of balls that meet the newly covered points are lowered (the same greedy, exactly).
    Memory is O(n) plus a few tiles of 4 MB, whatever the ball sizes.

    Cost: one pass over all pairs (computed once for both ends), which dominates on unstructured embeddings.
    Above 10,000 rows the pool is split into k-means cells and pairs of cells that no ball can join are skipped
    (exact lower bounds), which removes most pairs on clustered embeddings. Distances are float32: pairs within
    rounding of ``delta`` (relative 1e-5 or so) may count either way, and radii below float32 resolution of the
    embeddings' norms act as that resolution (duplicates always cover each other). When every remaining ball
    covers at most one new point, the uncovered points are taken in random order (each is then a best pick).
    Above :data:`PURITY_SAMPLE` rows the purity rule is estimated on a random sample (see :func:`choose_delta`).

    ``delta`` decides everything: in features where classes cluster (the paper's self-supervised embeddings)
    the purity radius gives large balls and class-balanced picks; in raw features it can be small (balls of a
    few points), and the greedy then picks the densest spots, which may bunch up in a few classes (on raw
    digits pixels it was no more class-balanced than random; ``purity=0.8`` fixed that).

    Examples
    --------
    >>> import numpy as np
    >>> from cmal.strategies import PoolState, ProbCover
    >>> emb = np.array([0.0, 1, 2, 10, 11, 20])[:, None]  # balls of radius 1.5: {0, 1, 2} is the largest
    >>> strategy = ProbCover(delta=1.5, random_state=0)
    >>> batch = strategy.select(PoolState.create(embeddings=emb), 2)
    >>> int(batch[0]), round(coverage(emb, 1.5, batch), 3)  # then one of 10 or 11: 5 of 6 points covered
    (1, 0.833)
    """

    name = "probcover"
    needs = frozenset({"embeddings"})

    def __init__(
        self,
        *,
        delta: float | None = None,
        purity: float = 0.95,
        n_classes: int | None = None,
        random_state: Any = None,
    ) -> None:
        super().__init__(random_state=random_state)
        self.delta = delta
        self.purity = purity
        self.n_classes = n_classes
        self.last_delta: float | None = None

    def get_params(self) -> dict[str, Any]:
        return {"delta": self.delta, "purity": self.purity, "n_classes": self.n_classes, **super().get_params()}

    def _validate(self, state: PoolState, k_t: Any) -> int:
        k_t = super()._validate(state, k_t)
        if self.delta is not None:
            _check_delta(self.delta, "; or pass delta=None to choose it by the purity rule")
        _check_purity(self.purity)
        if self.n_classes is not None:
            check_int(self.n_classes, "n_classes (k-means clusters for the pseudo-labels)", minimum=2)
        _check_float32_range(_embeddings(state))
        return k_t

    def _select(self, state: PoolState, k_t: int, rng: np.random.Generator) -> np.ndarray:
        with _threads() as pool:
            return self._greedy(state, k_t, rng, pool)

    def _greedy(self, state: PoolState, k_t: int, rng: np.random.Generator, pool: Executor | None) -> np.ndarray:
        x = _float32_centred(_embeddings(state))
        n = state.n
        cells: tuple[np.ndarray, np.ndarray] | None = None
        if self.delta is None:
            n_classes = self.n_classes or (state.probs.shape[1] if state.probs is not None else 10)
            n_classes = min(int(n_classes), n)
            _, centres = _kmeans(x, n_classes, rng)
            # Pseudo-labels as the centres' Voronoi regions (what k-means assigns), so they double as cells.
            _, labels = _voronoi(x, centres)
            delta = _choose_delta(x, labels, float(self.purity), PURITY_SAMPLE, rng, pool)
            if n > _PRUNE_ABOVE and n_classes <= _MAX_CELLS:
                cells = (labels, centres)
        else:
            delta = float(self.delta)
        if cells is None and n > _PRUNE_ABOVE and math.isfinite(delta):
            cells = _kmeans(x, _PRUNE_CELLS, rng)
        self.last_delta = delta
        balls = _Balls(x, delta, cells, pool)

        candidate = np.ones(n, dtype=bool)
        candidate[state.labeled] = False
        covered = ~candidate  # a labeled point covers its own ball
        if state.labeled.size:
            covered |= balls.reached(~candidate, np.ones(n, dtype=bool))
        gain = np.where(candidate, balls.count(candidate, ~covered), -1)

        picks: list[int] = []
        while len(picks) < k_t:
            best = int(gain.max())
            if best <= 1:
                break
            tied = np.flatnonzero(gain == best)
            u = int(tied[rng.integers(tied.size)])
            new = balls.ball(u) & ~covered
            new[u] = not covered[u]  # a point is in its own ball, whatever the rounding
            if int(new.sum()) < best:
                # The count was a rounding step too high (tiles of other shapes decided a pair at the boundary
                # differently): correct it and choose again, so a pick never claims points it does not cover.
                gain[u] = int(new.sum())
                continue
            picks.append(u)
            gain[u] = -1
            candidate[u] = False
            covered |= new
            gain -= balls.count(gain > 0, new)
        if len(picks) < k_t:
            # Every ball now covers at most one new point: each uncovered point is a best pick (it covers
            # itself), in random order; then, coverage complete, uniformly random unlabeled points.
            uncovered = np.flatnonzero(candidate & ~covered)
            first = rng.permutation(uncovered)[: k_t - len(picks)]
            candidate[first] = False
            rest = rng.choice(np.flatnonzero(candidate), k_t - len(picks) - first.size, replace=False)
            picks.extend(first.tolist())
            picks.extend(rest.tolist())
        return np.asarray(picks, dtype=np.int64)
