"""Training a Keras classifier on the labeled set, under any ``tf.distribute`` strategy.

Inputs come from a ``tf.data`` pipeline sized by a *per-replica* batch: the global batch is per-replica ×
replicas, as in the paper (48 per TPU core × 128 cores = 6,144). Batches are full (``drop_remainder``, shapes
static, as TPUs need): the shuffled labeled set repeats, so a last partial batch is topped up from the next
pass instead of being dropped.

Examples
--------
>>> from cmal.data import load_dataset
>>> from cmal.models import build_model
>>> from cmal.training import fit
>>> ds = load_dataset("digits")
>>> model = build_model("small-cnn", ds.image_shape, ds.n_classes, random_state=0)
>>> info = fit(model, ds.x_pool[:200], ds.y_pool[:200], min_steps=50, random_state=0)
>>> info["steps"] >= 50, info["global_batch_size"]
(True, 32)
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cmal import _tf
from cmal._validation import check_int, check_positive_float

__all__ = ["PRESETS", "TrainConfig", "compile_model", "epoch_callback", "fit", "preset", "train_model"]


@dataclass(frozen=True)
class TrainConfig:
    """How each round's model is trained.

    Attributes
    ----------
    batch_size : int
        Examples per replica per step (global batch = batch_size × replicas).
    epochs : int
        Minimum number of passes over the labeled set.
    min_steps : int
        Minimum number of gradient steps: a seed model trained for only ~20 steps embeds the pool too poorly to
        cluster.
    optimizer : {"adam", "sgd"}
    learning_rate, momentum : float
    early_stopping_patience : int or None
        Stop when the validation loss has not improved for this many epochs (best weights restored); a
        ``validation_fraction`` of the labeled set is held out for it (at least 10 examples are needed).
    validation_fraction : float
    warm_start : bool
        Start each round from the previous round's weights instead of from scratch (the paper's protocol).
    mixed_precision : "auto", None, "mixed_bfloat16" or "mixed_float16"
        ``"auto"``: bfloat16 on TPU, float16 on GPU, float32 on CPU.
    """

    batch_size: int = 32
    epochs: int = 10
    min_steps: int = 300
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.0
    early_stopping_patience: int | None = None
    validation_fraction: float = 0.1
    warm_start: bool = False
    mixed_precision: str | None = "auto"

    def validate(self) -> TrainConfig:
        check_int(self.batch_size, "batch_size", minimum=1)
        check_int(self.epochs, "epochs", minimum=1)
        check_int(self.min_steps, "min_steps", minimum=0)
        check_positive_float(self.learning_rate, "learning_rate")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}.")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}.")
        if self.early_stopping_patience is not None:
            check_int(self.early_stopping_patience, "early_stopping_patience", minimum=1)
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}.")
        return self


#: Training presets by name. The paper's settings where it states them. Not stated, hence not guessed: the
#: momentum and the exact form of the Open Images "logarithmic" decay of the learning rate every 5e8 examples
#: (not implemented).
PRESETS: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    # CIFAR10/100, SVHN with VGG16: SGD, learning rate 0.001, batch size 100.
    "paper-cifar": TrainConfig(batch_size=100, optimizer="sgd", learning_rate=1e-3),
    # Open Images with ResNet-101 on TPU v4: 48 examples per core, initial learning rate 1e-4, bfloat16.
    "paper-openimages": TrainConfig(batch_size=48, optimizer="sgd", learning_rate=1e-4, mixed_precision="auto"),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A named :class:`TrainConfig` from ``PRESETS``, with fields overridden."""
    if name not in PRESETS:
        raise ValueError(f"Unknown training preset {name!r}; choose one of {', '.join(sorted(PRESETS))}.")
    return dataclasses.replace(PRESETS[name], **overrides).validate()


def epoch_callback(fn: Callable[[int, dict[str, float]], None]) -> Any:
    """A Keras callback calling ``fn(epoch, logs)`` after every epoch, logs as plain floats."""
    keras = _tf.keras()
    return keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: fn(int(epoch), {k: float(v) for k, v in (logs or {}).items()})
    )


def _stop_callback(stop_event: threading.Event) -> Any:
    # Keras ships no types: mypy takes a base class from an Any-typed name, not from attributes of a local.
    Callback: Any = _tf.keras().callbacks.Callback

    class StopWhenSet(Callback):
        # Checked after every batch so that a cancel from the notebook takes effect within one step.
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if stop_event.is_set():
                self.model.stop_training = True

    return StopWhenSet()


def compile_model(
    model: Any, *, learning_rate: float = 1e-3, multilabel: bool = False, optimizer: str = "adam", momentum: float = 0.0
) -> Any:
    """Compile with Adam or SGD and cross-entropy (sparse categorical, or binary for multi-label)."""
    keras = _tf.keras()
    learning_rate = check_positive_float(learning_rate, "learning_rate")
    opt = (
        keras.optimizers.Adam(learning_rate)
        if optimizer == "adam"
        else keras.optimizers.SGD(learning_rate, momentum=momentum)
    )
    loss = "binary_crossentropy" if multilabel else "sparse_categorical_crossentropy"
    metrics = ["binary_accuracy"] if multilabel else ["accuracy"]
    model.compile(optimizer=opt, loss=loss, metrics=metrics)
    return model


def _config(config: TrainConfig | None, overrides: dict[str, Any]) -> TrainConfig:
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig (see cmal.training.preset), got {type(config).__name__}.")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(
            f"Unknown training option(s) {sorted(unknown)}; TrainConfig has "
            f"{[f.name for f in dataclasses.fields(TrainConfig)]}."
        )
    return dataclasses.replace(config, **overrides).validate()


