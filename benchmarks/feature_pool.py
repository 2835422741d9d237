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

    python benchmarks/feature_pool.py        # build (or read) runs/cache/mnist-5to9-features-10ep-seed0.npz
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

CACHE_DIR = Path("runs/cache")
KNOWN = 5  # the encoder learns digits 0..KNOWN-1; the pool holds the others


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


def cache_file(folder: str | os.PathLike = CACHE_DIR, *, encoder_epochs: int = 10, seed: int = 0) -> Path:
    """Where :func:`feature_pool` keeps the pool built with these settings (they are part of the name)."""
    return Path(folder) / f"mnist-5to9-features-{encoder_epochs}ep-seed{seed}.npz"


def feature_pool(folder: str | os.PathLike = CACHE_DIR, *, encoder_epochs: int = 10, seed: int = 0) -> Any:
    """The pool as a :class:`cmal.data.Dataset`, built once per setting and then read from ``folder`` (an
    ``.npz`` named by :func:`cache_file`, which also records the settings and cmal's version; the write is atomic
    and locked, so parallel benchmark workers build it once)."""
    from filelock import FileLock

    import cmal
    from cmal.data import load_npz
    from cmal.state import atomic_write

    cache = cache_file(folder, encoder_epochs=encoder_epochs, seed=seed)
    cache.parent.mkdir(parents=True, exist_ok=True)
    made_by = np.array([f"cmal {cmal.__version__}, encoder_epochs={encoder_epochs}, seed={seed}"])
    with FileLock(str(cache) + ".lock"):
        if cache.exists():
            with np.load(cache, allow_pickle=False) as f:
                stale = "made_by" not in f.files or f["made_by"].tolist() != made_by.tolist()
            if stale:  # another cmal version built it: build again rather than compare with other features
                cache.unlink()
        if not cache.exists():
            x, y = build_features(encoder_epochs=encoder_epochs, seed=seed)
            with atomic_write(cache, "wb") as f:
                np.savez(f, x=x, y=y, class_names=np.array([str(d) for d in range(KNOWN, 10)]), made_by=made_by)
    return load_npz(cache)  # x, y: a stratified 20% is held out as the test set


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", default=str(CACHE_DIR), help="cache folder (default runs/cache)")
    p.add_argument("--encoder-epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    ds = feature_pool(a.folder, encoder_epochs=a.encoder_epochs, seed=a.seed)
    path = cache_file(a.folder, encoder_epochs=a.encoder_epochs, seed=a.seed)
    print(f"{path}: pool {ds.x_pool.shape}, test {ds.x_test.shape}, classes {ds.class_names}")


if __name__ == "__main__":
    main()
