"""Metrics and learning-curve summaries.

Examples
--------
>>> import numpy as np
>>> from cmal.metrics import accuracy, labels_to_reach
>>> accuracy(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
0.6666666666666666
>>> round(labels_to_reach([100, 200, 300], [0.80, 0.90, 0.95], 0.85), 6)
150.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "aulc",
    "batch_summary",
    "class_histogram",
    "cluster_label_table",
    "evaluate",
    "labels_to_reach",
    "macro_recall",
    "mean_ap",
    "mean_and_se",
    "pooled_ap",
]


def accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Top-1 accuracy of probabilities (n, C) or predicted labels (n,) against labels (n,)."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs)
    pred = probs.argmax(axis=1) if probs.ndim == 2 else probs
    if pred.shape != y_true.shape:
        raise ValueError(f"Predictions for {pred.shape[0]} examples but {y_true.shape[0]} labels.")
    return float(np.mean(pred == y_true))


def macro_recall(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Recall of every class present in ``y_true``, averaged with equal weight (balanced accuracy).

    On a long-tailed pool, accuracy on a balanced test set already weighs classes equally; macro recall says
    the same per class, so one rare class the model never predicts costs ``1 / n_classes`` of it.

    Examples
    --------
    >>> macro_recall(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]))   # class 1 never found
    0.5
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs)
    pred = probs.argmax(axis=1) if probs.ndim == 2 else probs
    if pred.shape != y_true.shape:
        raise ValueError(f"Predictions for {pred.shape[0]} examples but {y_true.shape[0]} labels.")
    classes, inverse = np.unique(y_true, return_inverse=True)
    hits = np.bincount(inverse, weights=(pred == y_true), minlength=classes.size)
    return float(np.mean(hits / np.bincount(inverse, minlength=classes.size)))


def labels_to_reach(n_labeled: Sequence[float], scores: Sequence[float], target: float) -> float:
    """Labels needed to first reach ``target``, interpolating linearly between rounds; NaN if never reached."""
    x = np.asarray(n_labeled, dtype=float)
    y = np.asarray(scores, dtype=float)
    hit = np.flatnonzero(y >= target)
    if hit.size == 0:
        return float("nan")
    i = hit[0]
    if i == 0:
        return float(x[0])
    return float(x[i - 1] + (target - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]))


def aulc(n_labeled: Sequence[float], scores: Sequence[float]) -> float:
    """Normalized area under the learning curve: the trapezoid mean of ``scores`` over ``n_labeled``."""
    x = np.asarray(n_labeled, dtype=float)
    y = np.asarray(scores, dtype=float)
    if x.size < 2:
        return float(y.mean()) if y.size else float("nan")
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def mean_and_se(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of the mean along ``axis`` (SE is 0 for a single value)."""
    values = np.asarray(values, dtype=float)
    n = values.shape[axis]
    mean = values.mean(axis=axis)
    se = values.std(axis=axis, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
    return mean, se


def cluster_label_table(clusters: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """How clusters line up with true labels.

    Parameters
    ----------
    clusters, labels : int arrays (n,)

    Returns
    -------
    dict with ``counts`` (n_clusters, n_classes) contingency table, ``size`` (n_clusters,), ``majority``
    (n_clusters,) most common label, ``purity`` (n_clusters,) its share, and ``overall_purity`` (float array of
    one value): the share of points whose label is their cluster's majority label.
    """
    clusters = np.asarray(clusters, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if clusters.shape != labels.shape or clusters.ndim != 1:
        raise ValueError(f"clusters and labels must be 1-D of equal length, got {clusters.shape} and {labels.shape}.")
    k, c = int(clusters.max()) + 1, int(labels.max()) + 1
    counts = np.zeros((k, c), dtype=np.int64)
    np.add.at(counts, (clusters, labels), 1)
    size = counts.sum(axis=1)
    majority = counts.argmax(axis=1)
    purity = counts.max(axis=1) / np.maximum(size, 1)
    return {
        "counts": counts,
        "size": size,
        "majority": majority,
        "purity": purity,
        "overall_purity": np.array(counts.max(axis=1).sum() / max(size.sum(), 1)),
    }


def class_histogram(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Examples per class, shape (n_classes,): class ids (k,) or 0/1 multi-label rows (k, n_classes)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return labels.sum(axis=0).astype(np.int64)
    return np.bincount(labels.astype(np.int64), minlength=n_classes)


def batch_summary(
    batch: np.ndarray,
    *,
    embeddings: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    sources: np.ndarray | None = None,
    n_classes: int | None = None,
) -> dict[str, Any]:
    """How redundant and how balanced a batch is.

    Parameters
    ----------
    batch : int array (k,)
        Pool indices.
    embeddings : array (n, d), optional
    clusters, labels : arrays (n,) over the pool, optional
        Cluster ids; class ids (or 0/1 rows (n, C) for multi-label).
    sources : int array (n,), optional
        For a pool built from copies (:func:`cmal.data.repeated`): the original image of each pool item, so that
        copies of one image count once.
    n_classes : int, optional
        With ``labels``: also the class histogram of the batch.

    Returns
    -------
    dict with ``size`` and, for each input given: ``distinct_clusters``, ``distinct_labels``,
    ``distinct_sources``, ``mean_pairwise_distance``; with ``labels`` and ``n_classes``, ``class_counts`` (list of
    n_classes ints), ``class_min`` (the rarest class's count) and ``class_entropy`` (bits; ``log2(n_classes)``
    for a perfectly balanced batch).

    Examples
    --------
    >>> batch_summary(np.array([0, 1, 2]), clusters=np.array([5, 5, 6, 7]), labels=np.array([1, 1, 1, 0]))
    {'size': 3, 'distinct_clusters': 2, 'distinct_labels': 1}
    >>> s = batch_summary(np.array([0, 1, 3]), labels=np.array([1, 1, 1, 0]), sources=np.array([0, 0, 1, 2]),
    ...                   n_classes=3)
    >>> s["distinct_sources"], s["class_counts"], s["class_min"], round(s["class_entropy"], 3)
    (2, [1, 2, 0], 0, 0.918)
    """
    batch = np.asarray(batch, dtype=np.int64)
    out: dict[str, Any] = {"size": int(batch.size)}
    if clusters is not None:
        out["distinct_clusters"] = int(np.unique(np.asarray(clusters)[batch]).size)
    if labels is not None:
        out["distinct_labels"] = int(np.unique(np.asarray(labels)[batch], axis=0).shape[0])
    if sources is not None:
        out["distinct_sources"] = int(np.unique(np.asarray(sources)[batch]).size)
    if labels is not None and n_classes is not None:
        counts = class_histogram(np.asarray(labels)[batch], n_classes)
        share = counts[counts > 0] / max(int(counts.sum()), 1)
        out.update(
            class_counts=counts.tolist(),
            class_min=int(counts.min()),
            class_entropy=float(-(share * np.log2(share)).sum()) + 0.0,
        )
    if embeddings is not None and batch.size > 1:
        from scipy.spatial.distance import pdist

        out["mean_pairwise_distance"] = float(pdist(np.asarray(embeddings)[batch]).mean())
    return out


def pooled_ap(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Pooled (micro-averaged) average precision over all (example, class) pairs, the paper's Open Images metric.

    Parameters
    ----------
    y_true : 0/1 array (n, C)
    probs : array (n, C) of sigmoid scores

    Examples
    --------
    >>> round(pooled_ap(np.array([[1, 0], [0, 1]]), np.array([[0.9, 0.8], [0.1, 0.4]])), 4)
    0.8333
    """
    from sklearn.metrics import average_precision_score

    y_true, probs = _multilabel_pair(y_true, probs)
    return float(average_precision_score(y_true.ravel(), probs.ravel()))


def mean_ap(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean over classes of each class's average precision (classes with no positive are skipped)."""
    from sklearn.metrics import average_precision_score

    y_true, probs = _multilabel_pair(y_true, probs)
    has_pos = y_true.sum(axis=0) > 0
    return float(average_precision_score(y_true[:, has_pos], probs[:, has_pos], average="macro"))


def _multilabel_pair(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    if y_true.ndim != 2 or y_true.shape != probs.shape:
        raise ValueError(f"y_true and probs must both be (n, C), got {y_true.shape} and {probs.shape}.")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must be a 0/1 matrix (one column per class).")
    if y_true.sum() == 0:
        raise ValueError("y_true has no positive label; average precision is undefined.")
    return y_true, probs


def evaluate(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The round's test metrics: ``accuracy`` and ``macro_recall`` (multiclass), or ``pooled_ap``, ``mean_ap``
    and ``accuracy`` (exact match of the 0.5-thresholded label set) for multi-label targets."""
    y_true = np.asarray(y_true)
    if y_true.ndim == 1:
        return {"accuracy": accuracy(y_true, probs), "macro_recall": macro_recall(y_true, probs)}
    exact = float(np.mean(((np.asarray(probs) >= 0.5) == (y_true == 1)).all(axis=1)))
    return {"pooled_ap": pooled_ap(y_true, probs), "mean_ap": mean_ap(y_true, probs), "accuracy": exact}
