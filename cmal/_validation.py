"""Input checks shared by every public entry point.

Each check raises ``ValueError`` with one message that names the argument and says how to fix it, so
that the CLI can print it as a single line and a notebook user sees what to change.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = [
    "as_generator",
    "check_finite_matrix",
    "check_indices",
    "check_int",
    "check_labels",
    "check_magnitude",
    "nonzero_row_norms",
    "check_positive_float",
    "check_probabilities",
]

# Rows of a softmax output sum to 1 up to float32 rounding; 1e-3 accepts float16/bfloat16 outputs too.
_SUM_TOLERANCE = 1e-3


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an ``int`` after checking it is an integer within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}.")
    return value


def check_positive_float(value: Any, name: str) -> float:
    """Return ``value`` as a finite ``float`` > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}.")
    return value


def check_finite_matrix(x: Any, name: str, *, min_rows: int = 1, check_finite: bool = True) -> np.ndarray:
    """Return ``x`` as a 2-D float array with no NaN or inf.

    Integer and float32 inputs keep their dtype when possible: float32 embeddings stay float32 so a pool
    of millions of rows is not silently doubled in memory.
    """
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D with shape (n_samples, n_features), got shape {arr.shape}; "
            "reshape it, e.g. x.reshape(len(x), -1)."
        )
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} row(s), got {arr.shape[0]}.")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column, got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if check_finite:
        # Fast path: a NaN or inf anywhere makes the total non-finite; only then (or on float overflow of the
        # total) look element by element.
        if not np.isfinite(arr.sum(dtype=np.float64)):
            _raise_if_not_finite(arr, name)
    return arr


def _raise_if_not_finite(arr: np.ndarray, name: str) -> None:
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr).all(axis=1)))
        raise ValueError(
            f"{name} contains NaN or inf in {bad} row(s); remove or impute those rows "
            "(a diverged model gives NaN outputs: retrain it with a lower learning rate)."
        )


# Largest |value| for which pairwise distances cannot overflow: float64 squared differences (summed over up to
# 10^6 dimensions) stay below 1.8e308; float32 squared norms (kNN search, CoreSet, BADGE) below 3.4e38.
FLOAT64_DISTANCE_MAX_ABS = 1e150
FLOAT32_DISTANCE_MAX_ABS = 1e15


def check_magnitude(x: np.ndarray, limit: float, what: str, name: str = "embeddings") -> None:
    """Refuse values so large that ``what``'s squared distances would overflow (and make different points look
    identical) with a message saying how to fix it."""
    top = float(np.max(np.abs(x))) if x.size else 0.0
    if top > limit:
        raise ValueError(
            f"{name} has values up to {top:.3g}; {what} computes squared distances, which overflow "
            f"above about {limit:.0e}. Rescale the embeddings (e.g. divide by their largest norm)."
        )


def nonzero_row_norms(x: np.ndarray, name: str = "embeddings") -> np.ndarray:
    """Euclidean norm of every row, shape (n,); all-zero rows raise ``ValueError`` because cosine distance is
    undefined for them."""
    norms = np.linalg.norm(x, axis=1)
    zero = norms == 0
    if zero.any():
        raise ValueError(
            f"{name} has {int(zero.sum())} all-zero row(s) (first: {int(np.flatnonzero(zero)[0])}); cosine "
            "distance is undefined for them. Use metric='euclidean' or drop those rows."
        )
    return norms


