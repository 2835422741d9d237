"""Uncertainty scores computed from predicted probabilities.

All functions take a probability matrix of shape ``(n, C)`` and return one float per row, shape ``(n,)``.
For :func:`margin`, *smaller* means more uncertain; for :func:`least_confidence` and :func:`entropy`,
*larger* means more uncertain. :func:`uncertainty_order` turns any of them into a "most uncertain
first" key so that strategies can treat them alike.

Examples
--------
>>> import numpy as np
>>> from cmal.uncertainty import margin
>>> margin(np.array([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]])).round(2)
array([0.2 , 0.85])
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np

from cmal._validation import check_probabilities

__all__ = ["entropy", "least_confidence", "margin", "score", "score_validated", "uncertainty_order", "SCORES"]

Aggregate = Literal["mean", "min"]


def margin(probs: np.ndarray, *, multilabel: bool = False, aggregate: Aggregate = "mean") -> np.ndarray:
    """Margin score: small means uncertain.

    Parameters
    ----------
    probs : array of shape (n, C)
        Softmax probabilities (multiclass) or one sigmoid probability per class (``multilabel=True``).
    multilabel : bool
        Multiclass: ``p_1 - p_2``, the gap between the two largest probabilities.
        Multi-label: per class ``|2 p_c - 1|`` (how far the probability is from 0.5, rescaled to [0, 1]),
        aggregated over classes.
    aggregate : {"mean", "min"}
        How per-class multi-label margins are combined. The paper does not say which it used on Open Images;
        ``"mean"`` is the default, ``"min"`` scores an image by its single most uncertain class.

    Returns
    -------
    ndarray of shape (n,), values in [0, 1].
    """
    return _margin(check_probabilities(probs, multilabel=multilabel), multilabel, aggregate)


def _margin(p: np.ndarray, multilabel: bool, aggregate: str) -> np.ndarray:
    if multilabel:
        per_class = np.abs(2.0 * p - 1.0)
        if aggregate == "mean":
            return per_class.mean(axis=1)
        if aggregate == "min":
            return per_class.min(axis=1)
        raise ValueError(f"aggregate must be 'mean' or 'min', got {aggregate!r}.")
    # np.partition finds the two largest per row in O(C), cheaper than a full sort for many classes.
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def least_confidence(probs: np.ndarray, *, multilabel: bool = False) -> np.ndarray:
    """``1 - max_c p_c`` (multiclass) or the mean over classes of ``1 - max(p_c, 1 - p_c)`` (multi-label).

    Large means uncertain. Returns shape (n,).
    """
    return _least_confidence(check_probabilities(probs, multilabel=multilabel), multilabel)


def _least_confidence(p: np.ndarray, multilabel: bool) -> np.ndarray:
    if multilabel:
        return (1.0 - np.maximum(p, 1.0 - p)).mean(axis=1)
    return 1.0 - p.max(axis=1)


def entropy(probs: np.ndarray, *, multilabel: bool = False) -> np.ndarray:
    """Shannon entropy in nats (multiclass) or the mean binary entropy over classes (multi-label).

    Large means uncertain. Returns shape (n,).
    """
    return _entropy(check_probabilities(probs, multilabel=multilabel), multilabel)


def _entropy(p: np.ndarray, multilabel: bool) -> np.ndarray:
    # 0 * log(0) is 0 by continuity; xlogy gives exactly that without warnings.
    from scipy.special import xlogy

    p = p.astype(np.float64, copy=False)
    if multilabel:
        return -(xlogy(p, p) + xlogy(1.0 - p, 1.0 - p)).mean(axis=1)
    return -xlogy(p, p).sum(axis=1)


#: The uncertainty scores by name. Smaller margins, but larger least-confidence and entropy scores, are more
#: uncertain; :func:`uncertainty_order` sorts any of them most uncertain first.
SCORES = {"margin": margin, "least-confidence": least_confidence, "entropy": entropy}
_SMALL_IS_UNCERTAIN = {"margin": True, "least-confidence": False, "entropy": False}


def score(
    probs: np.ndarray, kind: str = "margin", *, multilabel: bool = False, aggregate: Aggregate = "mean"
) -> np.ndarray:
    """Compute the uncertainty score named ``kind`` (one of ``SCORES``). Returns shape (n,)."""
    if kind not in SCORES:
        raise ValueError(f"kind must be one of {sorted(SCORES)}, got {kind!r}.")
    return score_validated(
        check_probabilities(probs, multilabel=multilabel), kind, multilabel=multilabel, aggregate=aggregate
    )


def score_validated(
    probs: np.ndarray, kind: str = "margin", *, multilabel: bool = False, aggregate: Aggregate = "mean"
) -> np.ndarray:
    """:func:`score` for probabilities already checked (e.g. held by a ``PoolState``): no second validation
    pass, which at 10^6 rows costs as much as the score itself."""
    if kind == "margin":
        return _margin(probs, multilabel, aggregate)
    if kind == "least-confidence":
        return _least_confidence(probs, multilabel)
    if kind == "entropy":
        return _entropy(probs, multilabel)
    raise ValueError(f"kind must be one of {sorted(SCORES)}, got {kind!r}.")


def score_chunked(
    probs: Any,
    kind: str = "margin",
    *,
    multilabel: bool = False,
    aggregate: Aggregate = "mean",
    chunk_rows: int = 1 << 18,
    out: str | os.PathLike | None = None,
    progress: bool = False,
) -> np.ndarray:
    """:func:`score` over a pool too large for memory, ``chunk_rows`` rows at a time.

    Parameters
    ----------
    probs : array of shape (n, C)
        Typically a read-only ``np.memmap`` (``np.load(path, mmap_mode="r")``) written by
        :func:`cmal.embed.predict_proba` with ``out=``. Each chunk is validated as it is read.
    kind, multilabel, aggregate
        As for :func:`score`.
    chunk_rows : int
        Rows per chunk; memory is about ``chunk_rows * C * 8`` bytes.
    out : path, optional
        Write the scores to this ``.npy`` (float32, memory-mapped, written atomically); else return them in
        memory (``n * 4`` bytes: 4 MB per million rows).

    Returns
    -------
    ndarray of shape (n,), float32

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5]])
    >>> [round(float(v), 2) for v in score_chunked(p, chunk_rows=2)]
    [0.8, 0.2, 0.0]
    """
    from tqdm.auto import tqdm

    from cmal._validation import check_int

    if kind not in SCORES:
        raise ValueError(f"kind must be one of {sorted(SCORES)}, got {kind!r}.")
    chunk_rows = check_int(chunk_rows, "chunk_rows", minimum=1)
    if np.ndim(probs) != 2:
        raise ValueError(f"probs must be 2-D (n, C), got shape {np.shape(probs)}.")
    from cmal.state import NpyOutput

    n = int(np.shape(probs)[0])
    output = NpyOutput(out, (n,))
    try:
        for start in tqdm(range(0, n, chunk_rows), desc=f"{kind} in chunks", disable=not progress, leave=False):
            block = np.asarray(probs[start : start + chunk_rows])
            output.array[start : start + len(block)] = score(block, kind, multilabel=multilabel, aggregate=aggregate)
    except BaseException:
        output.discard()
        raise
    return output.finish()


def uncertainty_order(values: np.ndarray, kind: str = "margin") -> np.ndarray:
    """Return a key where *smaller means more uncertain*, whatever the score's own direction. Shape (n,)."""
    if kind not in SCORES:
        raise ValueError(f"kind must be one of {sorted(SCORES)}, got {kind!r}.")
    values = np.asarray(values)  # keep float32 as float32: at 10^6 rows a float64 copy is measurable
    return values if _SMALL_IS_UNCERTAIN[kind] else -values
