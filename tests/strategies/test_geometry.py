"""CoreSet and BADGE against plain reference implementations that materialize the big matrices."""

from __future__ import annotations

import numpy as np
import pytest

from cmal.strategies import Badge, CoreSet, Partitioned, PoolState, gradient_embedding_parts, make_strategy


def naive_k_center(x, labeled, k):
    """Textbook k-center greedy with the full distance matrix."""
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    centers = list(labeled)
    picks = []
    for _ in range(k):
        nearest = d[:, centers].min(axis=1)
        nearest[centers] = -1
        j = int(np.argmax(nearest))
        picks.append(j)
        centers.append(j)
    return picks


def test_coreset_equals_the_textbook_greedy(rng):
    x = rng.normal(size=(300, 5))
    labeled = rng.choice(300, 10, replace=False)
    state = PoolState.create(embeddings=x, labeled=labeled)
    assert CoreSet(random_state=0).select(state, 25).tolist() == naive_k_center(x, labeled, 25)


def test_badge_distances_factorize(rng):
    probs = rng.dirichlet(np.ones(4), size=50)
    emb = rng.normal(size=(50, 6))
    a, h = (m.astype(np.float64) for m in gradient_embedding_parts(probs, emb))
    g = (a[:, :, None] * h[:, None, :]).reshape(50, -1)  # the n x (C d) matrix BADGE never builds
    onehot = np.eye(4)[probs.argmax(1)]
    np.testing.assert_allclose(
        g, ((probs - onehot)[:, :, None] * emb[:, None, :]).reshape(50, -1), rtol=1e-5, atol=1e-6
    )
    full = ((g[:, None] - g[None]) ** 2).sum(-1)
    gram_a, gram_h = a @ a.T, h @ h.T
    sq = np.diag(gram_a) * np.diag(gram_h)
    np.testing.assert_allclose(sq[:, None] + sq[None] - 2 * gram_a * gram_h, full, rtol=1e-4, atol=1e-5)


def test_badge_first_pick_has_the_largest_gradient_and_picks_spread(rng):
    probs = rng.dirichlet(np.ones(3), size=200)
    emb = rng.normal(size=(200, 4))
    state = PoolState.create(probs=probs, embeddings=emb, labeled=[0, 1])
    a, h = gradient_embedding_parts(probs, emb)
    norms = (a**2).sum(1) * (h**2).sum(1)
    norms[[0, 1]] = -1
    batch = Badge(random_state=0).select(state, 10)
    assert batch[0] == np.argmax(norms)
    # Multi-label: hypothesized labels are p > 0.5.
    ml = PoolState.create(probs=rng.uniform(size=(40, 5)), embeddings=rng.normal(size=(40, 3)), multilabel=True)
    assert np.unique(Badge(random_state=0).select(ml, 8)).size == 8


@pytest.mark.parametrize("base", [CoreSet, Badge])
def test_partitioned_takes_k_over_m_from_each_part(base, rng):
    state = PoolState.create(
        probs=rng.dirichlet(np.ones(3), 1000), embeddings=rng.normal(size=(1000, 4)), labeled=np.arange(50)
    )
    batch = Partitioned(base, m=4, random_state=0).select(state, 30)
    assert batch.size == 30 and np.unique(batch).size == 30 and not np.isin(batch, np.arange(50)).any()
    assert make_strategy(f"{base.name}-partitioned", m=3, random_state=0).select(state, 10).size == 10


def test_entropy_and_least_confidence_pick_the_most_uncertain():
    probs = np.array([[0.98, 0.01, 0.01], [0.34, 0.33, 0.33], [0.5, 0.49, 0.01], [0.9, 0.05, 0.05]])
    state = PoolState.create(probs=probs)
    assert make_strategy("entropy", random_state=0).select(state, 1).tolist() == [1]
    assert make_strategy("least-confidence", random_state=0).select(state, 1).tolist() == [1]
    assert make_strategy("margin", random_state=0).select(state, 1).tolist() == [2]
