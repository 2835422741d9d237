"""Training a Keras classifier on the labeled set.

Examples
--------
>>> from cmal.data import load_dataset
>>> from cmal.models import build_model
>>> from cmal.training import fit
>>> ds = load_dataset("digits")
>>> model = build_model("small-cnn", ds.image_shape, ds.n_classes, random_state=0)
>>> history = fit(model, ds.x_pool[:200], ds.y_pool[:200], min_steps=50, random_state=0)
>>> history["steps"] >= 50
True
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from cmal import _tf
from cmal._validation import check_int, check_positive_float

__all__ = ["compile_model", "epoch_callback", "fit"]


def epoch_callback(fn: Callable[[int, dict[str, float]], None]) -> Any:
    """A Keras callback calling ``fn(epoch, logs)`` after every epoch, logs as plain floats."""
    keras = _tf.keras()
    return keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: fn(int(epoch), {k: float(v) for k, v in (logs or {}).items()}))


def compile_model(model: Any, *, learning_rate: float = 1e-3, multilabel: bool = False) -> Any:
    """Compile with Adam and cross-entropy (sparse categorical, or binary for multi-label)."""
    keras = _tf.keras()

    learning_rate = check_positive_float(learning_rate, "learning_rate")
    loss = "binary_crossentropy" if multilabel else "sparse_categorical_crossentropy"
    metrics = ["binary_accuracy"] if multilabel else ["accuracy"]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)
    return model


def fit(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    min_steps: int = 300,
    learning_rate: float = 1e-3,
    random_state: int | None = None,
    callbacks: list[Any] | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """Train ``model`` on ``(x, y)`` from its current weights.

    A tiny labeled set gives few steps per epoch; a seed model trained for 20 steps embeds the pool too
    poorly to cluster, so training runs ``max(epochs, ceil(min_steps / steps_per_epoch))`` epochs.

    Parameters
    ----------
    model : keras.Model
        Compiled here if it was not compiled yet.
    x : array (n, ...), y : array (n,)
    epochs : int
        Minimum number of epochs.
    batch_size : int
    min_steps : int
        Minimum number of gradient steps.
    learning_rate : float
        Adam's learning rate when the model is compiled here.
    random_state : int, optional
        Seeds the shuffling (and anything else Keras draws).
    callbacks : list of keras callbacks, optional
    verbose : int

    Returns
    -------
    dict with ``epochs``, ``steps`` and ``history`` (per-epoch loss/metrics lists).
    """
    keras = _tf.keras()

    epochs = check_int(epochs, "epochs", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    min_steps = check_int(min_steps, "min_steps", minimum=0)
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must have the same non-zero number of rows, got {x.shape[0]} and {y.shape[0]}.")
    if not model.compiled:
        compile_model(model, learning_rate=learning_rate, multilabel=y.ndim == 2)
    if random_state is not None:
        keras.utils.set_random_seed(check_int(random_state, "random_state", minimum=0))
    steps_per_epoch = math.ceil(x.shape[0] / batch_size)
    epochs = max(epochs, math.ceil(min_steps / steps_per_epoch))
    hist = model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=verbose,
                     callbacks=callbacks or [])
    return {"epochs": epochs, "steps": epochs * steps_per_epoch,
            "history": {k: [float(v) for v in vals] for k, vals in hist.history.items()}}
