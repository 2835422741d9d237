"""Exact average-linkage hierarchical agglomerative clustering (Algorithm 1 of the paper).

The merge tree is computed once (:func:`linkage_tree`) and kept, so a flat clustering for any threshold
``epsilon`` is a millisecond re-cut (:meth:`cmal.tree.HACTree.cut`) rather than a new clustering. This is what the
widgets' ``epsilon`` slider and :meth:`cmal.tree.HACTree.epsilon_for_clusters` rely on.

Exact HAC needs every pairwise distance: ``n (n - 1) / 2`` float64 values. :func:`max_exact_points` says how
many points fit in a memory budget and :func:`linkage_tree` refuses larger inputs with that figure.

Examples
--------
>>> import numpy as np
>>> from cmal.hac import hac, linkage_tree
>>> x = np.array([[0.0], [0.1], [5.0], [5.2], [20.0]])
>>> hac(x, epsilon=1.0)
array([0, 0, 1, 1, 2])
>>> tree = linkage_tree(x)
>>> tree.n_clusters(0.15), int(tree.cut(10.0).max()) + 1
(4, 2)
>>> round(tree.epsilon_for_clusters(3), 3)
2.625
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal

import numpy as np

from cmal._validation import (
    FLOAT64_DISTANCE_MAX_ABS,
    check_finite_matrix,
    check_int,
    check_magnitude,
    check_positive_float,
    nonzero_row_norms,
)

# The tree type lives in cmal.tree, which exact and graph HAC both build on; re-exported (in __all__) so existing
# imports from cmal.hac keep working.
from cmal.tree import HACTree, canonical_labels

__all__ = [
    "HACTree",
    "canonical_labels",
    "hac",
    "build_tree",
    "choose_method",
    "linkage_tree",
    "max_exact_points",
    "ExactHACTooLargeError",
    "AUTO_EXACT_MAX",
]

Backend = Literal["auto", "fastcluster", "scipy"]
Method = Literal["auto", "exact", "graph"]

#: method="auto" uses exact HAC up to this many points. Exact HAC is O(n^2) in time as well as memory: about
#: 10 s at 20k points on 2 cores and minutes at 50k, while graph HAC of 50k points takes seconds.
AUTO_EXACT_MAX = 30_000

# Peak bytes per condensed-distance entry: fastcluster keeps one float64 copy; scipy's average linkage
# copies the condensed matrix once more: 80,265 / 56,756 points in 24 GiB (method.md rounds these to 75k / 55k).
_BYTES_PER_PAIR = {"fastcluster": 8.0, "scipy": 16.0}


class ExactHACTooLargeError(ValueError):
    """Raised when exact HAC would need more memory than allowed."""


def _available_memory_bytes() -> int:
    """Physical memory of this machine (Linux/macOS); 8 GiB if the OS will not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _resolve_backend(backend: str) -> Literal["fastcluster", "scipy"]:
    if backend not in ("auto", "fastcluster", "scipy"):
        raise ValueError(f"backend must be 'auto', 'fastcluster' or 'scipy', got {backend!r}.")
    if backend in ("auto", "fastcluster"):
        try:
            import fastcluster  # noqa: F401

            return "fastcluster"
        except ImportError:
            if backend == "fastcluster":
                msg = "backend='fastcluster' needs the fastcluster package: pip install fastcluster."
                raise ValueError(msg) from None
    return "scipy"


def max_exact_points(memory_bytes: float | None = None, backend: Backend = "auto") -> int:
    """Largest pool that exact HAC can cluster within ``memory_bytes``.

    Parameters
    ----------
    memory_bytes : float, optional
        Budget; defaults to 80% of this machine's physical memory.
    backend : {"auto", "fastcluster", "scipy"}

    Returns
    -------
    int
        ``n`` such that the pairwise-distance storage of ``n`` points fits in the budget.
    """
    backend = _resolve_backend(backend)
    if memory_bytes is None:
        memory_bytes = 0.8 * _available_memory_bytes()
    pairs = memory_bytes / _BYTES_PER_PAIR[backend]
    # n (n - 1) / 2 <= pairs  <=>  n <= (1 + sqrt(1 + 8 pairs)) / 2
    return int((1 + math.sqrt(1 + 8 * pairs)) // 2)


def linkage_tree(
    embeddings: np.ndarray,
    *,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    backend: Backend = "auto",
    memory_bytes: float | None = None,
) -> HACTree:
    """Build the exact average-linkage merge tree.

    Parameters
    ----------
    embeddings : array of shape (n, d)
        One row per pool example, no NaN/inf.
    metric : {"euclidean", "cosine"}
        Distance between embeddings; the paper presents Euclidean.
    backend : {"auto", "fastcluster", "scipy"}
        ``"auto"`` uses fastcluster (faster, half the memory) and falls back to SciPy.
    memory_bytes : float, optional
        Memory budget for the distance matrix; default 80% of physical memory.

    Returns
    -------
    HACTree

    Raises
    ------
    ExactHACTooLargeError
        If ``n`` exceeds :func:`max_exact_points` for the budget.
    """
    x = check_finite_matrix(embeddings, "embeddings")
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}.")
    backend = _resolve_backend(backend)
    n = x.shape[0]
    limit = max_exact_points(memory_bytes, backend)
    if n > limit:
        need = n * (n - 1) / 2 * _BYTES_PER_PAIR[backend]
        need_text = f"{need / 2**30:,.1f} GiB" if need >= 2**30 else f"{need / 2**20:,.1f} MiB"
        raise ExactHACTooLargeError(
            f"embeddings has {n:,} rows; exact average-linkage HAC needs {need_text} for pairwise distances "
            f"and only {limit:,} points fit in the memory budget. Cluster a subsample, or use the kNN-graph HAC "
            "for large pools: cmal.hac.build_tree(..., method='graph') or `cmal cluster --method graph`."
        )
    check_magnitude(x, FLOAT64_DISTANCE_MAX_ABS, "exact HAC")
    if metric == "cosine":
        nonzero_row_norms(x)
    if n == 1:
        return HACTree(np.empty((0, 4)), 1, metric, backend)
    # float64: fastcluster and scipy compute distances in double precision anyway.
    x = np.ascontiguousarray(x, dtype=np.float64)
    if backend == "fastcluster":
        import fastcluster

        z = fastcluster.linkage(x, method="average", metric=metric)
    else:
        from scipy.cluster.hierarchy import linkage

        z = linkage(x, method="average", metric=metric)
    return HACTree(np.asarray(z, dtype=np.float64), n, metric, backend)


