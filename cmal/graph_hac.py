"""Average-linkage HAC on a sparse k-nearest-neighbour graph, merged in rounds of reciprocal nearest neighbours.

Exact HAC (:mod:`cmal.hac`) needs all ``n (n - 1) / 2`` distances and stops at
:func:`cmal.hac.max_exact_points` (80,265 points in 24 GiB with fastcluster).
This module clusters millions of points from a kNN graph (:func:`cmal.knn.knn`) instead.

Linkage on a graph
------------------
Only the kNN pairs have a known distance. Three definitions are offered. All equal exact average linkage on
the complete graph (a test checks every merge height against fastcluster) and all are *reducible* (the
linkage of ``A | B`` to ``C`` is a weighted mean of those of ``A`` and ``B``), which is what makes merging
every reciprocal pair at once exact (RAC, Sumengen et al. 2021):

``linkage="average"`` (default)
    Exact average linkage over all ``|A| |B|`` pairs, with the graph deciding which cluster pairs are
    candidates. Cross sums the graph does not cover are completed from the points, lazily: a missing pair is
    at least as far as either point's k-th neighbour, which gives a lower bound, and only pairs whose bound
    could make them a cluster's nearest neighbour are summed exactly (numba kernel). With approximate kNN
    lists that bound can fail where the search missed a neighbour (``graph_linkage_tree(exact_on_graph=True)``
    drops it, at a cost).
``linkage="graph"``
    The textbook graph average linkage: with edge similarity ``w = D - d``, ``sum(w over cross edges) /
    (|A| |B|)``; as a distance, the mean over all pairs with every missing pair counted at ``D``
    (``missing_distance``, default the largest edge).
``linkage="edges"``
    The mean distance over the cross pairs that are edges of the graph (missing pairs ignored).

Measured against exact HAC on 20,000 real MNIST embeddings (``benchmarks/graph_hac_accuracy.py``, adjusted
Rand index at the ``epsilon`` giving clusters of 20 points on average): ``"average"`` reaches 0.975 at
``k=20`` and 0.9999 at ``k=50``; ``"graph"`` and ``"edges"`` stay below 0.05 at every ``k`` tried, because
on a sparse graph most cross pairs are missing and counting them at ``D`` (or ignoring them) changes the
order of merges. Hence the default.

How it runs
-----------
Each round every cluster finds its nearest neighbour cluster (ties broken by the smaller id); every reciprocal
pair whose linkage is ``<= threshold`` merges; the edge list is relabelled and duplicate cluster pairs summed. A
cluster whose nearest neighbour is already farther than the threshold can never merge again (reducibility),
so its edges are dropped and rounds get cheaper as they go. The functions of this module state the rounds with
numpy over a flat edge list (the reference, which the Dask backend also runs per partition); when numba is
installed (the ``scale`` extra) :func:`rac` runs them as compiled kernels over the graph's rows instead
(:mod:`cmal.rac_kernels`: rows in parallel, partial sums completed one at a time in order of a tighter lower
bound), with the same merges wherever the radius is a bound (exact kNN lists, or ``exact_on_graph``; tests
compare them; ``CMAL_RAC_ENGINE=numpy`` selects the reference).

Exact duplicates are collapsed before the graph is built and merged at height 0, as exact HAC does; otherwise
a group of more than ``k`` identical points would form a component cut off from the rest of the pool.

The result, :class:`GraphHACTree`, keeps every merge (two representative points and a height), so a flat
cut at any ``epsilon`` up to the one it was built with is a connected-components call: the widgets'
``epsilon`` slider works on it as on the exact tree.

Disconnected graphs: points in different connected components of the kNN graph share no edge and never
merge, whatever ``epsilon``; ``GraphHACTree.n_components`` reports how many there are and a warning is
issued when there is more than one. Increase ``k`` to connect them.

Examples
--------
>>> import numpy as np
>>> from cmal.graph_hac import graph_hac
>>> x = np.array([[0.0], [0.1], [5.0], [5.2], [20.0]])
>>> graph_hac(x, epsilon=1.0, k=4)
array([0, 0, 1, 1, 2])
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cmal._validation import (
    FLOAT32_DISTANCE_MAX_ABS,
    check_finite_matrix,
    check_int,
    check_magnitude,
    check_positive_float,
    nonzero_row_norms,
)
from cmal.knn import EXACT_MAX_DEFAULT, KNNBackend, Metric, knn, resolved_backend
from cmal.tree import HACTree, canonical_labels

__all__ = ["GraphHACTree", "graph_linkage_tree", "graph_hac", "rac", "knn_edges", "DisconnectedGraphWarning"]

Linkage = Literal["average", "graph", "edges"]


class DisconnectedGraphWarning(UserWarning):
    """The kNN graph has several connected components; they never merge."""


@dataclass(frozen=True)
class GraphHACTree(HACTree):
    """Merges found by graph HAC, cut like :class:`cmal.tree.HACTree`.

    Attributes
    ----------
    linkage : ndarray of shape (n_merges, 4)
        One row per merge, sorted by height: a point of each merged cluster, the merge height, the size of
        the new cluster. Unlike SciPy's format the first two columns are *point* indices; the merges form a
        forest (one tree per cluster left at ``max_epsilon``).
    n_components : int
        Connected components of the kNN graph (clusters that can never merge).
    max_epsilon : float
        Merges were computed up to this height (``inf`` if run to the end); cuts above it are refused.
    k : int
        Neighbours per point in the graph.
    """

    n_components: int = 1
    max_epsilon: float = float("inf")
    k: int = 0
    graph_linkage: str = "average"

    def _check_cut(self, epsilon: float) -> float:
        epsilon = check_positive_float(epsilon, "epsilon")
        if epsilon > self.max_epsilon:
            raise ValueError(
                f"epsilon={epsilon} is above max_epsilon={self.max_epsilon:.6g}, as far as this tree was built; "
                "rebuild with a larger max_epsilon or a smaller target_clusters."
            )
        return epsilon

    def n_clusters(self, epsilon: float) -> int:
        """Number of clusters :meth:`cut` gives for ``epsilon`` (``<= max_epsilon``)."""
        return super().n_clusters(self._check_cut(epsilon))

    def epsilon_for_clusters(self, n_clusters: int) -> float:
        """As :meth:`cmal.tree.HACTree.epsilon_for_clusters`, within ``max_epsilon``; counts below what the
        tree reached (or below ``n_components``) give its smallest count."""
        epsilon = super().epsilon_for_clusters(n_clusters)
        if epsilon > self.max_epsilon:
            fewest = self.n - int((self.heights <= self.max_epsilon).sum())
            warnings.warn(
                f"asked for {n_clusters:,} clusters, but this graph-HAC tree was built only up to "
                f"max_epsilon={self.max_epsilon:.6g}, where it has {fewest:,}; returning that cut. Rebuild "
                "with a larger max_epsilon (or target_clusters) for coarser cuts.",
                stacklevel=2,
            )
            return self.max_epsilon
        return epsilon

    def cut(self, epsilon: float) -> np.ndarray:
        """Flat clustering performing every merge with height ``<= epsilon``; labels of shape (n,), int64."""
        epsilon = self._check_cut(epsilon)
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        # Heights only grow towards the root (reducibility), so the merges below epsilon are closed under
        # taking children and the clusters are the connected components of those merges.
        keep = self.heights <= epsilon
        a = self.linkage[keep, 0].astype(np.int64)
        b = self.linkage[keep, 1].astype(np.int64)
        g = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(self.n, self.n))
        _, labels = connected_components(g, directed=False)
        return canonical_labels(labels)

    def describe(self) -> str:
        """One line: what was built."""
        return (
            f"graph HAC ({self.graph_linkage} linkage) of {self.n:,} points on a {self.k}-NN graph "
            f"({self.metric}); {self.linkage.shape[0]:,} merges, {self.n_components} connected component(s)"
        )


def _validated_float64(embeddings: Any, metric: str) -> np.ndarray:
    """Checked float64 copy of the embeddings (unit rows for cosine), as exact HAC computes distances."""
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}.")
    x = np.asarray(check_finite_matrix(embeddings, "embeddings"), dtype=np.float64)
    check_magnitude(x, FLOAT32_DISTANCE_MAX_ABS, "graph HAC (a float32 kNN search)")
    if metric == "cosine":
        x = x / nonzero_row_norms(x)[:, None]
    return x


def _dedupe(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique rows in the order they first occur, the index of each row's unique row, and the first row of each
    unique row. Without duplicates the unique rows are ``x`` itself (a copy cost 512 MB at 10^6 x 64).

    >>> uniq, inverse, first = _dedupe(np.array([[1.0], [0.0], [1.0]]))
    >>> uniq.ravel().tolist(), inverse.tolist(), first.tolist()
    ([1.0, 0.0], [0, 1, 0], [0, 1])
    """
    rows = np.ascontiguousarray(x).view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    order = np.argsort(first)  # np.unique lists them in sorted order of the rows' bytes
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    first, inverse = first[order], rank[inverse.reshape(-1)]
    return (np.ascontiguousarray(x) if first.size == x.shape[0] else x[first]), inverse, first


