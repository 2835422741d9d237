"""Rounds from notebook cells: select/label/train steps, human labels, background training and cancel."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from cmal.loop import RunConfig, prepare
from cmal.session import Session

pytestmark = pytest.mark.slow

CONFIG = RunConfig(
    dataset="digits",
    pool_size=400,
    test_size=200,
    seed_size=40,
    batch_size=20,
    min_steps=40,
    epochs=1,
    distribute="cpu",
)


@pytest.fixture(scope="module")
def stage():
    return prepare(CONFIG)


def test_steps_and_records(stage, tmp_path):
    s = Session(stage, "cluster-margin", CONFIG, out=tmp_path)
    batch = s.select()
    assert batch.size == 20 and np.array_equal(s.select(), batch)  # select() twice keeps the pending batch
    with pytest.raises(ValueError, match="not labeled yet"):
        s.train_round()
    with pytest.raises(ValueError, match="shape"):
        s.label(np.zeros(3, int))
    with pytest.raises(ValueError, match="class ids"):
        s.label(np.full(20, 99))
    # A person's labels are used as given, even where they disagree with the dataset.
    human = (stage.dataset.y_pool[batch] + 1) % 10
    s.label(human)
    record = s.train_round()
    assert record["round"] == 1 and record["n_labeled"] == 60
    np.testing.assert_array_equal(s.labels[batch], human)
    saved = json.loads((tmp_path / "sessions" / "cluster-margin_seed0.json").read_text())
    assert [r["round"] for r in saved["rounds"]] == [0, 1]
    assert (tmp_path / "models" / "cluster-margin_seed0" / "round_001.keras").is_file()
    sel = np.load(tmp_path / "selections" / "cluster-margin_seed0.npz")
    np.testing.assert_array_equal(sel["labels"][-20:], human)
    with pytest.raises(ValueError, match="call select"):
        s.label()


def test_background_training_reports_progress_and_finishes(stage):
    epochs = []
    config = RunConfig(**{**CONFIG.__dict__, "min_steps": 200})
    s = Session(stage, "margin", config, on_epoch=epochs.append)
    s.select()
    s.label()
    job = s.train_round(background=True)
    with pytest.raises(RuntimeError, match="training in the background"):
        s.select()
    record = job.wait(timeout=300)
    assert job.done() and record["round"] == 1 and s.round == 1
    assert len(epochs) >= 2 and epochs[0]["strategy"] == "margin" and epochs[0]["round"] == 1


def test_cancel_leaves_the_run_directory_consistent(stage, tmp_path):
    seen = []
    config = RunConfig(**{**CONFIG.__dict__, "min_steps": 100_000})  # far longer than the test waits
    s = Session(stage, "random", config, out=tmp_path, on_epoch=seen.append)
    s.select()
    s.label()
    job = s.train_round(background=True)
    deadline = time.monotonic() + 120
    while not seen and time.monotonic() < deadline:  # watch progress: at least one epoch reported
        time.sleep(0.1)
    assert seen
    job.cancel()
    assert job.wait(timeout=120) is None and job.cancelled
    # The round was not recorded and the batch is pending again, not labeled; no partial files.
    assert s.round == 0 and len(s.records) == 1 and s.labeled.size == 40 and not s.pending_labeled
    # The saved state is still the selection's (round 0, batch pending): resuming redoes this round.
    from cmal.state import read_checked

    saved = read_checked(tmp_path / "sessions" / "random_seed0.state.json")
    assert saved["round"] == 0 and saved["pending"] is not None and len(saved["records"]) == 1
    assert not (tmp_path / "models").exists() and not list(tmp_path.rglob("*.tmp*"))
    # No second batch joins it: select() gives the same batch back, and run_round() trains on it.
    assert s.select().size == 20 and s.labeled.size == 40
    s.config = RunConfig(**{**CONFIG.__dict__, "min_steps": 20})
    record = s.run_round()
    assert record["round"] == 1 and record["n_labeled"] == 60 and s.labeled.size == 60


def test_round_records_hold_batch_diagnostics(tmp_path):
    """Every round's record counts the batch's clusters, source images (copies once) and classes; checked
    against the saved selection by hand."""
    from cmal.data import load_dataset, repeated, subset

    ds = repeated(subset(load_dataset("digits"), pool_size=600), copies=3)
    config = RunConfig(**{**CONFIG.__dict__, "batch_size": 60, "pool_size": None})
    stage = prepare(config, dataset=ds)
    s = Session(stage, "cluster-margin-auto", config, out=tmp_path)
    record = s.run_round()
    sel = np.load(tmp_path / "selections" / "cluster-margin-auto_seed0.npz")
    batch = sel["labeled"][sel["round_of"] == 1]
    assert batch.size == 60
    assert record["batch_sources"] == len(set(ds.sources[batch].tolist()))
    # k_m="auto" selects on a finer cut of the same tree: max(pool / 5, 2 k_t) = 120 clusters, not pool / 20.
    assert stage.cluster_info["n_clusters"] == 30 and s.clusters.max() + 1 == 120
    assert record["batch_clusters"] == len(set(s.clusters[batch].tolist())) == 60
    counts = np.bincount(ds.y_pool[batch], minlength=10)
    assert record["batch_class_counts"] == counts.tolist() and record["batch_class_min"] == counts.min()
    assert 60 <= record["k_m"] <= 600 and record["k_m"] == s.strategy.last_k_m
    assert 0 <= record["macro_recall"] <= 1
    # The paper's Cluster-Margin, and any run with an explicit cut, keep the stage's cut.
    np.testing.assert_array_equal(Session(stage, "cluster-margin", config).clusters, stage.clusters)
    explicit = RunConfig(**{**config.__dict__, "target_clusters": 30})
    np.testing.assert_array_equal(Session(stage, "cluster-margin-auto", explicit).clusters, stage.clusters)
    # Resuming continues with the cut the session selected with; another cut is refused, not silently used.
    again = Session(stage, "cluster-margin-auto", config, out=tmp_path, resume=True)
    assert again.round == 1 and again.records[-1]["k_m"] == record["k_m"]
    from cmal.state import StateError

    with pytest.raises(StateError, match="another cut"):
        Session(stage, "cluster-margin-auto", config, out=tmp_path, resume=True, clusters=stage.clusters)