def choose_method(
    n: int, method: Method = "auto", *, exact_max: int = AUTO_EXACT_MAX, memory_bytes: float | None = None
) -> Literal["exact", "graph"]:
    """``"exact"`` or ``"graph"`` for a pool of ``n`` points.

    ``"auto"`` picks exact HAC when ``n <= exact_max`` and the distance matrix fits in memory, graph HAC
    otherwise.

    >>> choose_method(1_000), choose_method(1_000_000)
    ('exact', 'graph')
    """
    if method not in ("auto", "exact", "graph"):
        raise ValueError(f"method must be 'auto', 'exact' or 'graph', got {method!r}.")
    if method != "auto":
        return method
    exact_max = check_int(exact_max, "exact_max", minimum=1)
    return "exact" if n <= min(exact_max, max_exact_points(memory_bytes)) else "graph"


def build_tree(
    embeddings: np.ndarray,
    *,
    method: Method = "auto",
    metric: Literal["euclidean", "cosine"] = "euclidean",
    k: int = 30,
    max_epsilon: float | None = None,
    target_clusters: int | None = None,
    exact_max: int = AUTO_EXACT_MAX,
    random_state: int = 0,
    progress: bool = False,
    **graph_kwargs: Any,
) -> HACTree:
    """The average-linkage merge tree by exact HAC or kNN-graph HAC, chosen by pool size.

    Parameters
    ----------
    embeddings : array of shape (n, d)
    method : {"auto", "exact", "graph"}
        See :func:`choose_method`. The returned tree's ``backend`` says which ran (``"fastcluster"``,
        ``"scipy"`` or ``"rac"``).
    metric : {"euclidean", "cosine"}
    k, max_epsilon, target_clusters, random_state, progress, **graph_kwargs
        Used by graph HAC only (:func:`cmal.graph_hac.graph_linkage_tree`): with neither ``max_epsilon``
        nor ``target_clusters`` it builds the whole forest, whose top merges cost ``O(n^2)``.

    Returns
    -------
    HACTree or cmal.graph_hac.GraphHACTree

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(50, 3))
    >>> build_tree(x).backend, build_tree(x, method="graph", k=10).backend
    ('fastcluster', 'rac')
    """
    n = int(np.shape(embeddings)[0]) if np.ndim(embeddings) == 2 else 0
    chosen = choose_method(n, method, exact_max=exact_max)
    if chosen == "exact":
        return linkage_tree(embeddings, metric=metric)
    from cmal.graph_hac import graph_linkage_tree

    return graph_linkage_tree(
        embeddings,
        k=k,
        max_epsilon=max_epsilon,
        target_clusters=target_clusters,
        metric=metric,
        random_state=random_state,
        progress=progress,
        **graph_kwargs,
    )


def hac(
    embeddings: np.ndarray,
    epsilon: float,
    *,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    backend: Backend = "auto",
    method: Method = "auto",
    k: int = 30,
    random_state: int = 0,
) -> np.ndarray:
    """Average-linkage HAC cut at ``epsilon``: integer cluster labels, shape (n,).

    ``method`` chooses exact or kNN-graph HAC (:func:`choose_method`); ``backend`` is the exact library and
    ``k`` the graph's neighbours. Keep the tree (:func:`build_tree`) instead when you will try several
    thresholds: it also says which method ran.
    """
    epsilon = check_positive_float(epsilon, "epsilon")
    n = int(np.shape(embeddings)[0]) if np.ndim(embeddings) == 2 else 0
    if choose_method(n, method) == "exact":
        return linkage_tree(embeddings, metric=metric, backend=backend).cut(epsilon)
    from cmal.graph_hac import graph_hac

    return graph_hac(embeddings, epsilon, k=k, metric=metric, random_state=random_state)
