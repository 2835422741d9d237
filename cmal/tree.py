"""The merge tree of average-linkage HAC and its flat cuts, shared by exact HAC (:mod:`cmal.hac`) and graph HAC
(:mod:`cmal.graph_hac`).

Both build a :class:`HACTree` (graph HAC a subclass that may stop below the root), so everything downstream (the
seed stage, the strategies, the ``epsilon`` slider) cuts either the same way. This module imports neither HAC
module, so each of them can import it.

Examples
--------
>>> import numpy as np
>>> from cmal.tree import HACTree, canonical_labels
>>> tree = HACTree(np.array([[0, 1, 0.1, 2], [2, 3, 0.2, 2], [4, 5, 5.0, 4]]), n=4)
>>> tree.cut(1.0).tolist(), tree.n_clusters(0.15)
([0, 0, 1, 1], 3)
>>> canonical_labels(np.array([7, 7, 3, 9])).tolist()
[0, 0, 1, 2]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cmal._validation import check_int, check_positive_float

__all__ = ["HACTree", "canonical_labels"]


@dataclass(frozen=True)
class HACTree:
    """The full average-linkage merge tree of ``n`` points.

    Attributes
    ----------
    linkage : ndarray of shape (n - 1, 4)
        SciPy's linkage format: merged cluster ids, merge height, size of the new cluster. Heights are
        non-decreasing because average linkage is monotone.
    n : int
        Number of clustered points.
    metric : str
        The distance used.
    backend : str
        Which library built the tree.
    """

    linkage: np.ndarray
    n: int
    metric: str = "euclidean"
    backend: str = "fastcluster"
    _heights: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_heights", np.asarray(self.linkage[:, 2], dtype=np.float64))

    @property
    def heights(self) -> np.ndarray:
        """Merge heights, shape (n - 1,), non-decreasing. Useful as a histogram for choosing ``epsilon``."""
        return self._heights

    @property
    def max_epsilon(self) -> float:
        """Highest cut this tree holds: infinity, since an exact tree is complete (a graph-HAC tree may stop
        lower; same attribute, so code can treat both alike)."""
        return float("inf")

    def describe(self) -> str:
        """One line: what was built (as :meth:`cmal.graph_hac.GraphHACTree.describe`)."""
        return (
            f"exact HAC (average linkage) of {self.n:,} points ({self.metric}, {self.backend}); {self.n - 1:,} merges"
        )

    def cut(self, epsilon: float) -> np.ndarray:
        """Flat clustering: perform every merge with height ``<= epsilon``.

        Parameters
        ----------
        epsilon : float > 0

        Returns
        -------
        ndarray of shape (n,), int64
            Cluster ids ``0..k-1``, numbered in order of each cluster's first point, so equal partitions
            give equal arrays.
        """
        epsilon = check_positive_float(epsilon, "epsilon")
        if self.n == 1:
            return np.zeros(1, dtype=np.int64)
        from scipy.cluster.hierarchy import fcluster

        raw = fcluster(self.linkage, t=epsilon, criterion="distance")
        return canonical_labels(raw)

    def n_clusters(self, epsilon: float) -> int:
        """Number of clusters :meth:`cut` gives for ``epsilon`` (no labels computed)."""
        epsilon = check_positive_float(epsilon, "epsilon")
        return int(self.n - np.searchsorted(self._heights, epsilon, side="right"))

    def epsilon_for_clusters(self, n_clusters: int) -> float:
        """A threshold whose cut gives ``n_clusters`` clusters (or as close as ties in heights allow).

        The threshold is the midpoint between the last merge performed and the first one refused, so small
        floating-point differences between backends do not change the cut.
        """
        n_clusters = check_int(n_clusters, "n_clusters", minimum=1, maximum=self.n)
        if self.n == 1:
            return 1.0
        h = self._heights
        # Cutting strictly between two distinct heights performs exactly the merges below the cut.
        levels = np.unique(h)
        upper = np.append(levels[1:], levels[-1] * 1.5 + 1.0)
        clusters = self.n - np.searchsorted(h, levels, side="right")
        eps = (levels + upper) / 2
        if levels[0] > 0:  # a cut below every merge keeps all points apart
            clusters = np.append(clusters, self.n)
            eps = np.append(eps, levels[0] / 2)
        # The nearest achievable count (ties in heights can make the exact count impossible); on a tie in
        # distance prefer more, smaller clusters.
        best = np.lexsort((-clusters, np.abs(clusters - n_clusters)))[0]
        return float(eps[best])

    def epsilon_for_mean_size(self, mean_size: float) -> float:
        """A threshold giving clusters of about ``mean_size`` points on average."""
        mean_size = check_positive_float(mean_size, "mean_size")
        return self.epsilon_for_clusters(max(1, min(self.n, round(self.n / mean_size))))


def canonical_labels(raw: np.ndarray) -> np.ndarray:
    """Renumber arbitrary labels to ``0..k-1`` in order of first appearance. Shape preserved."""
    raw = np.asarray(raw)
    _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.reshape(-1)]
