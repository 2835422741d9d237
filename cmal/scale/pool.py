"""Embedding, predicting and scoring a pool over Dask partitions.

Inputs are ``.npy`` paths on storage every worker can read (a shared file system on a cluster; the local disk
for a ``LocalCluster``), memory-mapped by each task for its rows only, or in-memory arrays that are scattered
in row blocks. The model is a saved ``.keras`` file that each worker loads once and keeps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cmal._validation import check_int
from cmal.scale.client import resolve
from cmal.state import NpyOutput

__all__ = ["embed_pool", "predict_pool", "margins"]

# Models loaded by this worker process, by (path, modification time, layer): loaded once per worker.
_MODELS: dict[tuple[str, float, str | None], Any] = {}


def _worker_model(path: str, layer: str | None) -> Any:
    key = (path, os.path.getmtime(path), layer)
    if key not in _MODELS:
        from cmal._tf import keras
        from cmal.models import embedding_model

        model = keras().models.load_model(path, compile=False)
        _MODELS[key] = embedding_model(model, layer) if layer else model
    return _MODELS[key]


def _rows(source: Any, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of a ``.npy`` path, or a block that was scattered already (returned whole)."""
    if isinstance(source, str):
        return np.asarray(np.load(source, mmap_mode="r", allow_pickle=False)[start:stop])
    return np.asarray(source)


def _apply_block(
    model_path: str, layer: str | None, source: Any, start: int, stop: int, *, batch_size: int
) -> np.ndarray:
    from cmal.embed import predict_proba

    model = _worker_model(model_path, layer)
    x = _rows(source, start, stop)
    if layer:
        from cmal.embed import embed

        return embed(model, x, batch_size=batch_size, progress=False)
    return predict_proba(model, x, batch_size=batch_size, progress=False)


def _blocks(n: int, rows: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + rows)) for s in range(0, n, rows)]


def _source(x: Any) -> tuple[Any, int]:
    """(path string or array, number of rows) after checking the input."""
    if isinstance(x, (str, os.PathLike)):
        path = Path(x)
        if not path.is_file():
            raise ValueError(f"x: file {str(path)!r} does not exist.")
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        return str(path.resolve()), int(arr.shape[0])
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise ValueError(f"x must have one row per pool example (at least 2-D), got shape {arr.shape}.")
    return arr, int(arr.shape[0])


def _run(
    model_path: Any, layer: str | None, x: Any, client: Any, block_rows: int, batch_size: int, out: Any, progress: bool
) -> np.ndarray:
    from tqdm.auto import tqdm

    model_path = Path(model_path)
    if not model_path.is_file() or model_path.suffix != ".keras":
        raise ValueError(
            f"model must be the path of a saved .keras file, got {str(model_path)!r}; save it with "
            "model.save('model.keras')."
        )
    client = resolve(client)
    source, n = _source(x)
    futures, blocks = _submit_blocks(
        client, source, n, block_rows, _apply_block, str(model_path.resolve()), layer, batch_size=batch_size
    )
    from dask.distributed import as_completed

    index = {f.key: i for i, f in enumerate(futures)}
    output = None
    bar = tqdm(total=n, desc="embedding" if layer else "predicting", disable=not progress, leave=False)
    try:
        for fut in as_completed(futures):
            block = fut.result()
            start, stop = blocks[index[fut.key]]
            if output is None:  # the output's width and dtype are known from the first block
                output = NpyOutput(out, (n, *block.shape[1:]), block.dtype)
            output.array[start:stop] = block
            bar.update(stop - start)
            fut.release()
    except BaseException:
        if output is not None:
            output.discard()
        raise
    finally:
        bar.close()
    if output is None:  # no block: x has no rows, so the output's width and dtype are unknown
        raise ValueError("x has no rows; pass at least one pool example.")
    return output.finish()


def _submit_blocks(
    client: Any, source: Any, n: int, block_rows: int, fn: Any, *args: Any, **kwargs: Any
) -> tuple[list[Any], list[tuple[int, int]]]:
    """One task ``fn(*args, part, start, stop, **kwargs)`` per block of rows; ``part`` is the ``.npy`` path
    (each task reads its rows) or the block, scattered. Returns the futures and the blocks."""
    block_rows = check_int(block_rows, "block_rows", minimum=1)
    blocks = _blocks(n, block_rows)
    futures = [
        client.submit(
            fn,
            *args,
            source if isinstance(source, str) else client.scatter(source[start:stop]),
            start,
            stop,
            pure=False,
            **kwargs,
        )
        for start, stop in blocks
    ]
    return futures, blocks


def embed_pool(
    model: str | os.PathLike,
    x: Any,
    *,
    client: Any = None,
    layer: str = "embedding",
    block_rows: int = 8192,
    batch_size: int = 1024,
    out: str | os.PathLike | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Embeddings of every pool row, computed over Dask partitions; equals :func:`cmal.embed.embed`.

    Parameters
    ----------
    model : path to a saved ``.keras`` model
        Each worker loads it once (``cmal.session`` writes one per round).
    x : array of shape (n, ...) or path to a ``.npy``
        The pool. A path is read by each task for its own rows only (no copy of the pool is sent).
    client : dask.distributed.Client, optional
        Default: the current client, else a new local cluster (:func:`cmal.scale.client.connect`).
    layer : str
        The embedding layer (the penultimate layer of cmal's models).
    block_rows : int
        Rows per task.
    out : path, optional
        Write to this ``.npy`` as results arrive (memory-mapped, atomic rename at the end).

    Returns
    -------
    ndarray of shape (n, embedding_dim)
    """
    return _run(model, layer, x, client, block_rows, batch_size, out, progress)


def predict_pool(
    model: str | os.PathLike,
    x: Any,
    *,
    client: Any = None,
    block_rows: int = 8192,
    batch_size: int = 1024,
    out: str | os.PathLike | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Class probabilities of every pool row over Dask partitions; equals :func:`cmal.embed.predict_proba`."""
    return _run(model, None, x, client, block_rows, batch_size, out, progress)


def _score_block(kind: str, multilabel: bool, source: Any, start: int, stop: int) -> np.ndarray:
    from cmal.uncertainty import score

    return score(_rows(source, start, stop), kind, multilabel=multilabel).astype(np.float32)


def margins(
    probs: Any, *, client: Any = None, kind: str = "margin", multilabel: bool = False, block_rows: int = 1 << 18
) -> np.ndarray:
    """Uncertainty scores (margins by default) of a pool in chunks over Dask; shape (n,), float32.

    Equals :func:`cmal.uncertainty.score_chunked`. ``probs`` is an array or a ``.npy`` path read in chunks.
    """
    from cmal.uncertainty import SCORES

    if kind not in SCORES:
        raise ValueError(f"kind must be one of {sorted(SCORES)}, got {kind!r}.")
    client = resolve(client)
    source, n = _source(probs)
    futures, _ = _submit_blocks(client, source, n, block_rows, _score_block, kind, multilabel)
    return np.concatenate(client.gather(futures)) if futures else np.empty(0, dtype=np.float32)
