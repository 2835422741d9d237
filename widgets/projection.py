"""2-D projections of embeddings for display, cached on disk per embedding matrix.

UMAP (umap-learn) is the default; its first call in a process spends about a minute compiling with numba,
and a 100k-point projection takes minutes on 2 cores, so results are cached by a hash of the embedding
bytes and the parameters. PCA is the fallback when umap-learn is missing and the quick preview otherwise.

Examples
--------
>>> import numpy as np
>>> from cmal_widgets.projection import project
>>> xy = project(np.random.default_rng(0).normal(size=(50, 8)), method="pca", cache_dir=None)
>>> xy.shape
(50, 2)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

import numpy as np

from cmal._validation import check_finite_matrix
from cmal.state import save_npy

__all__ = ["default_cache_dir", "project"]

Method = Literal["umap", "pca", "auto"]


def default_cache_dir() -> Path:
    """``$CMAL_CACHE_DIR`` or ``~/.cache/cmal``, where projections are kept."""
    return Path(os.environ.get("CMAL_CACHE_DIR", Path.home() / ".cache" / "cmal")) / "projections"


def _key(x: np.ndarray, method: str, random_state: int, n_neighbors: int, min_dist: float) -> str:
    h = hashlib.sha256()
    h.update(f"{x.shape}|{x.dtype}|{method}|{random_state}|{n_neighbors}|{min_dist}".encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()[:24]


def _umap_available() -> bool:
    # Found without importing: umap-learn imports TensorFlow (parametric UMAP), which would print TensorFlow's
    # start-up lines unfiltered; the import itself goes through cmal's quiet TensorFlow import (see project()).
    import importlib.util

    return importlib.util.find_spec("umap") is not None


def project(
    embeddings: np.ndarray,
    *,
    method: Method = "auto",
    random_state: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    cache_dir: str | os.PathLike | None | Literal["default"] = "default",
) -> np.ndarray:
    """Project ``embeddings`` (n, d) to 2-D for plotting.

    Parameters
    ----------
    embeddings : array (n, d)
    method : {"auto", "umap", "pca"}
        ``"auto"`` is UMAP when umap-learn is installed, else PCA.
    random_state : int
        Seeds UMAP (and makes it single-threaded, hence reproducible).
    n_neighbors, min_dist : UMAP parameters.
    cache_dir : path, "default" or None
        Where projections are cached (``None`` disables the cache).

    Returns
    -------
    ndarray of shape (n, 2), float32
    """
    x = check_finite_matrix(embeddings, "embeddings")
    if method not in ("auto", "umap", "pca"):
        raise ValueError(f"method must be 'auto', 'umap' or 'pca', got {method!r}.")
    if method == "auto":
        method = "umap" if _umap_available() else "pca"
    if method == "umap" and not _umap_available():
        raise ValueError("method='umap' needs umap-learn: pip install umap-learn (or use method='pca').")
    folder = default_cache_dir() if cache_dir == "default" else (Path(cache_dir) if cache_dir else None)
    path = folder / f"{_key(x, method, random_state, n_neighbors, min_dist)}.npy" if folder else None
    if path is not None and path.is_file():
        cached = np.load(path, allow_pickle=False)
        if cached.shape == (x.shape[0], 2):
            return cached
    if x.shape[0] < 3 or x.shape[1] < 2:
        xy = np.zeros((x.shape[0], 2), dtype=np.float32)
        xy[:, : min(2, x.shape[1])] = x[:, :2]
    elif method == "pca":
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=random_state).fit_transform(x).astype(np.float32)
    else:
        from cmal._tf import tensorflow

        tensorflow()  # before umap, which imports TensorFlow itself: cmal's import drops its start-up noise
        import umap

        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=min(n_neighbors, x.shape[0] - 1),
            min_dist=min_dist,
            random_state=random_state,
            n_jobs=1,
        )
        xy = reducer.fit_transform(x).astype(np.float32)
    if path is not None:
        save_npy(path, xy)
    return xy
