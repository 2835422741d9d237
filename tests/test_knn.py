"""kNN graphs: exact neighbours, approximate backends' recall, metrics and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from cmal.knn import knn


def _brute(x: np.ndarray, k: int) -> np.ndarray:
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def test_exact_matches_brute_force(rng):
    x = rng.normal(size=(300, 6))
    idx, dist = knn(x, 7, backend="exact")
    assert idx.shape == dist.shape == (300, 7)
    np.testing.assert_array_equal(idx, _brute(x, 7))
    ref = np.linalg.norm(x[:, None] - x[idx], axis=-1)
    np.testing.assert_allclose(dist, ref, rtol=1e-3, atol=1e-3)
    assert (np.diff(dist, axis=1) >= 0).all()


def test_cosine_distance_is_one_minus_cos(rng):
    x = rng.normal(size=(100, 5))
    idx, dist = knn(x, 5, metric="cosine", backend="exact")
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    ref = 1 - np.einsum("ij,ikj->ik", u, u[idx])
    np.testing.assert_allclose(dist, ref, atol=1e-5)


@pytest.mark.parametrize("backend", ["pynndescent", "faiss"])
def test_approximate_backends_recall(backend, digits):
    pytest.importorskip(backend)
    x = digits.x_pool.reshape(len(digits.x_pool), -1)
    exact, _ = knn(x, 10, backend="exact")
    approx, dist = knn(x, 10, backend=backend, random_state=0)
    assert approx.shape == (len(x), 10)
    assert not (approx == np.arange(len(x))[:, None]).any(), "a point is its own neighbour"
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall > 0.9, recall


def test_k_larger_than_pool_is_the_complete_graph(rng):
    x = rng.normal(size=(6, 2))
    idx, _ = knn(x, 50)
    assert idx.shape == (6, 5)
    assert all(set(row) == set(range(6)) - {i} for i, row in enumerate(idx))


def test_bad_input():
    with pytest.raises(ValueError, match="all-zero"):
        knn(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]), 1, metric="cosine")
    with pytest.raises(ValueError, match="backend"):
        knn(np.ones((3, 2)), 1, backend="annoy")
    with pytest.raises(ValueError, match="k must be >= 1"):
        knn(np.ones((3, 2)), 0)
    with pytest.raises(ValueError, match="NaN|finite"):
        knn(np.array([[np.nan, 1.0], [1.0, 1.0]]), 1)


def test_backend_options_reach_the_library():
    """options= tunes the approximate backends; unknown options are refused by name."""
    pytest.importorskip("faiss")
    x = np.random.default_rng(0).normal(size=(600, 8)).astype(np.float32)
    exact, _ = knn(x, 5, backend="exact")
    for opts in ({"M": 8, "efConstruction": 16, "efSearch": 16}, {"M": 48, "efConstruction": 200}):
        idx, _ = knn(x, 5, backend="faiss", options=opts)
        assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(idx, exact)]) > 0.8
    with pytest.raises(ValueError, match="efConstruction"):
        knn(x, 5, backend="faiss", options={"ef_construction": 10})
    pytest.importorskip("pynndescent")
    idx, _ = knn(x, 5, backend="pynndescent", options={"n_iters": 3, "n_trees": 4})
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(idx, exact)]) > 0.8
    with pytest.raises(TypeError, match="n_itrs"):
        knn(x, 5, backend="pynndescent", options={"n_itrs": 3})
