"""The large-pool path: memory-mapped inputs, chunked margins, precomputed scores, `cmal cluster --method`."""

from __future__ import annotations

import numpy as np
import pytest

from cmal.cli import main
from cmal.state import load_npy
from cmal.strategies import ClusterMargin, MarginSampling, PoolState
from cmal.uncertainty import margin, score_chunked


@pytest.fixture
def pool(tmp_path, rng):
    n = 3000
    logits = rng.normal(size=(n, 10)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.save(tmp_path / "probs.npy", probs.astype(np.float32))
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    np.save(tmp_path / "emb.npy", emb)
    return tmp_path, probs.astype(np.float32), emb


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000, 10**6])
def test_score_chunked_equals_in_memory(pool, chunk_rows):
    d, probs, _ = pool
    mm = np.load(d / "probs.npy", mmap_mode="r")
    np.testing.assert_allclose(score_chunked(mm, chunk_rows=chunk_rows), margin(probs), rtol=1e-6)


def test_score_chunked_to_file_is_atomic_and_mapped(pool):
    d, probs, _ = pool
    out = score_chunked(np.load(d / "probs.npy", mmap_mode="r"), "entropy", chunk_rows=500, out=d / "ent.npy")
    assert isinstance(out, np.memmap) and out.shape == (3000,)
    assert not list(d.glob(".*partial*"))
    with pytest.raises(ValueError, match="rows of probs must sum to 1|sum"):
        score_chunked(np.full((4, 3), 0.5), chunk_rows=2)


def test_selection_from_precomputed_margins_equals_probs(pool, rng):
    _, probs, _ = pool
    clusters = rng.integers(0, 150, size=3000)
    labeled = rng.choice(3000, 100, replace=False)
    a = PoolState.create(probs=probs, clusters=clusters, labeled=labeled)
    b = PoolState.create(scores={"margin": score_chunked(probs, chunk_rows=256)}, clusters=clusters, labeled=labeled)
    for strategy in (ClusterMargin(random_state=4), MarginSampling(random_state=4)):
        np.testing.assert_array_equal(type(strategy)(random_state=4).select(a, 60), strategy.select(b, 60))


def test_scores_validation(rng):
    with pytest.raises(ValueError, match="unknown kind"):
        PoolState.create(scores={"bald": np.zeros(3)})
    with pytest.raises(ValueError, match="1-D float"):
        PoolState.create(scores={"margin": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="NaN"):
        PoolState.create(scores={"margin": np.array([0.1, np.nan])})
    with pytest.raises(ValueError, match="disagree"):
        PoolState.create(scores={"margin": np.zeros(3)}, clusters=np.zeros(4, dtype=int))
    # Entropy scores do not serve a margin strategy.
    state = PoolState.create(scores={"entropy": np.zeros(5)}, clusters=np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="needs probs"):
        ClusterMargin().select(state, 2)


def test_wrong_shape_memmap_is_named(pool):
    d, _, _ = pool
    with pytest.raises(ValueError, match=r"--clusters: .* has shape \(3000, 10\), expected \(rows,\)"):
        load_npy(d / "probs.npy", "--clusters", mmap=True, shape=(None,))
    # A truncated file (a crashed writer) is reported, not read as garbage.
    raw = (d / "emb.npy").read_bytes()
    (d / "bad.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="cannot read"):
        load_npy(d / "bad.npy", "--embeddings", mmap=True)


def test_cli_cluster_methods_and_select_from_margins(pool, capsys):
    d, probs, _ = pool
    for method in ("exact", "graph", "auto"):
        assert (
            main(
                [
                    "cluster",
                    "--embeddings",
                    str(d / "emb.npy"),
                    "--epsilon",
                    "3.0",
                    "--method",
                    method,
                    "--k",
                    "3000",
                    "--no-progress",
                    "--out",
                    str(d / f"c-{method}.npy"),
                ]
            )
            == 0
        )
    out = capsys.readouterr().out
    assert "graph HAC" in out and "exact HAC (average linkage)" in out and "fastcluster" in out
    # The complete graph (k >= n) gives exact HAC's clusters.
    np.testing.assert_array_equal(np.load(d / "c-graph.npy"), np.load(d / "c-exact.npy"))
    np.save(d / "margins.npy", margin(probs))
    args = ["select", "--clusters", str(d / "c-exact.npy"), "--batch-size", "20", "--seed", "1"]
    assert main(args + ["--margins", str(d / "margins.npy"), "--out", str(d / "a.npy")]) == 0
    assert main(args + ["--probs", str(d / "probs.npy"), "--out", str(d / "b.npy")]) == 0
    np.testing.assert_array_equal(np.load(d / "a.npy"), np.load(d / "b.npy"))
    assert (
        main(
            [
                "select",
                "--clusters",
                str(d / "probs.npy"),
                "--margins",
                str(d / "margins.npy"),
                "--batch-size",
                "2",
                "--out",
                str(d / "x.npy"),
            ]
        )
        == 2
    )
    assert "expected (rows,)" in capsys.readouterr().err
    assert (
        main(["cluster", "--embeddings", str(d / "emb.npy"), "--epsilon", "1", "--k", "0", "--out", str(d / "x.npy")])
        == 2
    )
