"""load_or_prepare: one seed model per (data, training settings), reused across notebooks and re-cuts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cmal.data import load_dataset
from cmal.loop import RunConfig
from cmal.stage_cache import load_or_prepare, stage_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small():
    config = RunConfig(
        dataset="digits",
        pool_size=300,
        test_size=100,
        seed_size=30,
        min_steps=20,
        epochs=1,
        rounds=1,
        batch_size=20,
        target_clusters=20,
    )
    return config, load_dataset("digits", pool_size=300, test_size=100)


def test_key_follows_training_fields_not_round_fields(small):
    config, ds = small
    key = stage_key(config, ds, 0)
    assert stage_key(dataclasses.replace(config, batch_size=10, rounds=2, target_clusters=5), ds, 0) == key
    assert stage_key(dataclasses.replace(config, min_steps=21), ds, 0) != key
    assert stage_key(dataclasses.replace(config, seed_size=31), ds, 0) != key
    assert stage_key(config, ds, 1) != key


def test_second_call_reads_the_same_stage_back(small, tmp_path, capsys):
    config, ds = small
    first = load_or_prepare(config, tmp_path, dataset=ds, progress=False)
    assert first.cluster_info["cached"] is False
    again = load_or_prepare(config, tmp_path, dataset=ds, progress=True)
    assert "loaded from" in capsys.readouterr().out
    assert again.cluster_info["cached"] is True
    np.testing.assert_array_equal(again.seed_set, first.seed_set)
    np.testing.assert_array_equal(again.embeddings, first.embeddings)
    np.testing.assert_array_equal(again.clusters, first.clusters)
    np.testing.assert_allclose(again.probs, first.probs, atol=1e-6)
    assert again.metrics == first.metrics
    # A new cut re-cuts the cached tree: same seed model, a different number of clusters, no new folder.
    finer = load_or_prepare(dataclasses.replace(config, target_clusters=60), tmp_path, dataset=ds, progress=False)
    assert finer.cluster_info["cached"] and finer.cluster_info["n_clusters"] == 60
    np.testing.assert_array_equal(finer.embeddings, first.embeddings)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1
    # A different training setting trains a new seed model in its own folder.
    other = load_or_prepare(dataclasses.replace(config, seed_size=40), tmp_path, dataset=ds, progress=False)
    assert other.cluster_info["cached"] is False and other.seed_set.size == 40
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2