def check_probabilities(probs: Any, name: str = "probs", *, multilabel: bool = False) -> np.ndarray:
    """Check a (n, C) matrix of class probabilities.

    Multiclass rows must be distributions (each entry in [0, 1], rows summing to 1); multi-label rows hold
    one independent probability per class (entries in [0, 1], no sum constraint).
    """
    # One pass fewer than the generic checks: NaN/inf show up in the row sums (multiclass) or in min/max.
    arr = check_finite_matrix(probs, name, check_finite=False)
    if not multilabel and arr.shape[1] < 2:
        raise ValueError(
            f"{name} must have at least 2 columns (one per class) for multiclass margins, got {arr.shape[1]}; "
            "pass multilabel=True for one sigmoid per class."
        )
    if multilabel:
        lo, hi = arr.min(), arr.max()
        if not (np.isfinite(lo) and np.isfinite(hi)):
            _raise_if_not_finite(arr, name)
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{name} must hold probabilities in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; "
                "apply sigmoid to logits first."
            )
        return arr
    # Multiclass: entries >= 0 with rows summing to 1 are also <= 1, so no max pass is needed.
    # float32 row sums are exact enough for a 1e-3 tolerance.
    # A matrix-vector product sums the rows several times faster than a strided sum(axis=1) when there are few
    # classes; NaN and inf propagate through it.
    with np.errstate(over="ignore", invalid="ignore"):  # huge or NaN input: reported just below
        sums = arr @ np.ones(arr.shape[1], dtype=arr.dtype)
    if not np.isfinite(sums).all():
        _raise_if_not_finite(arr, name)
    lo = arr.min()
    if lo < 0:
        raise ValueError(
            f"{name} must hold probabilities in [0, 1], got values down to {lo:.4g}; "
            "apply softmax (multiclass) or sigmoid (multi-label) to logits first."
        )
    bad = np.abs(sums - 1.0) > _SUM_TOLERANCE
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        hi = arr.max()
        if hi <= 1 and arr.shape[0] > 1 and np.allclose(arr.sum(axis=0, dtype=np.float64), 1.0, atol=_SUM_TOLERANCE):
            # Columns, not rows, are distributions: the matrix came as (C, n), e.g. from a framework that
            # stores classes first. Softmax or sigmoid would be the wrong advice.
            raise ValueError(
                f"{name} looks transposed: its {arr.shape[1]} columns sum to 1, its rows do not. Probabilities "
                f"are one row per example, shape (n, C); pass the transpose (shape {arr.shape[::-1]})."
            )
        raise ValueError(
            f"{name} rows must sum to 1 (softmax outputs); {int(bad.sum())} row(s) do not, e.g. row {first} "
            f"sums to {sums[first]:.4g}. Apply softmax to logits, or pass multilabel=True for sigmoid outputs."
        )
    return arr


def check_indices(indices: Any, n: int, name: str) -> np.ndarray:
    """Return ``indices`` as a 1-D int64 array of distinct positions in ``[0, n)``."""
    arr = np.asarray(indices)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of pool indices, got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.isfinite(arr).all() and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer pool indices, got dtype {arr.dtype}.")
    arr = arr.astype(np.int64, copy=False)
    if arr.min() < 0 or arr.max() >= n:
        bad = arr[(arr < 0) | (arr >= n)][0]
        raise ValueError(f"{name} holds index {bad}, outside the pool [0, {n}); pass indices into the pool.")
    if np.unique(arr).size != arr.size:
        uniq, counts = np.unique(arr, return_counts=True)
        raise ValueError(
            f"{name} repeats index {uniq[counts > 1][0]}; each pool index may appear once (use np.unique)."
        )
    return arr


def check_labels(labels: Any, n: int, name: str = "clusters") -> np.ndarray:
    """Return a 1-D integer label vector of length ``n`` (e.g. cluster ids, one per pool row)."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D with one label per pool row, got shape {arr.shape}.")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but the pool has {n} rows; they must match.")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.isfinite(arr).all() and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer labels, got dtype {arr.dtype}.")
    return arr.astype(np.int64, copy=False)


def as_generator(random_state: Any) -> np.random.Generator:
    """Turn ``None``, an int, a ``SeedSequence`` or a ``Generator`` into a ``numpy.random.Generator``."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, np.random.SeedSequence):
        return np.random.default_rng(random_state)
    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral) or random_state < 0:
        raise ValueError(f"random_state must be None, a non-negative int or a numpy Generator, got {random_state!r}.")
    return np.random.default_rng(int(random_state))
