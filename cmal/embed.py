"""Batched inference over a pool: penultimate-layer embeddings and class probabilities.

Examples
--------
>>> import numpy as np
>>> from cmal.models import build_model
>>> from cmal.embed import embed, predict_proba
>>> model = build_model("small-cnn", (8, 8, 1), 10, random_state=0)
>>> x = np.zeros((5, 8, 8, 1), dtype="float32")
>>> embed(model, x, progress=False).shape, predict_proba(model, x, progress=False).shape
((5, 128), (5, 10))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cmal._validation import check_int

__all__ = ["embed", "predict_proba"]


def _batched(model: Any, x: np.ndarray, batch_size: int, desc: str, progress: bool) -> np.ndarray:
    """Run ``model`` over ``x`` batch by batch into one preallocated float32 array, with a progress bar."""
    from tqdm.auto import tqdm

    batch_size = check_int(batch_size, "batch_size", minimum=1)
    n = len(x)
    if n == 0:
        raise ValueError("x is empty; pass at least one example.")
    out = None
    with tqdm(total=n, desc=desc, unit="ex", disable=not progress, leave=False) as bar:
        for start in range(0, n, batch_size):
            # predict_on_batch reuses one compiled function; model.predict would rebuild a tf.data pipeline.
            y = np.asarray(model.predict_on_batch(np.asarray(x[start:start + batch_size])), dtype=np.float32)
            if out is None:
                out = np.empty((n, *y.shape[1:]), dtype=np.float32)
            out[start:start + len(y)] = y
            bar.update(len(y))
    return out


def embed(model: Any, x: np.ndarray, *, batch_size: int = 1024, progress: bool = True) -> np.ndarray:
    """Penultimate-layer embeddings of ``x``.

    Parameters
    ----------
    model : keras.Model
        A classifier with a layer named ``"embedding"`` (every cmal builder has one), or an embedding model.
    x : array (n, ...)
    batch_size : int
        Examples per forward pass; memory holds one batch of inputs plus the (n, d) output.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    ndarray of shape (n, d), float32
    """
    from cmal.models import EMBEDDING_LAYER, embedding_model

    names = {layer.name for layer in model.layers}
    sub = embedding_model(model) if EMBEDDING_LAYER in names and model.output_names[-1:] != [EMBEDDING_LAYER] \
        else model
    return _batched(sub, x, batch_size, "embed", progress)


def predict_proba(model: Any, x: np.ndarray, *, batch_size: int = 1024, progress: bool = False) -> np.ndarray:
    """Class probabilities of ``x``, shape (n, C), float32."""
    return _batched(model, x, batch_size, "predict", progress)