def _edge_distances(x64: np.ndarray, a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distances of the pairs ``(a[i], b[i])`` in float64, in chunks (kNN backends work in float32)."""
    out = np.empty(a.size, dtype=np.float64)
    step = 1 << 15  # 32k pairs x d float64 per temporary: small enough for any d
    for s in range(0, a.size, step):
        u, v = x64[a[s : s + step]], x64[b[s : s + step]]
        if metric == "cosine":  # rows are unit length already
            out[s : s + step] = np.maximum(1.0 - np.einsum("ij,ij->i", u, v), 0.0)
        else:
            out[s : s + step] = np.sqrt(np.einsum("ij,ij->i", u - v, u - v))
    return out


def knn_edges(
    x: np.ndarray,
    k: int,
    *,
    metric: Metric,
    backend: KNNBackend,
    exact_max: int,
    random_state: Any,
    progress: bool,
    options: dict[str, Any] | None = None,
    exact_on_graph: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Undirected kNN edges ``(a, b, distance)`` with ``a < b``, each pair once, exact float64 distances, and
    each point's ``radius``, its k-th listed neighbour distance, which :func:`rac` takes as a lower bound on the
    point's distance to any point outside its list, to skip completing cross sums. Exact lists make it a bound.
    Approximate lists (pynndescent, faiss) can miss a point nearer than the k-th listed one; with
    ``exact_on_graph=True`` the radius is then 0, the bound that holds (slower; see
    :func:`graph_linkage_tree`). ``options`` go to :func:`cmal.knn.knn`."""
    bound = not exact_on_graph or resolved_backend(len(x), k, backend, exact_max) == "exact"
    idx, dist = knn(
        x,
        k,
        metric=metric,
        backend=backend,
        exact_max=exact_max,
        random_state=random_state,
        progress=progress,
        options=options,
    )
    return edges_from_neighbours(np.asarray(x, dtype=np.float64), idx, dist, metric, bound=bound)


def edges_from_neighbours(
    x64: np.ndarray, idx: np.ndarray, dist: np.ndarray, metric: str, *, bound: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Symmetrize neighbour lists ``idx`` (n, k) into undirected edges with float64 distances; see
    :func:`knn_edges`. ``bound=False``: radius 0, for approximate lists whose merges must be exact."""
    n = x64.shape[0]
    src = np.repeat(np.arange(n, dtype=np.int64), idx.shape[1])
    dst = idx.reshape(-1)
    a, b = np.minimum(src, dst), np.maximum(src, dst)
    key = np.unique(a * n + b)
    a, b = key // n, key % n
    if bound and idx.shape[1]:
        # float32 search distances: shave a relative 1e-5 so the bound stays a bound after rounding.
        radius = dist[:, -1].astype(np.float64) * (1 - 1e-5)
    else:
        # An approximate search can miss a point nearer than its k-th listed neighbour (at 3*10^5 points
        # pynndescent missed one at 9.77 from a point whose list ended at 10.32, and a pair that was nearer than
        # its bound said was skipped); 0 is the bound that holds.
        radius = np.zeros(n)
    return a, b, _edge_distances(x64, a, b, metric), radius


def _cross_sums_numpy(
    points: np.ndarray,
    weights: np.ndarray,
    cosine: bool,
    members: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    ra: np.ndarray,
    rb: np.ndarray,
) -> np.ndarray:
    """Exact ``sum(w_i w_j d(i, j))`` over every cross pair of clusters ``ra[q]`` and ``rb[q]`` (numpy).

    The cross products are enumerated with index arithmetic and their distances computed in chunks of about
    1M pairs, so memory stays bounded however large the clusters are. Used when numba is not installed.
    """
    out = np.zeros(ra.size)
    if ra.size == 0:
        return out
    na, nb = counts[ra], counts[rb]
    total = na * nb
    bounds = np.cumsum(total)
    chunk = 1 << 20
    q0 = 0
    metric = "cosine" if cosine else "euclidean"
    while q0 < ra.size:
        base = bounds[q0 - 1] if q0 else 0
        q1 = max(q0 + 1, int(np.searchsorted(bounds, base + chunk, side="right")))
        q = np.arange(q0, q1)
        t = total[q]
        qi = np.repeat(q, t)
        local = np.arange(int(t.sum())) - np.repeat(np.cumsum(t) - t, t)
        ia, ib = local // nb[qi], local % nb[qi]
        pa = members[starts[ra[qi]] + ia]
        pb = members[starts[rb[qi]] + ib]
        d = _edge_distances(points, pa, pb, metric)
        out[q0:q1] = np.bincount(qi - q0, weights=d * weights[pa] * weights[pb], minlength=q1 - q0)
        q0 = q1
    return out


def _numba_cross_sums() -> Any:
    """The compiled kernel, or None without numba (an optional dependency that umap/pynndescent bring).

    A loop is unavoidable here: the cross products of many cluster pairs of different sizes. In numpy they
    must be materialized as gathered rows (memory bound, 7x slower measured at 10^5 points); numba walks the
    members in place, in parallel over cluster pairs.
    """
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL or None
    try:
        import numba
    except ImportError:
        _KERNEL = False
        return None

    # fastmath lets numba vectorize the d-long reductions (SIMD); sums then differ from a sequential sum in the
    # last bits only, well inside the 1e-9 relative agreement with fastcluster that the tests check.
    @numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
    def kernel(  # pragma: no cover - compiled
        points: np.ndarray,
        weights: np.ndarray,
        cosine: bool,
        members: np.ndarray,
        starts: np.ndarray,
        counts: np.ndarray,
        ra: np.ndarray,
        rb: np.ndarray,
    ) -> np.ndarray:
        out = np.zeros(ra.size)
        d = points.shape[1]
        for q in numba.prange(ra.size):
            sa, na, sb, nb = starts[ra[q]], counts[ra[q]], starts[rb[q]], counts[rb[q]]
            total = 0.0
            for u in range(na):
                i = members[sa + u]
                row = 0.0
                for v in range(nb):
                    j = members[sb + v]
                    acc = 0.0
                    if cosine:
                        for t in range(d):
                            acc += points[i, t] * points[j, t]
                        dist = max(1.0 - acc, 0.0)
                    else:
                        for t in range(d):
                            diff = points[i, t] - points[j, t]
                            acc += diff * diff
                        dist = np.sqrt(acc)
                    row += weights[j] * dist
                total += weights[i] * row
            out[q] = total
        return out

    _KERNEL = kernel
    return kernel


_KERNEL: Any = None


def _cross_sums(
    points: np.ndarray,
    weights: np.ndarray,
    metric: str,
    members: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    ra: np.ndarray,
    rb: np.ndarray,
) -> np.ndarray:
    """Exact weighted sum of distances over all cross pairs of each cluster pair ``(ra[q], rb[q])``."""
    kernel = _numba_cross_sums()
    args = (points, weights, metric == "cosine", members, starts, counts, ra, rb)
    return kernel(*args) if kernel is not None else _cross_sums_numpy(*args)


@dataclass
class RoundState:
    """What every part of the edge list needs in one RAC round: per-cluster arrays (small) and the points.

    In the Dask backend (:mod:`cmal.scale`) one copy goes to every worker per round; the edge list itself
    stays partitioned.
    """

    n_clusters: int
    sizes: np.ndarray
    radius: np.ndarray
    label: np.ndarray
    threshold: float
    linkage: str
    big_d: float
    points: np.ndarray | None
    weights: np.ndarray
    metric: str
    keep_far: bool = False  # keep clusters beyond the threshold (the threshold will be raised later)
    stages: tuple[tuple[float, int], ...] = ()  # (threshold, clusters left) at the end of each earlier stage


Edges = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # r, c, s, m sorted by (r, c)


def initial_edges(a: np.ndarray, b: np.ndarray, distance: np.ndarray, weights: np.ndarray) -> Edges:
    """Both directions of every undirected edge, sorted by (row, column).

    Cluster-pair state per entry: ``s`` = weighted sum of the pair distances covered, ``m`` = number of
    point pairs covered (both weighted by duplicate multiplicities).
    """
    w = weights[a] * weights[b]
    r = np.concatenate([a, b]).astype(np.int64)
    c = np.concatenate([b, a]).astype(np.int64)
    s = np.concatenate([distance * w, distance * w])
    m = np.concatenate([w, w])
    order = np.lexsort((c, r))
    return r[order], c[order], s[order], m[order]


def nearest(edges: Edges, st: RoundState) -> tuple[np.ndarray, np.ndarray, np.ndarray, Edges]:
    """Each row's nearest neighbour cluster: ``(rows, nn, nn_link, edges)``.

    With ``linkage="average"`` a partial cross sum (a merged cluster met a neighbour of only one of its
    parts) gives a lower bound: missing pairs are at least as far as either point's ``radius`` (its k-th
    neighbour, a bound when the lists are exact). Entries
    that are a row's minimum under that bound are completed exactly, repeatedly, until every row's minimum is
    exact; ``edges`` is returned with those sums filled in (and their mirror entries, when present).
    """
    r, c, s, m = edges
    sizes = st.sizes
    pairs = sizes[r] * sizes[c]
    partial = None
    if st.linkage == "graph":
        link = (s + (pairs - m) * st.big_d) / pairs
    elif st.linkage == "edges":
        link = s / m
    else:
        partial = m < pairs
        link = np.where(partial, (s + (pairs - m) * np.maximum(st.radius[r], st.radius[c])) / pairs, s / m)
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    rows = r[starts]
    counts = np.diff(np.r_[starts, r.size])
    while True:
        best = np.minimum.reduceat(link, starts)
        at_min = link == np.repeat(best, counts)
        # First minimum of each row = the smallest neighbour id among ties (entries are sorted by c).
        first = np.flatnonzero(at_min)
        first = first[np.r_[True, r[first][1:] != r[first][:-1]]]
        if partial is None:
            break
        if not partial[first[best <= st.threshold]].any():
            break
        # Complete, in one pass, every partial entry whose lower bound is below the row's best exact
        # linkage (any of them may be the true minimum): fewer passes over the edge list than one per entry.
        exact_best = np.minimum.reduceat(np.where(partial, np.inf, link), starts)
        bound = np.repeat(np.minimum(exact_best, st.threshold), counts)
        todo = np.flatnonzero(partial & (link <= bound))
        sums = _cross_sums_of(st, r[todo], c[todo])
        key = r * st.n_clusters + c
        mkey = c[todo] * st.n_clusters + r[todo]
        pos = np.minimum(np.searchsorted(key, mkey), key.size - 1)
        found = key[pos] == mkey
        both = np.concatenate([todo, pos[found]])
        s[both] = np.concatenate([sums, sums[found]])
        m[both] = pairs[both]
        partial[both] = False
        link[both] = s[both] / m[both]
    return rows, c[first], best, (r, c, s, m)


def _cross_sums_of(st: RoundState, ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Exact weighted cross sums of cluster pairs, grouping only the points of the clusters involved."""
    needed = np.zeros(st.n_clusters + 1, dtype=bool)
    needed[ra] = needed[rb] = True
    lab = st.label
    pts = np.flatnonzero(needed[np.where(lab >= 0, lab, st.n_clusters)])
    members = pts[np.argsort(lab[pts], kind="stable")]
    counts = np.bincount(lab[pts], minlength=st.n_clusters)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    # Only average linkage completes cross sums, and graph_linkage_tree refuses it without points.
    assert st.points is not None
    return _cross_sums(st.points, st.weights, st.metric, members, starts, counts, ra, rb)


def relabel(edges: Edges, parent: np.ndarray, new_id: np.ndarray) -> Edges:
    """Apply a round's merges to edges: new cluster ids, self-loops and finished clusters dropped (unsorted)."""
    r, c, s, m = edges
    r, c = new_id[parent[r]], new_id[parent[c]]
    keep = (r >= 0) & (c >= 0) & (r != c)
    return r[keep], c[keep], s[keep], m[keep]


def aggregate(edges: Edges, n_clusters: int) -> Edges:
    """Sum duplicate (row, column) entries; result sorted by (row, column)."""
    r, c, s, m = edges
    if r.size == 0:
        return edges
    key = r * n_clusters + c
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    return (
        key[starts] // n_clusters,
        key[starts] % n_clusters,
        np.add.reduceat(s[order], starts),
        np.add.reduceat(m[order], starts),
    )


def merge_round(edges: Edges, parent: np.ndarray, new_id: np.ndarray, n_clusters: int) -> Edges:
    """:func:`relabel` then :func:`aggregate`, re-sorting only the entries the merges touched.

    Entries between two clusters that neither merged nor finished keep their order (the compaction map is
    increasing), so they stay sorted; only the (few) touched entries are sorted and summed, then merged in
    by position. Same result as ``aggregate(relabel(...))``, without sorting the whole edge list each round.
    """
    r, c, s, m = edges
    touched = parent != np.arange(parent.size)
    touched[parent[touched]] = True  # survivors of merges too
    ch = touched[r] | touched[c]
    keep = ~ch
    r1, c1 = new_id[r[keep]], new_id[c[keep]]
    alive = (r1 >= 0) & (c1 >= 0)
    stable = (r1[alive], c1[alive], s[keep][alive], m[keep][alive])
    moved = aggregate(relabel((r[ch], c[ch], s[ch], m[ch]), parent, new_id), n_clusters)
    if moved[0].size == 0:
        return stable
    ks = stable[0] * n_clusters + stable[1]
    km = moved[0] * n_clusters + moved[1]
    at = np.searchsorted(ks, km) + np.arange(km.size)
    total = ks.size + km.size
    slot = np.ones(total, dtype=bool)
    slot[at] = False
    out = []
    for a, b in zip(stable, moved):
        arr = np.empty(total, dtype=np.result_type(a, b))
        arr[slot] = a
        arr[at] = b
        out.append(arr)
    r, c, s, m = out
    return r, c, s, m


def plan_merges(
    st: RoundState, rep: np.ndarray, rows: np.ndarray, nn: np.ndarray, nn_link: np.ndarray
) -> tuple[np.ndarray, RoundState, np.ndarray, np.ndarray, np.ndarray] | None:
    """Merge every reciprocal nearest pair within the threshold; ``None`` when nothing merges.

    Returns ``(merges, next_state, rep, parent, new_id)``: the merge records ``(rep_a, rep_b, height,
    size)``, the next round's per-cluster state, and the maps :func:`relabel` applies to the edges.
    """
    n = st.n_clusters
    nn_full = np.full(n, -1, dtype=np.int64)
    nn_full[rows] = nn
    link_full = np.full(n, np.inf)
    link_full[rows] = nn_link
    i = rows
    j = nn_full[i]
    recip = (nn_full[j] == i) & (i < j) & (link_full[i] <= st.threshold)
    i, j = i[recip], j[recip]
    if i.size == 0:
        return None
    sizes, radius = st.sizes.copy(), st.radius.copy()
    merges = np.column_stack([rep[i], rep[j], link_full[i], sizes[i] + sizes[j]])
    sizes[i] += sizes[j]
    radius[i] = np.minimum(radius[i], radius[j])
    parent = np.arange(n, dtype=np.int64)
    parent[j] = i
    alive = np.ones(n, dtype=bool)
    alive[j] = False
    # A cluster whose nearest neighbour is beyond the threshold can never come closer (reducibility).
    if not st.keep_far:
        alive &= ~(link_full > st.threshold)
    # Compact ids of live clusters to 0..n'-1 (order kept) so keys stay small.
    new_id = np.full(n, -1, dtype=np.int64)
    new_id[alive] = np.arange(int(alive.sum()))
    label = np.where(st.label >= 0, new_id[parent[np.maximum(st.label, 0)]], -1)
    nxt = RoundState(
        int(alive.sum()),
        sizes[alive],
        radius[alive],
        label,
        st.threshold,
        st.linkage,
        st.big_d,
        st.points,
        st.weights,
        st.metric,
        st.keep_far,
        st.stages,
    )
    return merges, nxt, rep[alive], parent, new_id


def start_state(
    n: int,
    distance: np.ndarray,
    *,
    sizes: np.ndarray | None,
    threshold: float,
    linkage: str,
    missing_distance: float | None,
    points: np.ndarray | None,
    metric: str,
    radius: np.ndarray | None,
    target_clusters: int | None = None,
) -> RoundState:
    """Check :func:`rac`'s options and build the first round's state.

    With ``target_clusters`` the first threshold is the median edge distance (raised by
    :func:`next_stage` until few enough clusters remain) and clusters beyond it are kept.
    """
    if linkage not in ("average", "graph", "edges"):
        raise ValueError(f"linkage must be 'average', 'graph' or 'edges', got {linkage!r}.")
    if linkage == "average" and points is None:
        raise ValueError("linkage='average' needs points= (the node coordinates) to complete cross sums.")
    weights = np.ones(n, dtype=np.float64) if sizes is None else np.asarray(sizes, dtype=np.float64)
    top = float(distance.max()) if distance.size else 0.0
    big_d = top if missing_distance is None else float(missing_distance)
    if not np.isfinite(big_d):
        raise ValueError(f"missing_distance must be a finite distance, got {missing_distance!r}; leave it at None.")
    if linkage == "graph" and big_d < top:
        raise ValueError(
            f"missing_distance={big_d} is below the largest edge distance {top}; a missing pair must count at "
            "least as far as every known one. Leave it at None."
        )
    radius = np.zeros(n) if radius is None else np.asarray(radius, dtype=np.float64).copy()
    keep_far = target_clusters is not None
    if keep_far:
        target_clusters = check_int(target_clusters, "target_clusters", minimum=1)
        if distance.size:
            # The median edge distance, or the smallest positive one when at least half are 0 (duplicates, or
            # cosine on collinear rows): stages multiply the threshold, so it must not start at 0.
            start = float(np.median(distance))
            if start <= 0:
                positive = distance[distance > 0]
                start = float(positive.min()) if positive.size else 0.0
            threshold = min(threshold, start)
    return RoundState(
        n,
        weights.copy(),
        radius,
        np.arange(n, dtype=np.int64),
        threshold,
        linkage,
        big_d,
        points,
        weights,
        metric,
        keep_far,
    )


# Bounds on the factor by which the threshold grows between stages when building up to a number of clusters. The
# last stage overshoots the target, and an overshoot is expensive on concentrated data (a 64-d mixture, measured
# with benchmarks/graph_hac_scale.py): at 10^6 points a fixed x1.25 took 3*10^5 clusters to 22,000 against the
# target 50,000; aimed steps down to x1.03 still ended at 34,922 with 2.2 billion distance evaluations, and down to
# x1.005 at 48,029 with 0.50 billion. So each step after the first (the minimum: no slope yet) is aimed from the
# slope of log(clusters) against log(threshold) over the previous stage, half way (in log) to the target; an extra
# stage costs a pass over the rows that stopped at the old threshold.
_GROWTH_MIN, _GROWTH_MAX = 1.005, 1.25


def next_stage(st: RoundState, n_clusters_total: int, target_clusters: int | None, ceiling: float) -> bool:
    """After RAC converged at ``st.threshold``: raise it for another stage if more clusters than
    ``target_clusters`` remain (and ``ceiling`` allows). Returns whether to continue; records
    ``(threshold, clusters left)`` in ``st.stages``.

    Merges at a threshold are the same whatever order the rounds found them in (reducibility), so continuing
    from the converged state with a higher threshold equals a fresh run at that threshold.
    """
    if target_clusters is None or n_clusters_total <= target_clusters or st.threshold >= ceiling:
        return False
    if st.threshold <= 0:  # every edge has length 0 and all of them merged: nothing more can
        return False
    log_factor = np.log(_GROWTH_MIN)
    if st.stages:
        t0, c0 = st.stages[-1]
        if c0 > n_clusters_total:
            slope = np.log(c0 / n_clusters_total) / np.log(st.threshold / t0)
            # In logs: a tiny slope (a stage that merged little) would overflow the power.
            log_factor = 0.5 * np.log(n_clusters_total / target_clusters) / slope
        else:
            log_factor = np.log(_GROWTH_MAX)
    factor = float(np.exp(np.clip(log_factor, np.log(_GROWTH_MIN), np.log(_GROWTH_MAX))))
    st.stages = (*st.stages, (st.threshold, n_clusters_total))
    st.threshold = min(ceiling, st.threshold * factor)
    if st.threshold >= ceiling:
        st.keep_far = False
    return True


def _compiled_engine() -> Any:
    """:mod:`cmal.rac_kernels` when it can run (numba installed, ``CMAL_RAC_ENGINE`` not ``"numpy"``), else None."""
    try:
        from cmal import rac_kernels
    except ImportError:  # pragma: no cover - numba comes with the scale extra
        return None
    return rac_kernels if rac_kernels.available() else None


def rac(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    distance: np.ndarray,
    *,
    sizes: np.ndarray | None = None,
    threshold: float = float("inf"),
    linkage: Linkage = "average",
    missing_distance: float | None = None,
    points: np.ndarray | None = None,
    metric: Metric = "euclidean",
    radius: np.ndarray | None = None,
    target_clusters: int | None = None,
    info: dict[str, Any] | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Reciprocal-nearest-neighbour average-linkage HAC on an undirected weighted graph.

    Parameters
    ----------
    n : int
        Number of nodes.
    a, b : ndarray of shape (m,), int
        Edge endpoints, each undirected edge once, ``a != b``.
    distance : ndarray of shape (m,), float
        Edge distances (>= 0).
    sizes : ndarray of shape (n,), optional
        Points each node stands for (duplicates collapsed into one node); default all 1.
    threshold : float
        Merge only pairs whose linkage is ``<= threshold``.
    linkage : {"average", "graph", "edges"}
        See the module docstring. ``"average"`` needs ``points``.
    missing_distance : float, optional
        ``D`` for ``linkage="graph"``; default the largest edge distance.
    points : ndarray of shape (n, d), float64, optional
        Node coordinates (unit rows for cosine), for ``linkage="average"``.
    metric : {"euclidean", "cosine"}
        Distance between ``points``.
    radius : ndarray of shape (n,), optional
        For ``linkage="average"``: a lower bound on the distance from each node to any node it has no edge
        with (its k-th neighbour distance). Default 0 (always valid, completes more sums).
    target_clusters : int, optional
        Merge in stages of growing threshold (x1.005 to x1.25 each, aimed at the target) until at most this many
        clusters remain (or ``threshold`` is reached): the merges then cover every cut down to that many clusters,
        without building the whole forest, whose top merges cost ``O(n^2)`` distance evaluations.
    info : dict, optional
        Receives ``"threshold"``: every merge up to it was found (the last stage's threshold); ``"stages"``:
        ``(threshold, clusters left)`` at the end of each stage. With the compiled engine (numba installed) also
        what the rounds did: ``"rounds"``, ``"completed_pairs"`` (cross sums completed), ``"refined_bounds"``,
        ``"entry_visits"`` (graph entries the nearest-cluster searches looked at), ``"distance_evaluations"`` and
        ``"seconds"`` (wall time per step).

    Returns
    -------
    ndarray of shape (n_merges, 4)
        ``(node_a, node_b, height, size)``: a representative node of each merged cluster, the linkage, the
        merged size; in the order the rounds found them.
    """
    from tqdm.auto import tqdm

    st = start_state(
        n,
        distance,
        sizes=sizes,
        threshold=threshold,
        linkage=linkage,
        missing_distance=missing_distance,
        points=points,
        metric=metric,
        radius=radius,
        target_clusters=target_clusters,
    )
    engine = _compiled_engine()
    if engine is not None:
        found, st, left = engine.rac_csr(
            n,
            a,
            b,
            distance,
            st,
            target_clusters=target_clusters,
            ceiling=threshold,
            plan_merges=plan_merges,
            next_stage=next_stage,
            progress=progress,
            stats=info,
        )
        if info is not None:
            info["threshold"] = st.threshold if left else threshold
            info["stages"] = [*st.stages, (st.threshold, n - len(found))]
        return found
    edges = initial_edges(a, b, distance, st.weights)
    rep = np.arange(n, dtype=np.int64)  # a node of each current cluster
    merges: list[np.ndarray] = []
    total = n
    bar = tqdm(desc="RAC rounds", unit="round", disable=not progress, leave=False)
    while edges[0].size:
        rows, nn, nn_link, edges = nearest(edges, st)
        planned = plan_merges(st, rep, rows, nn, nn_link)
        if planned is None:
            if next_stage(st, total, target_clusters, threshold):
                continue
            break
        found, st, rep, parent, new_id = planned
        total -= len(found)
        merges.append(found)
        edges = merge_round(edges, parent, new_id, st.n_clusters)
        bar.update(1)
        bar.set_postfix(clusters=total, edges=edges[0].size // 2, threshold=f"{st.threshold:.4g}")
    bar.close()
    if info is not None:
        # Converged with no edges left: every merge the graph allows was found.
        info["threshold"] = st.threshold if edges[0].size else threshold
        info["stages"] = [*st.stages, (st.threshold, total)]
    return np.concatenate(merges) if merges else np.empty((0, 4))


def graph_linkage_tree(
    embeddings: Any,
    *,
    k: int = 30,
    max_epsilon: float | None = None,
    target_clusters: int | None = None,
    metric: Metric = "euclidean",
    linkage: Linkage = "average",
    missing_distance: float | None = None,
    knn_backend: KNNBackend = "auto",
    knn_options: dict[str, Any] | None = None,
    exact_max: int = EXACT_MAX_DEFAULT,
    exact_on_graph: bool = False,
    random_state: Any = 0,
    progress: bool = False,
) -> GraphHACTree:
    """Build the kNN graph and run graph average-linkage HAC (RAC).

    Parameters
    ----------
    embeddings : array of shape (n, d)
        Pool embeddings (a ``np.memmap`` works); no NaN/inf, no zero rows with cosine.
    k : int
        Neighbours per point; ``k >= n - 1`` gives the complete graph, where the result equals exact HAC.
    max_epsilon : float, optional
        Stop merging above this height (faster); ``None`` merges as far as the graph allows.
    target_clusters : int, optional
        Build only as far as needed to cut into this many clusters (see :func:`rac`): what to use on large
        pools when ``epsilon`` is not known, since the full forest's top merges cost ``O(n^2)``.
    metric : {"euclidean", "cosine"}
    linkage : {"average", "graph", "edges"}, default "average"
        Linkage on the graph, see the module docstring: ``"average"`` is average linkage over all pairs, exact
        when the kNN lists are (up to ``exact_max`` points) or with ``exact_on_graph=True``.
    missing_distance : float, optional
        Distance counted for pairs missing from the graph (``linkage="graph"``).
    knn_backend : {"auto", "exact", "pynndescent", "faiss"}
    knn_options : dict, optional
        Parameters for the kNN library, passed to :func:`cmal.knn.knn` (pynndescent's ``n_trees``, ``n_iters``;
        faiss HNSW's ``M``, ``efConstruction``, ``efSearch``); ``benchmarks/knn_backends.py`` measures them
        against recall.
    exact_max : int
        Largest pool for exact kNN under ``knn_backend="auto"``.
    exact_on_graph : bool, default False
        With approximate kNN lists (``knn_backend`` "pynndescent" or "faiss", or "auto" above ``exact_max``
        points), still make every merge exactly average linkage among the clusters the graph connects (not
        exact HAC: the graph decides which clusters can merge), at a cost. By default RAC skips completing a
        cross sum when its lower bound, which assumes no point outside a point's list is nearer than its k-th
        listed neighbour, is already too high; an approximate list can miss such a point, and the merges can
        then differ where it did. Measured on 2 cores (``benchmarks/graph_hac_scale.py --exact-on-graph``,
        64-d mixture, k = 30, to n / 20 clusters): at 3*10^5 points the HAC step (not the kNN search) took
        63.8 s by default and 204.6 s with ``True``, and their partitions agreed to ARI 0.9994 (at 10^5:
        9.8 s, 43.6 s, ARI 1.0000). No effect with exact lists.
    random_state : int or Generator
    progress : bool

    Returns
    -------
    GraphHACTree

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(200, 4))
    >>> tree = graph_linkage_tree(x, k=199)  # complete graph: same partition as exact HAC
    >>> from cmal.hac import linkage_tree
    >>> bool((tree.cut(2.0) == linkage_tree(x).cut(2.0)).all())
    True
    """
    k = check_int(k, "k", minimum=1)
    threshold = float("inf") if max_epsilon is None else check_positive_float(max_epsilon, "max_epsilon")

    def neighbours(uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return knn_edges(
            uniq,
            k,
            metric=metric,
            backend=knn_backend,
            exact_max=exact_max,
            random_state=random_state,
            progress=progress,
            options=knn_options,
            exact_on_graph=exact_on_graph,
        )

    def agglomerate(u: int, ea: np.ndarray, eb: np.ndarray, ed: np.ndarray, **kw: Any) -> np.ndarray:
        return rac(u, ea, eb, ed, **kw, progress=progress)

    return build_graph_tree(
        embeddings,
        k=k,
        threshold=threshold,
        metric=metric,
        linkage=linkage,
        missing_distance=missing_distance,
        neighbours=neighbours,
        agglomerate=agglomerate,
        target_clusters=target_clusters,
    )


def build_graph_tree(
    embeddings: Any,
    *,
    k: int,
    threshold: float,
    metric: str,
    linkage: str,
    missing_distance: float | None,
    neighbours: Any,
    agglomerate: Any,
    target_clusters: int | None = None,
) -> GraphHACTree:
    """The steps of :func:`graph_linkage_tree` around two replaceable parts, so a distributed backend
    (:mod:`cmal.scale`) reuses the checks, duplicate handling and bookkeeping.

    ``neighbours(unique_points) -> (a, b, distance, radius)`` builds the graph; ``agglomerate(u, a, b, distance,
    **options) -> merges`` runs RAC (:func:`rac`'s keyword options).
    """
    x = _validated_float64(embeddings, metric)
    n = x.shape[0]
    uniq, inverse, first = _dedupe(x)
    u = uniq.shape[0]
    counts = np.bincount(inverse, minlength=u).astype(np.float64)
    # Duplicates of a unique row merge with its first occurrence at height 0, as in exact HAC.
    dup = np.flatnonzero(first[inverse] != np.arange(n))
    dup_merges = np.column_stack([first[inverse[dup]], dup, np.zeros(dup.size), np.zeros(dup.size)])
    if u > 1:
        ea, eb, ed, radius = neighbours(uniq)
    else:
        ea = eb = np.empty(0, dtype=np.int64)
        ed = radius = np.empty(0)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_comp = connected_components(coo_matrix((np.ones(ea.size), (ea, eb)), shape=(u, u)), directed=False)[0]
    if n_comp > 1:
        warnings.warn(
            f"the {k}-NN graph of {u:,} distinct points has {n_comp} connected components; points in different "
            "components never merge, whatever epsilon. Increase k to connect them.",
            DisconnectedGraphWarning,
            stacklevel=3,
        )
    if target_clusters is not None:
        target_clusters = check_int(target_clusters, "target_clusters", minimum=1, maximum=n)
        # Exact duplicates already account for n - u merges.
        target_clusters = max(1, min(u, target_clusters))
    info: dict[str, Any] = {"threshold": threshold}
    merged = agglomerate(
        u,
        ea,
        eb,
        ed,
        sizes=counts,
        threshold=threshold,
        linkage=linkage,
        missing_distance=missing_distance,
        points=uniq,
        metric=metric,
        radius=radius,
        target_clusters=target_clusters,
        info=info,
    )
    merged[:, 0] = first[merged[:, 0].astype(np.int64)]
    merged[:, 1] = first[merged[:, 1].astype(np.int64)]
    allm = np.concatenate([dup_merges, merged])
    allm = allm[np.argsort(allm[:, 2], kind="stable")]
    return GraphHACTree(
        allm,
        n,
        metric,
        "rac",
        n_components=int(n_comp),
        max_epsilon=float(info["threshold"]),
        k=int(min(k, max(u - 1, 0))),
        graph_linkage=linkage,
    )


def graph_hac(embeddings: Any, epsilon: float, *, k: int = 30, **kwargs: Any) -> np.ndarray:
    """Graph average-linkage HAC cut at ``epsilon``: cluster labels of shape (n,), int64.

    Merging stops at ``epsilon`` (cheaper than building the whole forest). Keyword arguments go to
    :func:`graph_linkage_tree`.
    """
    epsilon = check_positive_float(epsilon, "epsilon")
    return graph_linkage_tree(embeddings, k=k, max_epsilon=epsilon, **kwargs).cut(epsilon)
