"""k-nearest-neighbour graphs of pool embeddings, the input of graph HAC (:mod:`cmal.graph_hac`).

Three backends, all returning the same thing (``k`` neighbour indices and distances per row, self excluded):

- ``"exact"``: blocked brute force with BLAS. Exact; cost ``O(n^2 d)``, used up to ``exact_max`` points.
- ``"pynndescent"``: nearest-neighbour descent (the library umap-learn uses). Approximate, near-linear.
- ``"faiss"``: an HNSW index from faiss-cpu. Approximate.

``"auto"`` picks exact for small pools and pynndescent above (faiss if pynndescent is not installed). The
measurements behind that choice (2 cores, 64-d mixture, k = 30): at 10^5 points faiss HNSW took 10.6 s (recall@30
0.973) and pynndescent 26.0 s including about 15 s of one-off numba compilation (recall 0.947,
``benchmarks/knn_backends.py``); at 10^6, the size this path is for, pynndescent built the graph in 146 s and
faiss in 308 s in an earlier run (``benchmarks/graph_hac_scale.py``, where RAC then stopped at 1.2 x the median
k-th-neighbour distance).
Both give the same neighbours when run twice on the same data.

Distances match the exact HAC path (:func:`cmal.hac.linkage_tree`): Euclidean, or cosine distance
``1 - cos``. Cosine is computed as squared Euclidean distance between unit vectors divided by 2, which is the
same number, so every backend searches in Euclidean space.

Examples
--------
>>> import numpy as np
>>> from cmal.knn import knn
>>> x = np.array([[0.0], [1.0], [3.0], [7.0]])
>>> idx, dist = knn(x, k=2, backend="exact")
>>> idx.tolist()
[[1, 2], [0, 2], [1, 0], [2, 1]]
>>> dist[3].tolist()
[4.0, 6.0]
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from cmal._validation import check_finite_matrix, check_int, nonzero_row_norms

__all__ = [
    "knn",
    "resolved_backend",
    "normalize_for_metric",
    "exact_block",
    "block_rows",
    "to_metric",
    "EXACT_MAX_DEFAULT",
    "FAISS_HNSW",
]

Metric = Literal["euclidean", "cosine"]
KNNBackend = Literal["auto", "exact", "pynndescent", "faiss"]

#: Up to this many points brute force is both exact and fast enough (about 20 s at 50k x 64 on 2 cores).
EXACT_MAX_DEFAULT = 50_000
_BLOCK_BYTES = 256 * 2**20  # one block of the distance matrix in brute force


def normalize_for_metric(embeddings: Any, metric: str, name: str = "embeddings") -> np.ndarray:
    """Validate ``embeddings`` and return the float32 matrix to search in Euclidean space.

    For ``metric="cosine"`` rows are scaled to unit length; all-zero rows raise ``ValueError`` because cosine
    distance is undefined for them (no silent clustering of zero vectors).
    """
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}.")
    x = check_finite_matrix(embeddings, name)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if metric == "cosine":
        x = x / nonzero_row_norms(x, name)[:, None]
    return x


def to_metric(sq_dist: np.ndarray, metric: str) -> np.ndarray:
    """Squared Euclidean distances between search vectors -> distances in ``metric``."""
    sq = np.maximum(sq_dist, 0.0)
    return (sq / 2.0) if metric == "cosine" else np.sqrt(sq)


def exact_block(x: np.ndarray, sq: np.ndarray, start: int, stop: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest neighbours of rows ``start:stop`` among all rows of ``x``: (indices, squared
    distances), each (stop - start, k), sorted by distance then index. ``sq`` holds the rows' squared norms.

    One block of the brute-force search; :mod:`cmal.scale` runs blocks on Dask workers.
    """
    d2 = sq[start:stop, None] - 2.0 * (x[start:stop] @ x.T) + sq[None, :]
    r = np.arange(stop - start)
    d2[r, np.arange(start, stop)] = np.inf  # exclude self
    part = np.argpartition(d2, k - 1, axis=1)[:, :k]
    pd = d2[r[:, None], part]
    # Sort by distance, then by index, so ties resolve the same way every run.
    order = np.lexsort((part, pd), axis=1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64), np.take_along_axis(pd, order, axis=1)


