"""Keras model builders, the user's own models, and the embedding sub-model.

Four built-in models, chosen by the rank of one example when ``model="auto"``:

=============  ===================  ==========================================================================
name           inputs               embedding (what the pool is clustered on)
=============  ===================  ==========================================================================
``small-cnn``  images (h, w, c)     the dense layer before the output (128 values); the default for images
``vgg16``      images (h, w, c)     the paper's VGG16 layout for 32x32 inputs (512 values; for GPU/TPU)
``mlp``        features (d,)        the dense layer before the output (128 values); the default for features
``linear``     features (d,)        the input features themselves (softmax regression has no hidden layer)
=============  ===================  ==========================================================================

Your own model is a function ``build(input_shape, n_classes) -> keras.Model`` (it may also take
``multilabel=``), given as the function or as a dotted path ``"package.module:build"``. Its output must be
probabilities (softmax, or sigmoid for multi-label data) of shape ``(None, n_classes)``, and the layer whose
output is the embedding is the one named ``"embedding"``, the one you name with ``embedding_layer="name"``, or the
one at a position, ``embedding_layer=-2`` (the layer feeding the output, in a simple chain of layers).
:func:`check_model` builds it once and says what is wrong before a run creates its folder.

TensorFlow is imported inside the functions, so ``import cmal`` stays light.

Examples
--------
>>> from cmal.models import build_model, embedding_model
>>> model = build_model("small-cnn", input_shape=(8, 8, 1), n_classes=10, random_state=0)
>>> model.output_shape, embedding_model(model).output_shape
((None, 10), (None, 128))
>>> build_model("auto", input_shape=(64,), n_classes=3, random_state=0).name
'mlp'
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from cmal import _tf
from cmal._validation import check_int
from cmal.dotted import dotted_name, import_dotted, is_dotted

__all__ = [
    "EMBEDDING_LAYER",
    "ModelSpec",
    "available_models",
    "build_model",
    "check_model",
    "embedding_model",
    "import_root",
    "is_builtin",
    "linear",
    "mlp",
    "model_builder",
    "model_label",
    "resolve_model",
    "small_cnn",
    "vgg16_style",
]

#: The name of the layer whose output the built-in models embed with (the penultimate layer).
EMBEDDING_LAYER = "embedding"

#: What ``RunConfig.model`` / ``build_model`` accept: a registered name, ``"auto"``, a dotted path to a builder,
#: or the builder itself.
ModelSpec = Any


def _head(keras: Any, features: Any, n_classes: int, embedding_dim: int, multilabel: bool) -> Any:
    x = keras.layers.Dense(embedding_dim, activation="relu", name=EMBEDDING_LAYER)(features)
    return _output(keras, x, n_classes, multilabel)


def _output(keras: Any, x: Any, n_classes: int, multilabel: bool) -> Any:
    # float32 output even under mixed precision: probabilities feed margins and losses.
    return keras.layers.Dense(
        n_classes, activation="sigmoid" if multilabel else "softmax", dtype="float32", name="probs"
    )(x)


def small_cnn(
    input_shape: tuple[int, ...], n_classes: int, *, embedding_dim: int = 128, multilabel: bool = False
) -> Any:
    """Conv 16 -> conv 32 (-> conv 64 ... for large images) -> dense ``embedding_dim`` (the embedding) -> softmax.

    About 0.2 M parameters for 28x28 inputs; an epoch over 1,000 images takes well under a second on 2 CPU
    cores. Any channel count; inputs from 4x4 pixels upwards. Images larger than about 35 pixels on their
    shorter side get further conv-64 + pooling blocks until the feature map is at most 8 pixels on that side,
    so the dense layer stays small (a 224x224 input would otherwise feed 100,000 values into it).
    """
    keras = _tf.keras()

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    while min(x.shape[1], x.shape[2]) > 8:
        x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, _head(keras, x, n_classes, embedding_dim, multilabel), name="small_cnn")


def vgg16_style(
    input_shape: tuple[int, ...] = (32, 32, 3),
    n_classes: int = 10,
    *,
    embedding_dim: int = 512,
    multilabel: bool = False,
) -> Any:
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


def mlp(
    input_shape: tuple[int, ...],
    n_classes: int,
    *,
    hidden: tuple[int, ...] = (256,),
    embedding_dim: int = 128,
    multilabel: bool = False,
) -> Any:
    """A multilayer perceptron for feature vectors: dense ``hidden`` layers -> dense ``embedding_dim`` (the
    embedding) -> softmax (sigmoid for multi-label).

    For precomputed embeddings of text, audio, tabular rows or images (through any encoder). Features on very
    different scales train better standardized first (e.g. ``sklearn.preprocessing.StandardScaler``).

    >>> mlp((64,), 5).output_shape
    (None, 5)
    """
    keras = _tf.keras()

    inputs = keras.Input(shape=tuple(input_shape), name="features")
    x = inputs
    for i, units in enumerate(hidden):
        x = keras.layers.Dense(int(units), activation="relu", name=f"hidden{i}")(x)
    return keras.Model(inputs, _head(keras, x, n_classes, embedding_dim, multilabel), name="mlp")


def linear(input_shape: tuple[int, ...], n_classes: int, *, multilabel: bool = False) -> Any:
    """Softmax regression (logistic regression for multi-label) on feature vectors.

    It has no hidden layer, so its embedding is the input features themselves: the input layer is named
    ``"embedding"``, and the pool is clustered once on the features as given. The classifier still changes
    every round; the clusters do not depend on it.

    >>> embedding_model(linear((64,), 5)).output_shape
    (None, 64)
    """
    keras = _tf.keras()

    inputs = keras.Input(shape=tuple(input_shape), name=EMBEDDING_LAYER)
    return keras.Model(inputs, _output(keras, inputs, n_classes, multilabel), name="linear")


_BUILDERS: dict[str, Callable[..., Any]] = {"small-cnn": small_cnn, "vgg16": vgg16_style, "mlp": mlp, "linear": linear}
# Rank of one example each built-in model takes: 3 for images (h, w, c), 1 for feature vectors (d,).
_RANK = {"small-cnn": 3, "vgg16": 3, "mlp": 1, "linear": 1}


def available_models() -> list[str]:
    """Names accepted by :func:`build_model` (besides ``"auto"``, dotted paths and builder functions)."""
    return sorted(_BUILDERS)


def model_label(model: ModelSpec) -> str:
    """How a run records ``model`` in ``config.json``: the name or path as given, ``"module:name"`` for a
    builder function (a later resume imports it from there).

    >>> model_label("auto"), model_label(mlp)
    ('auto', 'cmal.models:mlp')
    """
    return model if isinstance(model, str) else dotted_name(model)


def model_builder(model: ModelSpec) -> Callable[..., Any]:
    """The builder function of ``model`` (imported, for a dotted path); ValueError for anything that names no
    model. ``"auto"`` is resolved first, by :func:`resolve_model`.

    >>> model_builder("mlp") is mlp
    True
    """
    if isinstance(model, str):
        if model in _BUILDERS:
            return _BUILDERS[model]
        if is_dotted(model):
            # TensorFlow first, through cmal's filter of its start-up noise: the user's module usually imports
            # keras at its top, which would otherwise print that noise before any message of ours.
            _tf.tensorflow()
            path, model = model, import_dotted(model, "model builder")
            if not callable(model):
                raise ValueError(
                    f"model {path!r} is a {type(model).__name__}, not a function; it must be "
                    "build(input_shape, n_classes) -> keras.Model."
                )
            return model
        raise ValueError(
            f"Unknown model {model!r}; choose one of auto, {', '.join(available_models())}, or give "
            "your own builder as 'module:function' (build(input_shape, n_classes) -> keras.Model)."
        )
    if callable(model):
        return model
    raise ValueError(
        f"model must be a name ({', '.join(available_models())}, auto), a 'module:function' path or "
        f"a function build(input_shape, n_classes) -> keras.Model; got {type(model).__name__}."
    )


def is_builtin(model: ModelSpec) -> bool:
    """True for ``"auto"`` and the registered names; False for a user's builder (a callable or a dotted path).

    >>> is_builtin("auto"), is_builtin("mlp"), is_builtin("my_models:build")
    (True, True, False)
    """
    return isinstance(model, str) and (model == "auto" or model in _BUILDERS)


def import_root(model: ModelSpec) -> str | None:
    """The folder a later process must have on ``sys.path`` to import ``model``'s builder again (the folder
    holding its module, or its top-level package); None for built-in models and code without a file (a
    notebook's functions)."""
    import sys
    from pathlib import Path

    if is_builtin(model):
        return None
    builder = model_builder(model)
    name = getattr(builder, "__module__", None) or ""
    file = getattr(sys.modules.get(name), "__file__", None)
    if not name or name == "__main__" or not file or name.startswith("cmal."):
        return None
    depth = len(name.split(".")) + (Path(file).name == "__init__.py")
    return str(Path(file).resolve().parents[depth - 1])


def resolve_model(model: ModelSpec, input_shape: tuple[int, ...]) -> ModelSpec:
    """``"auto"`` resolved by the rank of one example: ``small-cnn`` for images (h, w, c), ``mlp`` for feature
    vectors (d,); anything else is returned as given (after checking it names a model).

    >>> resolve_model("auto", (28, 28, 1)), resolve_model("auto", (64,))
    ('small-cnn', 'mlp')
    """
    shape = tuple(int(s) for s in input_shape)
    if model == "auto":
        if len(shape) == 3:
            return "small-cnn"
        if len(shape) == 1:
            return "mlp"
        raise ValueError(
            f"one example has shape {shape}; cmal's models take images (height, width, channels) or "
            f"feature vectors (d,){_shape_hint(shape)}."
        )
    model_builder(model)
    return model


def _shape_hint(shape: tuple[int, ...]) -> str:
    if len(shape) == 2:
        return f"; for grayscale images add a channel axis: x = x[..., None] (shape {(*shape, 1)})"
    return f"; flatten them into feature vectors: x = x.reshape(len(x), -1) (shape ({int(np.prod(shape))},))"


def _check_registered(name: str, shape: tuple[int, ...]) -> None:
    """The checks of a built-in model that need no TensorFlow: the rank and size of one example."""
    if _RANK[name] == 3:
        if len(shape) != 3:
            what = "feature vectors" if len(shape) == 1 else "examples"
            other = (
                "; for feature vectors use model='mlp', 'linear' or 'auto'" if len(shape) == 1 else _shape_hint(shape)
            )
            raise ValueError(f"the {what} have shape {shape} but {name} needs images (height, width, channels){other}.")
        if name == "small-cnn" and min(shape[:2]) < 4:
            raise ValueError(
                f"small-cnn needs images of at least 4x4 pixels, got {shape[0]}x{shape[1]}; upscale them "
                "(an image folder: image_size=(h, w)) or use model='mlp' on x.reshape(len(x), -1)."
            )
    elif len(shape) != 1:
        hint = (
            "; for images use model='small-cnn' or 'auto', or flatten them: x = x.reshape(len(x), -1)"
            if len(shape) == 3
            else _shape_hint(shape)
        )
        raise ValueError(f"the examples have shape {shape} but {name} needs feature vectors (d,){hint}.")


def check_model(
    model: ModelSpec,
    input_shape: tuple[int, ...],
    n_classes: int,
    *,
    multilabel: bool = False,
    embedding_layer: str | int | None = None,
    policy: str = "float32",
) -> int:
    """Check that ``model`` can be built and used for this data; return ``n_classes``.

    A built-in model is checked without TensorFlow (the shape of one example). Your own builder is built once
    and checked: it returns a ``keras.Model`` whose output is probabilities of shape ``(None, n_classes)``
    (softmax; sigmoid for multi-label), with the embedding layer (``embedding_layer``, a name or a position in
    ``model.layers``; default ``"embedding"``).
    ``policy`` is the Keras dtype policy the run trains under (``"mixed_float16"`` on a GPU, ``"mixed_bfloat16"``
    on a TPU by default): your model is built under it, and its output must still be float32 (margins computed
    from float16 probabilities tie). A run calls it before it creates its directory, so a wrong model never
    leaves a half-made run. Every error is one line naming the fix.

    >>> check_model("small-cnn", (28, 28), 10)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the examples have shape (28, 28) but small-cnn needs images ...: x = x[..., None] (shape (28, 28, 1)).
    """
    n_classes = check_int(n_classes, "n_classes", minimum=1 if multilabel else 2)
    shape = tuple(int(s) for s in input_shape)
    model = resolve_model(model, shape)
    if isinstance(model, str) and model in _BUILDERS:
        _check_registered(model, shape)
        if embedding_layer in (None, EMBEDDING_LAYER):
            return n_classes
    label = model_label(model)
    keras = _tf.keras()
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        # No random_state: the check's weights do not matter, and seeding would reset the caller's random state.
        built = build_model(model, shape, n_classes, multilabel=multilabel)
    except Exception as err:  # noqa: BLE001 - any failure of the user's builder is reported the same way
        raise ValueError(
            f"model builder {label!r} failed when called as build(input_shape={shape}, "
            f"n_classes={n_classes}): {type(err).__name__}: {_first_line(err)} (a builder is called "
            "with (input_shape, n_classes) and returns a keras.Model)."
        ) from None
    finally:
        keras.mixed_precision.set_global_policy(previous)
    _check_built(built, label, shape, n_classes, multilabel, embedding_layer, policy)
    return n_classes


def _check_built(
    built: Any,
    label: str,
    shape: tuple[int, ...],
    n_classes: int,
    multilabel: bool,
    embedding_layer: str | int | None,
    policy: str = "float32",
) -> None:
    keras = _tf.keras()
    if not isinstance(built, keras.Model):
        raise ValueError(
            f"model builder {label!r} returned {type(built).__name__}, not a keras.Model; it must "
            "return keras.Model(inputs, outputs)."
        )
    try:
        outputs = built.outputs
    except AttributeError:
        outputs = None
    if not outputs:
        raise ValueError(
            f"model {label!r} is a subclassed keras.Model (no symbolic outputs), from which no layer's "
            "output can be read as the embedding; build it with the functional API or keras.Sequential."
        )
    if isinstance(embedding_layer, str) and embedding_layer != EMBEDDING_LAYER:
        named = next((layer for layer in built.layers if layer.name == embedding_layer), None)
        if named is not None and _auto_named(named):
            position = built.layers.index(named) - len(built.layers)
            raise ValueError(
                f"model {label!r}: {embedding_layer!r} is a name Keras generated, which changes with "
                f"every model built in a process; name the layer (name={EMBEDDING_LAYER!r}) or give "
                f"its position: embedding_layer={position}."
            )
    if len(built.outputs) != 1:
        raise ValueError(f"model {label!r} has {len(built.outputs)} outputs; it needs one: the class probabilities.")
    out_shape = tuple(built.outputs[0].shape)
    if out_shape[1:] != (n_classes,):
        raise ValueError(
            f"model {label!r} outputs shape {out_shape} but the data has {n_classes} classes; its last "
            f"layer must be keras.layers.Dense({n_classes}, activation="
            f"'{'sigmoid' if multilabel else 'softmax'}') (use the n_classes argument)."
        )
    out_dtype = str(getattr(outputs[0], "dtype", "float32"))
    if "float32" not in out_dtype:
        raise ValueError(
            f"model {label!r} outputs {out_dtype} under the {policy} policy this run trains with; give "
            f"its output layer dtype='float32' (keras.layers.Dense({n_classes}, activation=..., "
            "dtype='float32')), or run with mixed_precision=None."
        )
    x = np.random.default_rng(0).uniform(0, 1, size=(4, *shape)).astype(np.float32)
    try:
        p = np.asarray(built(x, training=False), dtype=np.float64)
    except Exception as err:  # noqa: BLE001 - any failure of the user's model is reported the same way
        raise ValueError(
            f"model {label!r} fails on a batch of shape {x.shape}: {type(err).__name__}: {_first_line(err)}"
        ) from None
    sums_to_one = np.allclose(p.sum(axis=1), 1.0, atol=1e-3)
    in_range = bool(np.all((p >= 0) & (p <= 1)))
    if multilabel and (not in_range or sums_to_one):
        raise ValueError(
            f"model {label!r} does not output independent probabilities (multi-label data); end it "
            f"with keras.layers.Dense({n_classes}, activation='sigmoid')."
        )
    if not multilabel and not (in_range and sums_to_one):
        raise ValueError(
            f"model {label!r} does not output class probabilities (rows should sum to 1, got "
            f"{p.sum(axis=1)[0]:.3g}); end it with keras.layers.Dense({n_classes}, "
            "activation='softmax')."
        )
    try:
        embedding_model(built, EMBEDDING_LAYER if embedding_layer is None else embedding_layer)
    except ValueError as err:  # name the model as the user gave it, not by Keras's generated name
        raise ValueError(str(err).replace(f"model {built.name!r}", f"model {label!r}", 1)) from None


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def build_model(
    model: ModelSpec, input_shape: tuple[int, ...], n_classes: int, *, random_state: int | None = None, **kwargs: Any
) -> Any:
    """Build (uncompiled) ``model`` with reproducible initial weights.

    Parameters
    ----------
    model : {"auto", "small-cnn", "vgg16", "mlp", "linear"}, "module:function" or callable
        A built-in name (``"auto"`` picks by the rank of ``input_shape``), or your builder
        ``build(input_shape, n_classes[, multilabel=...]) -> keras.Model``.
    input_shape : tuple
        Shape of one example, e.g. (28, 28, 1) or (64,).
    n_classes : int >= 2 (or >= 1 with ``multilabel=True``)
    random_state : int, optional
        Seeds Keras (weights, dropout, shuffling) through ``keras.utils.set_random_seed``.
    **kwargs
        Passed to the builder (``embedding_dim``, ``multilabel``, ``hidden`` for mlp); to your builder only
        the ones its signature takes.
    """
    shape = tuple(int(s) for s in input_shape)
    model = resolve_model(model, shape)
    multilabel = bool(kwargs.get("multilabel"))
    n_classes = check_int(n_classes, "n_classes", minimum=1 if multilabel else 2)
    builder = model_builder(model)
    if isinstance(model, str) and model in _BUILDERS:
        _check_registered(model, shape)
        if model == "linear":
            kwargs.pop("embedding_dim", None)  # softmax regression has no embedding layer of its own
    else:
        kwargs = {k: v for k, v in kwargs.items() if _accepts(builder, k)}
    keras = _tf.keras()

    if random_state is not None:
        keras.utils.set_random_seed(check_int(random_state, "random_state", minimum=0))
    built = builder(shape, n_classes, **kwargs)
    if isinstance(built, keras.Model) and not built.built:
        built.build((None, *shape))  # keras.Sequential without keras.Input: give it the input shape now
    return built


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def _auto_named(layer: Any) -> bool:
    """True when Keras generated ``layer``'s name from its class (``dense``, ``dense_3``): such names change
    with every model built in the process, so they cannot identify a layer across builds."""
    import re

    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", type(layer).__name__).lower()
    return re.fullmatch(rf"{re.escape(snake)}(_\d+)?", layer.name) is not None


def embedding_model(model: Any, layer: str | int | None = EMBEDDING_LAYER) -> Any:
    """A model sharing ``model``'s weights that outputs the layer named ``layer`` (the penultimate layer),
    or the layer at position ``layer`` in ``model.layers`` (``-2``: the one before the output layer); flattened to
    (n, d) when that layer outputs a feature map.

    >>> embedding_model(mlp((6,), 3), -2).output_shape
    (None, 128)
    """
    keras = _tf.keras()

    layer = EMBEDDING_LAYER if layer is None else layer
    layers = list(model.layers)
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not -len(layers) <= int(layer) < len(layers):
            raise ValueError(
                f"model {model.name!r} has {len(layers)} layers; embedding_layer={int(layer)} is not a "
                f"position among them (-{len(layers)}..{len(layers) - 1}; -2 is the one before the output)."
            )
        out = layers[int(layer)].output
        name = layers[int(layer)].name
    else:
        try:
            out = model.get_layer(layer).output
            name = str(layer)
        except ValueError:
            names = [x.name for x in layers]
            shown = ("... " if len(names) > 6 else "") + ", ".join(names[-6:])
            feeding = layers[-2] if len(layers) > 1 else layers[-1]  # the layer feeding the output: the usual choice
            if _auto_named(feeding):
                fix = (
                    f"or give its position: embedding_layer=-2 (now {feeding.name!r}, the layer feeding the "
                    "output; Keras-generated names like it change with every build, so they cannot name it)"
                )
            else:
                fix = f"or pass embedding_layer={feeding.name!r} (its layers: {shown})"
            raise ValueError(
                f"model {model.name!r} has no layer named {layer!r}; name the layer whose output is the embedding "
                f"{EMBEDDING_LAYER!r} (e.g. keras.layers.Dense(128, name={EMBEDDING_LAYER!r})) {fix}."
            ) from None
    if len(out.shape) > 2:
        out = keras.layers.Flatten(name=f"{name}_flat")(out)
    # A single input is passed as a tensor, not a one-element list, so calling the sub-model with an array
    # matches its input structure (Keras warns otherwise).
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, out, name=f"{model.name}_embedding")
