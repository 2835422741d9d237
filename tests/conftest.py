"""Shared fixtures: small real data and small pools with known structure."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.hookimpl(trylast=True)  # after deselection (-k, -m), so only a session that runs the docs tests builds
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # The documentation build executes every notebook: 1,533 of pytest's 3,099 s when it ran first (2026-12-06).
    # It starts now, in a subprocess, and the docs tests go last and wait for it, so the other tests run beside
    # it on the second core.
    docs = [item for item in items if item.get_closest_marker("docs")]
    if docs:
        items[:] = [item for item in items if not item.get_closest_marker("docs")] + docs
        if not config.option.collectonly:
            docs[0].module.start_build()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's real 8x8 digits as a cmal Dataset (pool 1,438, test 359)."""
    from cmal.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_model(digits):
    """A small CNN trained briefly on 300 real digits (shared: training costs seconds)."""
    from cmal.models import build_model
    from cmal.training import fit

    model = build_model("small-cnn", digits.image_shape, digits.n_classes, random_state=0)
    fit(model, digits.x_pool[:300], digits.y_pool[:300], min_steps=150, random_state=0)
    return model


@pytest.fixture
def pool_state(rng):
    """A 200-row pool: random softmax outputs, 12 clusters of uneven size, 20 labeled rows."""
    from cmal.strategies import PoolState

    probs = rng.dirichlet(np.ones(5), size=200)
    clusters = rng.choice(12, size=200, p=np.linspace(1, 3, 12) / np.linspace(1, 3, 12).sum())
    return PoolState.create(
        probs=probs, clusters=clusters, labeled=rng.choice(200, 20, replace=False), embeddings=rng.normal(size=(200, 8))
    )