def block_rows(n: int) -> int:
    """Query rows per brute-force block: one block of float32 distances stays under 256 MiB."""
    return max(1, min(n, _BLOCK_BYTES // (4 * n)))


def _exact(x: np.ndarray, k: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    # Hand-written blocked brute force: sklearn's NearestNeighbors would allocate the same blocks but
    # returns float64 and cannot report progress; this keeps one block of float32 distances at a time.
    from tqdm.auto import tqdm

    n = x.shape[0]
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64).astype(np.float32)
    block = block_rows(n)
    idx = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float32)
    for start in tqdm(range(0, n, block), desc="exact kNN", disable=not progress, leave=False):
        stop = min(n, start + block)
        idx[start:stop], dist[start:stop] = exact_block(x, sq, start, stop, k)
    return idx, dist


#: faiss HNSW parameters (links per node, build and search beam widths); efSearch is raised to 2 (k + 1) when
#: that is larger. Measured against recall@k in benchmarks/knn_backends.py.
FAISS_HNSW: dict[str, int] = {"M": 32, "efConstruction": 80, "efSearch": 64}


def _pynndescent(
    x: np.ndarray, k: int, seed: int, progress: bool, options: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    try:
        from pynndescent import NNDescent
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("backend='pynndescent' needs pynndescent: pip install 'cmal[scale]'.") from exc
    kwargs: dict[str, Any] = {"low_memory": True, "compressed": True, **(options or {})}
    index = NNDescent(x, n_neighbors=k + 1, metric="euclidean", random_state=seed, verbose=progress, **kwargs)
    idx, dist = index.neighbor_graph
    return _drop_self(idx, dist.astype(np.float32) ** 2, k)


def _faiss(
    x: np.ndarray, k: int, seed: int, progress: bool, options: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("backend='faiss' needs faiss-cpu: pip install 'cmal[scale]'.") from exc
    # HNSW draws its levels from a fixed internal seed, so the graph is reproducible without `seed`.
    opts = {**FAISS_HNSW, **(options or {})}
    unknown = set(opts) - set(FAISS_HNSW)
    if unknown:
        raise ValueError(f"options for backend='faiss' are {sorted(FAISS_HNSW)}; got {sorted(unknown)}.")
    index = faiss.IndexHNSWFlat(x.shape[1], int(opts["M"]))
    index.hnsw.efConstruction = int(opts["efConstruction"])
    index.hnsw.efSearch = max(int(opts["efSearch"]), 2 * (k + 1))
    index.add(x)
    d2, idx = index.search(x, k + 1)
    return _drop_self(idx.astype(np.int64), d2, k)


def _drop_self(idx: np.ndarray, d2: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index from a (n, k + 1) result; keep the k nearest others."""
    n = idx.shape[0]
    is_self = idx == np.arange(n)[:, None]
    # Invalid slots (-1 from faiss) and self go to the end, then take the first k.
    bad = is_self | (idx < 0)
    key = np.where(bad, np.inf, d2)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    out_idx = np.take_along_axis(idx, order, axis=1)
    out_d2 = np.take_along_axis(key, order, axis=1)
    if not np.isfinite(out_d2).all():
        missing = int((~np.isfinite(out_d2)).any(axis=1).sum())
        raise RuntimeError(
            f"the approximate kNN search returned fewer than k={k} neighbours for {missing} row(s); use "
            "backend='exact' or a smaller k."
        )
    return out_idx, out_d2.astype(np.float32)


def _approximate_backend() -> Literal["pynndescent", "faiss"]:
    try:
        import pynndescent  # noqa: F401

        return "pynndescent"
    except ImportError:
        return "faiss"


def resolved_backend(n: int, k: int, backend: KNNBackend, exact_max: int) -> KNNBackend:
    """The backend :func:`knn` runs for ``n`` points and ``k`` neighbours: ``"exact"`` (whose lists hold every
    nearer point, which :mod:`cmal.graph_hac`'s lower bounds rely on), ``"pynndescent"`` or ``"faiss"``.

    >>> resolved_backend(1000, 15, "auto", exact_max=50_000), resolved_backend(10, 9, "faiss", exact_max=1)
    ('exact', 'exact')
    """
    if backend == "exact" or k >= n - 1:  # asking for every other point is the complete graph: brute force
        return "exact"
    if backend == "auto":
        return "exact" if n <= exact_max else _approximate_backend()
    return backend


def knn(
    embeddings: Any,
    k: int = 15,
    *,
    metric: Metric = "euclidean",
    backend: KNNBackend = "auto",
    exact_max: int = EXACT_MAX_DEFAULT,
    random_state: Any = 0,
    progress: bool = False,
    options: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of every row.

    Parameters
    ----------
    embeddings : array of shape (n, d)
        No NaN/inf; no all-zero rows with ``metric="cosine"``.
    k : int >= 1
        Neighbours per row. ``k >= n`` is clipped to ``n - 1`` (every other point: the complete graph).
    metric : {"euclidean", "cosine"}
    backend : {"auto", "exact", "pynndescent", "faiss"}
        ``"auto"``: exact up to ``exact_max`` points, pynndescent above (faiss if pynndescent is not installed).
    exact_max : int
        Pool size up to which ``"auto"`` uses brute force.
    random_state : int or Generator
        Seeds the approximate backends.
    progress : bool
        Show a progress bar / log.
    options : dict, optional
        For the approximate backends: keyword arguments of ``pynndescent.NNDescent`` (e.g. ``n_trees``,
        ``n_iters``), or faiss HNSW's ``M``, ``efConstruction``, ``efSearch`` (defaults :data:`FAISS_HNSW`).

    Returns
    -------
    indices : ndarray of shape (n, k'), int64
        Neighbour indices sorted by distance, ``k' = min(k, n - 1)``.
    distances : ndarray of shape (n, k'), float32
        The matching distances in ``metric``.
    """
    if backend not in ("auto", "exact", "pynndescent", "faiss"):
        raise ValueError(f"backend must be 'auto', 'exact', 'pynndescent' or 'faiss', got {backend!r}.")
    x = normalize_for_metric(embeddings, metric)
    n = x.shape[0]
    k = check_int(k, "k", minimum=1)
    exact_max = check_int(exact_max, "exact_max", minimum=1)
    if n < 2:
        return np.empty((n, 0), dtype=np.int64), np.empty((n, 0), dtype=np.float32)
    k = min(k, n - 1)
    backend = resolved_backend(n, k, backend, exact_max)
    if isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(2**31 - 1))
    elif random_state is None:
        seed = 0
    else:
        seed = check_int(random_state, "random_state", minimum=0)
    if backend == "exact":
        idx, d2 = _exact(x, k, progress)
    elif backend == "pynndescent":
        idx, d2 = _pynndescent(x, k, seed, progress, options)
    else:
        idx, d2 = _faiss(x, k, seed, progress, options)
    return idx, to_metric(d2, metric).astype(np.float32)
