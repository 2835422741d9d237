"""Keras model builders and the embedding sub-model.

TensorFlow is imported inside the functions, so ``import cmal`` stays light. Every builder names its
penultimate layer ``"embedding"``: :func:`embedding_model` and :func:`cmal.embed.embed` read that layer.

Examples
--------
>>> from cmal.models import build_model, embedding_model
>>> model = build_model("small-cnn", input_shape=(8, 8, 1), n_classes=10, random_state=0)
>>> model.output_shape, embedding_model(model).output_shape
((None, 10), (None, 128))
"""

from __future__ import annotations

from typing import Any, Callable

from cmal import _tf
from cmal._validation import check_int

__all__ = ["EMBEDDING_LAYER", "available_models", "build_model", "check_model", "embedding_model", "small_cnn", "vgg16_style"]

EMBEDDING_LAYER = "embedding"


def _head(keras: Any, features: Any, n_classes: int, embedding_dim: int, multilabel: bool) -> Any:
    x = keras.layers.Dense(embedding_dim, activation="relu", name=EMBEDDING_LAYER)(features)
    # float32 output even under mixed precision: probabilities feed margins and losses.
    return keras.layers.Dense(n_classes, activation="sigmoid" if multilabel else "softmax",
                              dtype="float32", name="probs")(x)


def small_cnn(input_shape: tuple[int, ...], n_classes: int, *, embedding_dim: int = 128,
              multilabel: bool = False) -> Any:
    """Conv 16 -> conv 32 -> dense ``embedding_dim`` (the embedding) -> softmax.

    About 0.2 M parameters for 28x28 inputs; an epoch over 1,000 images takes well under a second on 2 CPU
    cores. Works for inputs from 8x8 (digits) upwards.
    """
    keras = _tf.keras()

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, _head(keras, x, n_classes, embedding_dim, multilabel), name="small_cnn")


def vgg16_style(input_shape: tuple[int, ...] = (32, 32, 3), n_classes: int = 10, *, embedding_dim: int = 512,
                multilabel: bool = False) -> Any:
    """The VGG16 layout the paper uses for CIFAR10/100 and SVHN (32x32 inputs).

    Thirteen 3x3 conv layers in five blocks (64, 128, 256, 512, 512 filters) with batch norm and max-pooling,
    then a dense ``embedding_dim`` layer (the embedding) and the output layer. About 15 M parameters: meant for
    a GPU or TPU, not for the CPU tests.
    """
    keras = _tf.keras()

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for filters, convs in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        for _ in range(convs):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.ReLU()(x)
        if x.shape[1] >= 2:  # keep small inputs valid: stop pooling at 1x1
            x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, _head(keras, x, n_classes, embedding_dim, multilabel), name="vgg16_style")


_BUILDERS: dict[str, Callable[..., Any]] = {"small-cnn": small_cnn, "vgg16": vgg16_style}


def available_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(_BUILDERS)


def check_model(name: str, input_shape: tuple[int, ...], n_classes: int, *, multilabel: bool = False) -> int:
    """Check, without TensorFlow, that :func:`build_model` can build ``name`` for this data; return ``n_classes``.

    A run calls it before it creates its directory, so a wrong model or data shape never leaves a half-made run.

    >>> check_model("small-cnn", (28, 28), 10)
    Traceback (most recent call last):
    ...
    ValueError: the images have shape (28, 28) but small-cnn needs (height, width, channels); for grayscale images add a channel axis: x = x[..., None] (shape (28, 28, 1)).
    """
    if name not in _BUILDERS:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(available_models())}.")
    n_classes = check_int(n_classes, "n_classes", minimum=1 if multilabel else 2)
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3:
        hint = (f"; for grayscale images add a channel axis: x = x[..., None] (shape {(*shape, 1)})"
                if len(shape) == 2 else "")
        raise ValueError(f"the images have shape {shape} but {name} needs (height, width, channels){hint}.")
    return n_classes


def build_model(name: str, input_shape: tuple[int, ...], n_classes: int, *, random_state: int | None = None,
                **kwargs: Any) -> Any:
    """Build (uncompiled) the model registered as ``name`` with reproducible initial weights.

    Parameters
    ----------
    name : {"small-cnn", "vgg16"}
    input_shape : tuple
        Shape of one example, e.g. (28, 28, 1).
    n_classes : int >= 2 (or >= 1 with ``multilabel=True``)
    random_state : int, optional
        Seeds Keras (weights, dropout, shuffling) through ``keras.utils.set_random_seed``.
    **kwargs
        Passed to the builder (``embedding_dim``, ``multilabel``).
    """
    n_classes = check_model(name, input_shape, n_classes, multilabel=bool(kwargs.get("multilabel")))
    keras = _tf.keras()

    if random_state is not None:
        keras.utils.set_random_seed(check_int(random_state, "random_state", minimum=0))
    return _BUILDERS[name](tuple(int(s) for s in input_shape), n_classes, **kwargs)


def embedding_model(model: Any, layer: str = EMBEDDING_LAYER) -> Any:
    """A model sharing ``model``'s weights that outputs the layer named ``layer`` (the penultimate layer)."""
    keras = _tf.keras()

    try:
        out = model.get_layer(layer).output
    except ValueError:
        raise ValueError(
            f"model has no layer named {layer!r}; name the penultimate layer {layer!r} or pass layer=..."
        ) from None
    # A single input is passed as a tensor, not a one-element list, so calling the sub-model with an array
    # matches its input structure (Keras warns otherwise).
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, out, name=f"{model.name}_embedding")
