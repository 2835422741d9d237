"""The Dask backend on a LocalCluster with 2 workers: every step equals the single-machine path."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("dask.distributed")

from cmal import scale  # noqa: E402
from cmal.graph_hac import graph_linkage_tree, knn_edges, rac  # noqa: E402
from cmal.knn import knn  # noqa: E402
from cmal.uncertainty import score_chunked  # noqa: E402


@pytest.fixture(scope="module")
def client():
    c = scale.connect(n_workers=2, threads_per_worker=1)
    yield c
    c.close()
    c.cluster.close()


@pytest.fixture(scope="module")
def mixture():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, 8)) * 2
    return (centres[rng.integers(0, 40, 1500)] + rng.normal(size=(1500, 8))).astype(np.float32)


def test_connect_reuses_a_client(client):
    assert scale.connect(client) is client
    with pytest.raises(ValueError, match="dask.distributed.Client"):
        scale.connect("tcp://nowhere")


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_by_blocks_equals_exact(client, mixture, metric):
    idx, dist = scale.knn_graph(mixture, 7, metric=metric, client=client, rows_per_task=200)
    ref_idx, ref_dist = knn(mixture, 7, metric=metric, backend="exact")
    np.testing.assert_array_equal(idx, ref_idx)
    # Same neighbours; float32 distances within a few ulps: BLAS sums a 200-row block in another order than the
    # whole matrix (numpy 2.4's OpenBLAS differs from 2.3's by up to 2e-6 relative here).
    np.testing.assert_allclose(dist, ref_dist, rtol=2e-5)


@pytest.mark.parametrize("partitions", [1, 3])
def test_rac_over_partitions_equals_single_machine(client, mixture, partitions):
    x64 = mixture.astype(np.float64)
    a, b, d, radius = knn_edges(
        mixture, 10, metric="euclidean", backend="exact", exact_max=10**6, random_state=0, progress=False
    )
    eps = float(np.median(d)) * 1.5
    opts = dict(threshold=eps, points=x64, radius=radius)
    ref = rac(len(x64), a, b, d, **opts)
    got = scale.rac(len(x64), a, b, d, client=client, n_partitions=partitions, **opts)
    order = lambda z: z[np.lexsort((z[:, 1], z[:, 0]))]  # noqa: E731
    np.testing.assert_array_equal(order(got)[:, [0, 1, 3]], order(ref)[:, [0, 1, 3]])
    np.testing.assert_allclose(order(got)[:, 2], order(ref)[:, 2], rtol=1e-12)


@pytest.mark.parametrize("target", [None, 100])
def test_graph_tree_equals_single_machine(client, mixture, target):
    ref = graph_linkage_tree(mixture, k=12, target_clusters=target)
    got = scale.graph_linkage_tree(mixture, k=12, client=client, target_clusters=target)
    assert got.max_epsilon == ref.max_epsilon
    for n_clusters in (100, 400) if target else (30, 100, 400):
        eps = ref.epsilon_for_clusters(n_clusters)
        np.testing.assert_array_equal(got.cut(eps), ref.cut(eps))


def test_margins_in_chunks(client, tmp_path, rng):
    logits = rng.normal(size=(5000, 10))
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    np.save(tmp_path / "p.npy", probs)
    ref = score_chunked(probs)
    np.testing.assert_allclose(scale.margins(tmp_path / "p.npy", client=client, block_rows=700), ref, rtol=1e-6)
    np.testing.assert_allclose(scale.margins(probs, client=client, kind="margin", block_rows=1300), ref, rtol=1e-6)
    with pytest.raises(ValueError, match="kind"):
        scale.margins(probs, client=client, kind="bald")


def test_embedding_over_partitions(client, digits, digits_model, tmp_path):
    from cmal.embed import embed, predict_proba
    from cmal.models import embedding_model

    path = tmp_path / "model.keras"
    digits_model.save(path)
    np.save(tmp_path / "x.npy", digits.x_pool[:600])
    emb = scale.embed_pool(
        path, tmp_path / "x.npy", client=client, block_rows=256, progress=False, out=tmp_path / "emb.npy"
    )
    assert isinstance(emb, np.memmap) and emb.shape == (600, 128)
    np.testing.assert_allclose(
        emb, embed(embedding_model(digits_model), digits.x_pool[:600], progress=False), rtol=1e-4, atol=1e-5
    )
    probs = scale.predict_pool(path, digits.x_pool[:300], client=client, block_rows=128, progress=False)
    np.testing.assert_allclose(probs, predict_proba(digits_model, digits.x_pool[:300]), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match=".keras"):
        scale.embed_pool(tmp_path / "x.npy", digits.x_pool[:10], client=client)


def test_knn_partitions_recall_against_exact(client, mixture):
    """Approximate kNN by blocks (a faiss HNSW index per block, queried by the others): high recall, no self,
    sorted distances, and the exact distances of the neighbours it returns."""
    k = 10
    idx, dist = scale.knn_partitions(mixture, k, client=client, n_partitions=3, backend="faiss")
    ref_idx, _ = knn(mixture, k, backend="exact")
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(idx, ref_idx)])
    assert recall >= 0.95, recall
    assert idx.shape == (len(mixture), k) and not (idx == np.arange(len(mixture))[:, None]).any()
    assert (np.diff(dist, axis=1) >= 0).all()
    true = np.linalg.norm(mixture[idx] - mixture[:, None], axis=2)
    np.testing.assert_allclose(dist, true, rtol=1e-4, atol=1e-4)
    # Every block found neighbours in the others (the cross-block queries ran).
    block = np.arange(len(mixture)) * 3 // len(mixture)
    assert (block[idx] != block[:, None]).any(axis=1).mean() > 0.3


def test_graph_tree_with_partitioned_knn_close_to_single_machine(client, mixture, monkeypatch):
    from sklearn.metrics import adjusted_rand_score

    import cmal.scale.graph as sg

    ref = graph_linkage_tree(mixture, k=15, knn_backend="exact")
    got = scale.graph_linkage_tree(mixture, k=15, client=client, knn="partitions")
    eps = ref.epsilon_for_mean_size(20)
    assert adjusted_rand_score(ref.cut(eps), got.cut(eps)) > 0.95
    # exact_on_graph: approximate lists hand RAC radius 0 (the bound that holds); the exact blocks keep theirs.
    radii = []
    real = sg.rac
    monkeypatch.setattr(sg, "rac", lambda *a, **kw: radii.append(np.asarray(kw["radius"]).any()) or real(*a, **kw))
    kw = {"k": 15, "client": client, "target_clusters": 75, "exact_on_graph": True}  # 75: the n / 20 cut
    strict = scale.graph_linkage_tree(mixture, knn="partitions", **kw)
    scale.graph_linkage_tree(mixture, knn="blocks", **kw)
    assert radii == [False, True]
    assert (
        adjusted_rand_score(got.cut(got.epsilon_for_clusters(75)), strict.cut(strict.epsilon_for_clusters(75))) > 0.95
    )
    with pytest.raises(ValueError, match="'partitions'"):
        scale.graph_linkage_tree(mixture, client=client, knn="nearby")


# faiss only: the pynndescent block index costs about two minutes of numba compilation of its query path in a
# fresh environment (measured in CI), for code (`_block_index`) that differs from faiss's by one branch; run it
# with CMAL_TEST_PYNNDESCENT_BLOCKS=1.
_BLOCK_BACKENDS = ["faiss"] + (["pynndescent"] if os.environ.get("CMAL_TEST_PYNNDESCENT_BLOCKS") else [])


@pytest.mark.parametrize("backend", _BLOCK_BACKENDS)
def test_partition_steps_in_process(mixture, backend):
    """The three steps of knn_partitions run here without Dask, with a block index: recall stays high."""
    from cmal.scale.graph import _block_index, _merge_candidates, _query_block

    k, half = 8, len(mixture) // 2
    a, b = mixture[:half], mixture[half:]
    ia, ib = _block_index(a, k, 0, backend), _block_index(b, k, 1, backend)
    got = np.concatenate(
        [
            _merge_candidates(ia, 0, [_query_block(ib, a, k, half)], k)[0],
            _merge_candidates(ib, half, [_query_block(ia, b, k, 0)], k)[0],
        ]
    )
    ref, _ = knn(mixture, k, backend="exact")
    assert np.mean([len(set(x) & set(y)) / k for x, y in zip(got, ref)]) >= 0.95
