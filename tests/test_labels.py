"""Human labels: the label store, CSV / Label Studio export and validated import, and a run that waits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from cmal.cli import main
from cmal.labels import LabelImportError, LabelStore, export_csv, export_label_studio, read_labels

CLASSES = [str(d) for d in range(10)]


@pytest.fixture
def store(tmp_path):
    return LabelStore.create(tmp_path / "labels" / "s.json", batch=[11, 3, 25], classes=CLASSES, clusters=[0, 4, 4])


def test_csv_round_trip(store, tmp_path):
    export_csv(
        tmp_path / "batch.csv",
        store.batch,
        clusters=store.clusters,
        images=["a.png", "b.png", "c.png"],
        classes=CLASSES,
    )
    text = (tmp_path / "batch.csv").read_text().splitlines()
    assert text[1] == "pool_index,cluster,image,label" and text[2] == "11,0,a.png,"
    filled = "\n".join(text[:2] + ["11,0,a.png,7", "3,4,b.png,1", "25,4,c.png,"])
    (tmp_path / "filled.csv").write_text(filled)
    assert store.import_file(tmp_path / "filled.csv") == 2
    assert LabelStore.open(store.path).remaining().tolist() == [25]


def test_label_studio_round_trip(store, tmp_path):
    export_label_studio(
        tmp_path / "tasks.json", store.batch, ["/d/11.png", "/d/3.png", "/d/25.png"], clusters=store.clusters
    )
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert tasks[0]["data"] == {"image": "/d/11.png", "pool_index": 11, "cluster": 0}
    # What Label Studio exports after annotation (abridged): the latest annotation's choice counts.
    for task, choice in zip(tasks, ["2", "9", None]):
        task["annotations"] = (
            []
            if choice is None
            else [
                {"result": [{"value": {"choices": ["0"]}, "type": "choices"}]},
                {"result": [{"value": {"choices": [choice]}, "type": "choices"}]},
            ]
        )
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    assert store.import_file(tmp_path / "export.json") == 2
    assert [store.answer(i) for i in (11, 3, 25)] == [2, 9, None]


def test_invalid_import_reports_every_item_and_applies_nothing(store, tmp_path):
    store.give(25, 4)
    (tmp_path / "bad.csv").write_text("pool_index,label\n11,7\n999,1\n3,cat\n11,7\n25,4\n25,5\nx,1\n")
    with pytest.raises(LabelImportError) as err:
        store.import_file(tmp_path / "bad.csv")
    problems = err.value.problems
    # Line numbers are the file's; the two rows whose index is not in the batch share one line.
    assert "lines 3, 8 (2 rows): pool indices '999', 'x' are not in this batch" in problems
    assert any("line 4" in p and "unknown class 'cat'" in p for p in problems)
    assert any("line 5" in p and "listed twice with the same label" in p for p in problems)
    assert any("line 7" in p and "conflicting label ('4' at line 6, '5' here)" in p for p in problems)
    assert len(problems) == 4
    reopened = LabelStore.open(store.path)
    assert reopened.answer(11) is None and reopened.answer(25) == 4  # nothing applied
    with pytest.raises(ValueError, match="pool_index and label"):
        (tmp_path / "cols.csv").write_text("index,class\n1,2\n")
        read_labels(tmp_path / "cols.csv")


def test_store_validation(tmp_path):
    with pytest.raises(ValueError, match="repeated"):
        LabelStore.create(tmp_path / "a.json", batch=[1, 1], classes=CLASSES)
    with pytest.raises(ValueError, match="distinct"):
        LabelStore.create(tmp_path / "a.json", batch=[1], classes=["a", "a"])
    s = LabelStore.create(tmp_path / "a.json", batch=[1, 2], classes=["cat", "dog"])
    with pytest.raises(ValueError, match="unknown class 5"):
        s.give(1, 5)
    with pytest.raises(ValueError, match="mark"):
        s.mark(1, "later")
    with pytest.raises(ValueError, match="2 of 2 batch items have no label"):
        s.labels()


def _cmal(*args: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, "-m", "cmal", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


@pytest.mark.slow
def test_run_waits_for_human_labels_from_an_import(tmp_path, capsys):
    from cmal.data import load_dataset

    run = tmp_path / "run"
    proc = _cmal(
        "run",
        "--dataset",
        "digits",
        "--strategies",
        "cluster-margin",
        "--rounds",
        "1",
        "--batch-size",
        "8",
        "--seed-size",
        "20",
        "--min-steps",
        "20",
        "--epochs",
        "1",
        "--pool-size",
        "200",
        "--test-size",
        "100",
        "--oracle",
        "human",
        "--no-progress",
        "--out",
        str(run),
    )
    pending = run / "labels" / "cluster-margin_seed0.json"
    deadline = time.monotonic() + 300
    while not pending.exists():
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(1.0)
    assert proc.poll() is None, "the run must wait for labels"
    args = ["label", "export", "--run", str(run), "--session", "cluster-margin_seed0"]
    assert main(args + ["--out", str(tmp_path / "batch.csv"), "--images", str(tmp_path / "img")]) == 0
    assert len(list((tmp_path / "img").glob("*.png"))) == 8
    assert (
        main(
            args
            + ["--format", "label-studio", "--images", str(tmp_path / "img"), "--out", str(tmp_path / "tasks.json")]
        )
        == 0
    )
    y = load_dataset("digits", pool_size=200, test_size=100).y_pool
    rows = [r.split(",") for r in (tmp_path / "batch.csv").read_text().splitlines()[2:]]
    # A bad file first: reported, nothing applied, the run keeps waiting.
    (tmp_path / "bad.csv").write_text("pool_index,label\n" + f"{rows[0][0]},11\n")
    assert (
        main(["label", "import", "--run", str(run), "--session", "cluster-margin_seed0", str(tmp_path / "bad.csv")])
        == 2
    )
    assert "unknown class '11'" in capsys.readouterr().err
    assert proc.poll() is None
    (tmp_path / "good.csv").write_text("pool_index,label\n" + "".join(f"{r[0]},{y[int(r[0])]}\n" for r in rows))
    assert (
        main(["label", "import", "--run", str(run), "--session", "cluster-margin_seed0", str(tmp_path / "good.csv")])
        == 0
    )
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    sel = np.load(run / "selections" / "cluster-margin_seed0.npz")
    assert sel["labeled"].size == 28
    np.testing.assert_array_equal(sel["labels"], y[sel["labeled"]])
