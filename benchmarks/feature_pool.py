"""A pool of precomputed feature vectors: MNIST digits 5-9 embedded by an encoder trained only on digits 0-4.

This is how most users meet active learning today: an encoder trained on *other* data (here: other classes)
turns every example into a vector, and only a small head is trained on the labels active learning buys. The
encoder is cmal's small CNN trained for ten epochs on the 5,139 bundled MNIST digits 0-4; its 128-value embedding layer
embeds the 4,861 digits 5-9, which become a five-class pool of feature vectors (n, 128) with a stratified 20%
test split. Everything is offline and seeded; the first call takes about 15 s on 2 cores and writes a cache
file, later calls read it.

``python benchmarks/label_efficiency.py --regimes features --strategies cluster-margin,margin,random`` compares
strategies on it (the ``features`` regime: the MLP head, ``model="auto"``).

Usage::

    python benchmarks/feature_pool.py --out runs/cache/mnist-5to9-features.npz   # build and describe the pool
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_CACHE = Path("runs/cache/mnist-5to9-features.npz")
KNOWN = 5   # the encoder learns digits 0..KNOWN-1; the pool holds the others


def build_features(*, encoder_epochs: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(n, 128)`` float32 and labels ``(n,)`` (0..4 for digits 5..9) of the bundled MNIST digits
    5-9, embedded by a small CNN trained for ``encoder_epochs`` epochs (161 steps each) on the digits 0-4."""
    from cmal.data import load_dataset
    from cmal.embed import embed
    from cmal.models import build_model
    from cmal.training import fit

    ds = load_dataset("mnist")
    x = np.concatenate([ds.x_pool, ds.x_test])
    y = np.concatenate([ds.y_pool, ds.y_test])
    known = y < KNOWN
    encoder = build_model("small-cnn", ds.image_shape, KNOWN, random_state=seed)
    fit(encoder, x[known], y[known], epochs=encoder_epochs, min_steps=0, random_state=seed)
    return embed(encoder, x[~known], progress=False), (y[~known] - KNOWN).astype(np.int64)


def feature_pool(cache: str | os.PathLike = DEFAULT_CACHE, **kwargs: Any) -> Any:
    """The pool as a :class:`cmal.data.Dataset`, built once and then read from ``cache`` (an ``.npz``; the
    write is atomic and locked, so parallel benchmark workers build it once)."""
    from filelock import FileLock

    from cmal.data import load_npz
    from cmal.state import atomic_write

    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache) + ".lock"):
        if not cache.exists():
            x, y = build_features(**kwargs)
            with atomic_write(cache, "wb") as f:
                np.savez(f, x=x, y=y, class_names=np.array([str(d) for d in range(KNOWN, 10)]))
    return load_npz(cache)   # x, y: a stratified 20% is held out as the test set


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(DEFAULT_CACHE))
    p.add_argument("--encoder-epochs", type=int, default=10)
    a = p.parse_args(argv)
    ds = feature_pool(a.out, encoder_epochs=a.encoder_epochs)
    print(f"{a.out}: pool {ds.x_pool.shape}, test {ds.x_test.shape}, classes {ds.class_names}")


if __name__ == "__main__":
    main()
