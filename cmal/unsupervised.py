"""Embeddings of a pool before any label exists, for choosing the seed set (cold start).

Cluster-Margin's embeddings come from a model trained on labels, so the *first* labels need another geometry.
Two, both measured by ``benchmarks/beyond_the_paper.py --parts cold-start``:

- ``"pca"``: a projection of the inputs (pixels flattened and scaled to [0, 1]) on their first principal
  components. Seconds, no TensorFlow; on digits, classes already separate in the first 30-50 components.
- ``"autoencoder"``: the bottleneck of a small dense autoencoder trained on the pool's inputs without labels,
  for a few epochs. Non-linear, so classes that overlap in a projection can come apart; costs a training.

Either returns float32 rows (n, dim), the input of the cold-start strategies
(:class:`~cmal.strategies.cold_start.TypiClust`, :class:`~cmal.strategies.cold_start.ProbCover`) and of
``RunConfig(seed_strategy=..., seed_embedding=...)``.

Examples
--------
>>> import numpy as np
>>> from cmal.unsupervised import unsupervised_embeddings
>>> x = np.random.default_rng(0).random((200, 8, 8, 1), dtype=np.float32)
>>> unsupervised_embeddings(x, "pca", dim=16, random_state=0).shape
(200, 16)
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from cmal._validation import check_int

__all__ = ["EMBEDDINGS", "autoencoder_embeddings", "pca_embeddings", "unsupervised_embeddings"]

Method = Literal["pca", "autoencoder"]
#: The label-free embeddings by name.
EMBEDDINGS = ("pca", "autoencoder")

# Rows per block when flattening/scaling a pool: bounds the float32 copy to ~64 MB for 28x28 images.
_BLOCK = 1 << 14


def _flat_scaled(x: Any) -> np.ndarray:
    """(n, ...) inputs as float32 rows (n, prod(...)) in [0, 1] when they look like uint8 pixels."""
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 examples as an array of shape (n, ...), got shape {x.shape}.")
    scale = 1 / 255 if np.issubdtype(x.dtype, np.integer) else 1.0
    out = np.empty((x.shape[0], int(np.prod(x.shape[1:]))), dtype=np.float32)
    for start in range(0, x.shape[0], _BLOCK):  # memory-mapped pools are read block by block
        out[start : start + _BLOCK] = np.asarray(x[start : start + _BLOCK], dtype=np.float32).reshape(
            -1, out.shape[1]
        ) * np.float32(scale)
    if not np.isfinite(out).all():
        raise ValueError("x contains NaN or inf; clean the inputs before embedding them.")
    return out


def pca_embeddings(x: Any, dim: int = 32, *, random_state: int = 0) -> np.ndarray:
    """The inputs projected on their first ``dim`` principal components (randomized SVD, seeded).

    Parameters
    ----------
    x : array of shape (n, ...)
        Pool inputs (images are flattened; uint8 pixels scaled to [0, 1]).
    dim : int
        Components kept (at most the number of input features and of examples).
    random_state : int

    Returns
    -------
    ndarray of shape (n, dim), float32.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(100, 5))
    >>> pca_embeddings(x, 3).shape
    (100, 3)
    """
    from sklearn.decomposition import PCA

    flat = _flat_scaled(x)
    dim = check_int(dim, "dim", minimum=1)
    dim = min(dim, flat.shape[1], flat.shape[0])
    pca = PCA(n_components=dim, svd_solver="randomized" if dim < min(flat.shape) else "full", random_state=random_state)
    return pca.fit_transform(flat).astype(np.float32)


def autoencoder_embeddings(
    x: Any,
    dim: int = 32,
    *,
    epochs: int = 5,
    batch_size: int = 256,
    hidden: int = 256,
    random_state: int = 0,
    verbose: int = 0,
) -> np.ndarray:
    """The bottleneck of a dense autoencoder (inputs -> ``hidden`` -> ``dim`` -> ``hidden`` -> inputs) trained
    without labels on the pool.

    A small dense network, not a convolutional one: it trains in seconds on CPU for a pool of 10^4 digits, and
    the seed set only needs a geometry where similar inputs sit close. Trained with Adam on the mean squared
    reconstruction error; ``random_state`` seeds TensorFlow, so one seed gives the same embeddings on one machine.

    Parameters
    ----------
    x : array of shape (n, ...)
    dim : int
        Bottleneck width.
    epochs, batch_size, hidden : int
    random_state : int
    verbose : int
        Keras's verbosity (0 silent, 1 progress bar).

    Returns
    -------
    ndarray of shape (n, dim), float32.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((64, 6, 6), dtype=np.float32)
    >>> autoencoder_embeddings(x, 4, epochs=1, hidden=16).shape  # doctest: +SKIP
    (64, 4)
    """
    from cmal._tf import keras as _keras
    from cmal._tf import tensorflow

    keras, tf = _keras(), tensorflow()
    flat = _flat_scaled(x)
    dim = check_int(dim, "dim", minimum=1)
    epochs = check_int(epochs, "epochs", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    hidden = check_int(hidden, "hidden", minimum=1)
    keras.utils.set_random_seed(int(random_state))
    inputs = keras.Input(shape=(flat.shape[1],))
    h = keras.layers.Dense(hidden, activation="relu")(inputs)
    code = keras.layers.Dense(dim, name="code")(h)
    h2 = keras.layers.Dense(hidden, activation="relu")(code)
    outputs = keras.layers.Dense(flat.shape[1])(h2)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    data = tf.data.Dataset.from_tensor_slices((flat, flat)).shuffle(min(flat.shape[0], 10_000), seed=int(random_state))
    model.fit(data.batch(batch_size), epochs=epochs, verbose=verbose, shuffle=False)  # the dataset shuffles
    encoder = keras.Model(inputs, code)
    return np.asarray(encoder.predict(flat, batch_size=1024, verbose=0), dtype=np.float32)


def unsupervised_embeddings(x: Any, method: str = "pca", *, dim: int = 32, random_state: int = 0) -> np.ndarray:
    """Label-free embeddings of a pool by name: ``"pca"`` or ``"autoencoder"`` (see the module docstring).

    Parameters
    ----------
    x : array of shape (n, ...)
    method : {"pca", "autoencoder"}
    dim : int
    random_state : int

    Returns
    -------
    ndarray of shape (n, dim), float32.
    """
    if method == "pca":
        return pca_embeddings(x, dim, random_state=random_state)
    if method == "autoencoder":
        return autoencoder_embeddings(x, dim, random_state=random_state)
    raise ValueError(f"method (seed_embedding) must be one of {', '.join(EMBEDDINGS)}, got {method!r}.")
