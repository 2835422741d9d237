"""Training options: presets, per-replica batches, early stopping, warm start, cancellation."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cmal.training import PRESETS, TrainConfig, fit, preset, train_model

pytestmark = pytest.mark.slow


def build():
    from cmal.models import build_model

    return build_model("small-cnn", (8, 8, 1), 10)


def test_presets_and_validation():
    assert preset("paper-cifar").batch_size == 100 and preset("paper-cifar").optimizer == "sgd"
    assert preset("paper-openimages", epochs=3).epochs == 3 and PRESETS["paper-openimages"].learning_rate == 1e-4
    with pytest.raises(ValueError, match="Unknown training preset"):
        preset("resnet")
    for bad, match in [
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"batch_size": 0}, "batch_size"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"momentum": 1.0}, "momentum"),
    ]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad).validate()
    with pytest.raises(ValueError, match="Unknown training option"):
        fit(build(), np.zeros((4, 8, 8, 1)), np.zeros(4, int), epochs_total=3)


def test_step_arithmetic(digits):
    info = fit(build(), digits.x_pool[:100], digits.y_pool[:100], batch_size=16, epochs=2, min_steps=0, random_state=0)
    assert info["global_batch_size"] == 16 and info["replicas"] == 1
    assert info["steps"] == 2 * 7  # ceil(100 / 16) steps per epoch, last batch topped up, never dropped


def test_early_stopping_restores_best(digits):
    info = fit(
        build(),
        digits.x_pool[:300],
        digits.y_pool[:300],
        epochs=60,
        min_steps=0,
        early_stopping_patience=2,
        random_state=0,
    )
    assert "val_loss" in info["history"] and info["epochs"] <= 60
    with pytest.raises(ValueError, match="at least 10 validation"):
        fit(build(), digits.x_pool[:20], digits.y_pool[:20], early_stopping_patience=2)


def test_warm_start_loads_previous_weights(digits):
    first, _ = train_model(build, digits.x_pool[:100], digits.y_pool[:100], min_steps=5, epochs=1, random_state=0)
    weights = first.get_weights()
    # Zero steps of training would keep the weights exactly; one SGD step with a tiny rate keeps them close.
    warm, _ = train_model(
        build,
        digits.x_pool[:10],
        digits.y_pool[:10],
        warm_start=True,
        min_steps=1,
        epochs=1,
        optimizer="sgd",
        learning_rate=1e-9,
        random_state=1,
        initial_weights=weights,
    )
    cold, _ = train_model(
        build,
        digits.x_pool[:10],
        digits.y_pool[:10],
        warm_start=False,
        min_steps=1,
        epochs=1,
        optimizer="sgd",
        learning_rate=1e-9,
        random_state=1,
        initial_weights=weights,
    )
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(warm.get_weights(), weights))
    assert not all(np.allclose(a, b, atol=1e-6) for a, b in zip(cold.get_weights(), weights))


def test_stop_event_cancels(digits):
    stop = threading.Event()
    stop.set()
    info = fit(build(), digits.x_pool[:100], digits.y_pool[:100], epochs=50, min_steps=0, stop_event=stop)
    assert info["cancelled"] and info["epochs"] == 1