def fit(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig | None = None,
    *,
    strategy: Any = None,
    random_state: int | None = None,
    callbacks: list[Any] | None = None,
    stop_event: threading.Event | None = None,
    verbose: int = 0,
    **overrides: Any,
) -> dict[str, Any]:
    """Train ``model`` (built under ``strategy.scope()`` when a strategy is given) on ``(x, y)``.

    Parameters
    ----------
    model : keras.Model
        Compiled here (inside the strategy's scope) if it is not compiled yet.
    x : array (n, ...); y : array (n,) of class ids, or (n, C) 0/1 for multi-label
    config : TrainConfig, optional
        Defaults to ``TrainConfig()``; keyword ``overrides`` replace fields (``epochs=3``, ...).
    strategy : tf.distribute.Strategy, optional
        Defaults to the current one (``tf.distribute.get_strategy()``).
    random_state : int, optional
        Seeds the shuffling, the validation split and Keras.
    callbacks : list of keras callbacks
    stop_event : threading.Event, optional
        Set it (from another thread) to stop training after the current step.

    Returns
    -------
    dict with ``epochs``, ``steps``, ``global_batch_size``, ``batch_size`` (per replica), ``replicas``,
    ``history`` (per-epoch lists), ``stopped_early`` and ``cancelled``.
    """
    tf = _tf.tensorflow()
    keras = _tf.keras()
    config = _config(config, overrides)
    x, y = np.asarray(x), np.asarray(y)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must have the same non-zero number of rows, got {x.shape[0]} and {y.shape[0]}.")
    strategy = strategy or tf.distribute.get_strategy()
    if random_state is not None:
        keras.utils.set_random_seed(check_int(random_state, "random_state", minimum=0))
    if not model.compiled:
        with strategy.scope():
            compile_model(
                model,
                learning_rate=config.learning_rate,
                multilabel=y.ndim == 2,
                optimizer=config.optimizer,
                momentum=config.momentum,
            )
    rng = np.random.default_rng(random_state)
    validation = None
    cbs = list(callbacks or [])
    if config.early_stopping_patience is not None:
        n_val = int(round(config.validation_fraction * len(x)))
        if n_val < 10 or len(x) - n_val < 1:
            raise ValueError(
                f"early stopping needs at least 10 validation examples; {len(x)} labeled examples "
                f"x validation_fraction={config.validation_fraction} gives {n_val}."
            )
        perm = rng.permutation(len(x))
        val, train = perm[:n_val], perm[n_val:]
        validation = (x[val], y[val])
        x, y = x[train], y[train]
        cbs.append(keras.callbacks.EarlyStopping(patience=config.early_stopping_patience, restore_best_weights=True))
    if stop_event is not None:
        cbs.append(_stop_callback(stop_event))
    replicas = int(strategy.num_replicas_in_sync)
    global_batch = config.batch_size * replicas
    steps_per_epoch = math.ceil(len(x) / global_batch)
    epochs = max(config.epochs, math.ceil(config.min_steps / steps_per_epoch))
    seed = int(rng.integers(2**31))
    data = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(global_batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    val_data = None
    if validation is not None:
        val_data = tf.data.Dataset.from_tensor_slices(validation).batch(global_batch)
    hist = model.fit(
        data,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=val_data,
        shuffle=False,
        callbacks=cbs,
        verbose=verbose,
    )
    ran = len(next(iter(hist.history.values()), []))
    return {
        "epochs": ran,
        "steps": ran * steps_per_epoch,
        "global_batch_size": global_batch,
        "batch_size": config.batch_size,
        "replicas": replicas,
        "history": {k: [float(v) for v in vals] for k, vals in hist.history.items()},
        "stopped_early": validation is not None and ran < epochs,
        "cancelled": bool(stop_event is not None and stop_event.is_set()),
    }


def train_model(
    build: Callable[[], Any],
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig | None = None,
    *,
    strategy: Any = None,
    random_state: int | None = None,
    initial_weights: list[Any] | None = None,
    callbacks: list[Any] | None = None,
    stop_event: threading.Event | None = None,
    **overrides: Any,
) -> tuple[Any, dict[str, Any]]:
    """Build a model inside the strategy's scope (under the mixed-precision policy) and :func:`fit` it.

    ``initial_weights`` (e.g. the previous round's ``model.get_weights()``) are loaded when
    ``config.warm_start`` is true; otherwise every round starts from fresh weights seeded by ``random_state``.
    Returns ``(model, info)``.
    """
    tf = _tf.tensorflow()
    keras = _tf.keras()
    from cmal.distribute import mixed_precision_policy

    config = _config(config, overrides)
    strategy = strategy or tf.distribute.get_strategy()
    policy = mixed_precision_policy(strategy, config.mixed_precision)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        with strategy.scope():
            if random_state is not None:
                keras.utils.set_random_seed(check_int(random_state, "random_state", minimum=0))
            model = build()
            if config.warm_start and initial_weights is not None:
                model.set_weights(initial_weights)
            compile_model(
                model,
                learning_rate=config.learning_rate,
                multilabel=np.ndim(y) == 2,
                optimizer=config.optimizer,
                momentum=config.momentum,
            )
    finally:
        keras.mixed_precision.set_global_policy(previous)
    info = fit(
        model, x, y, config, strategy=strategy, random_state=random_state, callbacks=callbacks, stop_event=stop_event
    )
    info["mixed_precision"] = policy
    return model, info
