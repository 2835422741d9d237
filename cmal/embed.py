"""Batched inference over a pool: penultimate-layer embeddings and class probabilities.

Two paths, same results:

- no strategy (or the default one): ``predict_on_batch`` over numpy slices, one compiled function reused;
- under a ``tf.distribute`` strategy (several GPUs, TPU cores, or mirrored CPUs in the tests): a ``tf.data``
  generator feeds one global batch at a time (per-replica batch × replicas, the last one padded so shapes stay
  static for TPUs), each replica runs its share and the outputs are gathered back in pool order.

Either way at most one batch of inputs is in flight beyond the output, and with ``out=PATH.npy`` the output
itself is a memory-mapped ``.npy`` written in place (atomically renamed when complete), so a pool larger than
memory can be embedded; the input ``x`` may itself be a ``np.memmap``.

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

import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from cmal._validation import check_int
from cmal.state import NpyOutput

__all__ = ["embed", "predict_proba"]


def _run(
    model: Any, x: Any, batch_size: int, desc: str, progress: bool, strategy: Any, out: str | os.PathLike | None
) -> np.ndarray:
    from tqdm.auto import tqdm

    batch_size = check_int(batch_size, "batch_size", minimum=1)
    n = len(x)
    if n == 0:
        raise ValueError("x is empty; pass at least one example.")
    dim = tuple(int(d) for d in model.output_shape[1:])
    output = NpyOutput(out, (n, *dim))
    result = output.array
    try:
        with tqdm(total=n, desc=desc, unit="ex", disable=not progress, leave=False) as bar:
            if strategy is None:
                for start in range(0, n, batch_size):
                    # predict_on_batch reuses one compiled function; model.predict rebuilds a tf.data pipeline.
                    y = model.predict_on_batch(np.asarray(x[start : start + batch_size], dtype=np.float32))
                    result[start : start + len(y)] = np.asarray(y, dtype=np.float32)
                    bar.update(len(y))
            else:
                _distributed(model, x, batch_size, strategy, result, bar)
    except BaseException:
        del result
        output.discard()
        raise
    del result
    return output.finish()


def _distributed(model: Any, x: Any, batch_size: int, strategy: Any, result: np.ndarray, bar: Any) -> None:
    from cmal._tf import tensorflow

    tf = tensorflow()

    n = len(x)
    global_batch = batch_size * strategy.num_replicas_in_sync
    n_batches = math.ceil(n / global_batch)
    shape = (global_batch, *x.shape[1:])

    def batches() -> Iterator[np.ndarray]:
        for i in range(n_batches):
            chunk = np.asarray(x[i * global_batch : (i + 1) * global_batch], dtype=np.float32)
            if len(chunk) < global_batch:  # pad the last batch: static shapes for TPUs
                chunk = np.concatenate([chunk, np.zeros((global_batch - len(chunk), *shape[1:]), np.float32)])
            yield chunk

    data = tf.data.Dataset.from_generator(batches, output_signature=tf.TensorSpec(shape, tf.float32)).prefetch(1)
    # Each global batch is split across replicas in order; gather concatenates them back in replica order.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    dist = strategy.experimental_distribute_dataset(data.with_options(options))

    @tf.function
    def step(batch: Any) -> Any:
        per_replica = strategy.run(lambda b: model(b, training=False), args=(batch,))
        return strategy.gather(per_replica, axis=0)

    for i, batch in enumerate(dist):
        start = i * global_batch
        take = min(global_batch, n - start)
        result[start : start + take] = np.asarray(step(batch), dtype=np.float32)[:take]
        bar.update(take)


def embed(
    model: Any,
    x: Any,
    *,
    batch_size: int = 1024,
    progress: bool = True,
    strategy: Any = None,
    out: str | os.PathLike | None = None,
    layer: str | int | None = None,
) -> np.ndarray:
    """Penultimate-layer embeddings of ``x``.

    Parameters
    ----------
    model : keras.Model
        A classifier with a layer named ``"embedding"`` (every cmal builder has one), or an embedding model.
    x : array or memmap (n, ...)
    batch_size : int
        Examples per forward pass (per replica under a strategy).
    progress : bool
        Show a tqdm progress bar.
    strategy : tf.distribute.Strategy, optional
        Run distributed (the model must have been built under its scope).
    out : path ending in .npy, optional
        Write the embeddings to this memory-mapped file and return it opened read-only (for large pools).
    layer : str or int, optional
        The layer whose output is the embedding (a user model's ``embedding_layer``), by name or by position in
        ``model.layers``; default: the layer named ``"embedding"`` if there is one, else ``model``'s own output.

    Returns
    -------
    ndarray (or read-only memmap) of shape (n, d), float32
    """
    from cmal.models import EMBEDDING_LAYER, embedding_model

    names = {lay.name for lay in model.layers}
    if layer is not None:
        sub = embedding_model(model, layer)
    else:
        sub = embedding_model(model) if EMBEDDING_LAYER in names else model
    return _run(sub, x, batch_size, "embed", progress, strategy, out)


def predict_proba(
    model: Any,
    x: Any,
    *,
    batch_size: int = 1024,
    progress: bool = False,
    strategy: Any = None,
    out: str | os.PathLike | None = None,
) -> np.ndarray:
    """Class probabilities of ``x``, shape (n, C), float32 (same batching, strategy and ``out`` as :func:`embed`)."""
    return _run(model, x, batch_size, "predict", progress, strategy, out)
