"""Nothing a user does loses saved work (issue 13). Each test first plays the sequence of commands or calls a user
made when the problem was found, then checks what must hold now.

1. a failed start leaves no directory, and the fixed command runs;      test_failed_start_*
2. a Session never overwrites or rewinds another run's files;           test_session_*
3. one writer per run directory (two processes), and label writers merge; test_second_process_*, test_two_label_*
4. cancel returns the batch to pending;                                 test_cancel_*
5. label import: conflicts, re-imports, empty files, line numbers;      test_import_*, test_export_*
6. a waiting human-oracle run says what it waits for;                   test_second_process_* (its stderr)
7. --resume from another working directory;                             test_resume_from_another_directory
8. errors early and by flag;                                            test_cli_*
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cmal.cli import main
from cmal.labels import LabelImportError, LabelStore, export_csv
from cmal.state import StateError, read_checked

CLASSES = [str(d) for d in range(10)]
FAST = [
    "--dataset",
    "digits",
    "--pool-size",
    "200",
    "--test-size",
    "100",
    "--seed-size",
    "20",
    "--batch-size",
    "8",
    "--rounds",
    "1",
    "--min-steps",
    "20",
    "--epochs",
    "1",
    "--strategies",
    "cluster-margin",
    "--no-progress",
]


def exit_code(argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code


def _env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def _digits_npz(path: Path, *, valid: bool) -> Path:
    from cmal.data import load_dataset

    ds = load_dataset("digits")
    y = ds.y_pool[:600] if valid else ds.y_pool[:600] + 0.5  # scores where class ids belong: refused
    np.savez(path, x=ds.x_pool[:600], y=y)
    return path


# ------------------------------------------------------------------ 1. failed starts
@pytest.mark.slow
def test_failed_start_leaves_no_directory_and_the_fixed_command_runs(tmp_path, capsys):
    out = tmp_path / "runs" / "x"
    mine = _digits_npz(tmp_path / "mine.npz", valid=False)
    base = ["run", *FAST, "--out", out]
    for bad, says in (
        (["--dataset", mine], "integer class ids"),
        (["--model", "vgg17"], "Unknown --model 'vgg17'"),
        (["--early-stopping", "2", "--seed-size", "50"], "raise --seed-size to at least 95"),
    ):
        assert exit_code(base + bad) == 2
        assert says in capsys.readouterr().err
        assert not out.exists(), f"{bad} left {out} behind"
    fixed = _digits_npz(tmp_path / "mine.npz", valid=True)
    assert exit_code(base + ["--dataset", fixed]) == 0
    assert json.loads((out / "results.json").read_text())["complete"]
    # A second start there is refused, and says how to continue or start over.
    assert exit_code(base + ["--dataset", fixed]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and f"--resume {out}" in err and "delete the folder" in err


@pytest.mark.slow
def test_failed_start_of_an_older_version_is_reusable_and_resume_says_so(tmp_path, capsys):
    """A folder an earlier version left (config.json written, then the start failed): --resume explains, and the
    corrected command reuses the folder."""
    out = tmp_path / "x"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"config": {"dataset": "digits", "model": "vgg17"}}))
    assert exit_code(["run", "--resume", out]) == 2
    err = capsys.readouterr().err
    assert "holds no saved work" in err and "same output directory" in err
    assert exit_code(["run", *FAST, "--out", out]) == 0
    assert "cmal: reusing" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["config"]["model"] == "auto"


# ------------------------------------------------------------------ 2. sessions and other runs
CONFIG_KW = dict(
    dataset="digits",
    pool_size=200,
    test_size=100,
    seed_size=20,
    batch_size=8,
    rounds=2,
    min_steps=20,
    epochs=1,
    strategies=("cluster-margin",),
    distribute="cpu",
    target_clusters=20,
)


@pytest.fixture(scope="module")
def stage():
    from cmal.loop import RunConfig, prepare

    return prepare(RunConfig(**CONFIG_KW))


@pytest.mark.slow
def test_session_refuses_a_run_it_was_not_asked_to_resume(stage, tmp_path):
    """docs/guide/training.md's run(...) snippet, then its Session snippet on the same directory."""
    from cmal.loop import RunConfig, resume, run
    from cmal.session import Session

    config = RunConfig(**CONFIG_KW)
    out = tmp_path / "mine"
    run(config, out, progress=False)
    state = out / "sessions" / "cluster-margin_seed0.state.json"
    before = {p.name: p.read_bytes() for p in state.parent.iterdir()}
    with pytest.raises(StateError, match="already holds session 'cluster-margin_seed0' at round 2; pass resume=True"):
        Session(stage, "cluster-margin", config, out=out)
    # Another configuration is refused even when asked to resume: its rounds would mix with the run's.
    other = RunConfig(**{**CONFIG_KW, "batch_size": 5})
    with pytest.raises(StateError, match="another configuration .*batch_size 8 there, 5 here"):
        Session(stage, "cluster-margin", other, out=out, resume=True)
    with pytest.raises(StateError, match="another configuration"):
        Session(stage, "random", other, out=out)
    with pytest.raises(StateError, match="holds a run of cluster-margin; a session of 'random' there"):
        Session(stage, "random", config, out=out)
    assert {p.name: p.read_bytes() for p in state.parent.iterdir()} == before  # .prev included
    # The run's own configuration resumes it, and the run still resumes as a whole afterwards.
    with Session(stage, "cluster-margin", config, out=out, resume=True) as again:
        assert again.round == 2
        with pytest.raises(ValueError, match="has done the 2 rounds of the run"):
            again.select()  # a third round would not line up with the run's other strategies
    results = resume(out, progress=False)
    assert [x["n_labeled"] for x in results["runs"][0]["rounds"]] == [20, 28, 36]


@pytest.mark.slow
def test_session_state_never_goes_back(stage, tmp_path):
    """Two Session objects on one folder in one kernel (a cell run twice): the older one cannot rewind the files."""
    from cmal.loop import RunConfig
    from cmal.session import Session

    config = RunConfig(**CONFIG_KW)
    a = Session(stage, "margin", config, out=tmp_path)
    a.run_round()
    b = Session(stage, "margin", config, out=tmp_path, resume=True)  # round 1
    a.run_round()  # the files move to round 2
    before = {p.name: p.read_bytes() for p in (tmp_path / "sessions").iterdir()}
    with pytest.raises(StateError, match="written by another Session object since this one last read it"):
        b.run_round()
    assert {p.name: p.read_bytes() for p in (tmp_path / "sessions").iterdir()} == before
    assert read_checked(tmp_path / "sessions" / "margin_seed0.state.json")["round"] == 2
    assert read_checked(tmp_path / "sessions" / "margin_seed0.state.json.prev")["round"] >= 1
    # A stale object whose batch is labeled: its training is refused before any file of the round is written.
    c = Session(stage, "margin", config, out=tmp_path, resume=True)  # round 2
    c.select()
    c.label()
    with pytest.raises(StateError, match="another Session object"):
        a.run_round()  # c wrote since a did: a is stale now
    d = Session(stage, "margin", config, out=tmp_path, resume=True)  # the files as c left them
    d.run_round()  # ... moved to round 3 by d
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "lock" not in p.name}
    with pytest.raises(StateError, match="another Session object"):
        c.train_round()
    assert {p: p.read_bytes() for p in before} == before and c.round == 2
    for x in (a, b, c, d):
        x.close()
    with pytest.raises(StateError, match="was closed"):
        a.select()


# ------------------------------------------------------------------ 4. cancel
@pytest.mark.slow
def test_cancel_returns_the_batch_to_pending(stage, tmp_path):
    from cmal.loop import RunConfig
    from cmal.session import Session

    config = RunConfig(**{**CONFIG_KW, "min_steps": 100_000})  # far longer than the test waits
    epochs = []
    s = Session(stage, "cluster-margin", config, out=tmp_path, on_epoch=epochs.append)
    batch = s.select()
    human = (stage.dataset.y_pool[batch] + 1) % 10  # a person's answers, unlike the dataset's
    s.label(human)
    job = s.train_round(background=True)
    deadline = time.monotonic() + 120
    while not epochs and time.monotonic() < deadline:
        time.sleep(0.05)
    job.cancel()
    assert job.wait(timeout=120) is None
    # Exactly as before label(): the batch pending, not labeled; nothing recorded.
    assert s.round == 0 and s.labeled.size == 20 and not s.pending_labeled
    np.testing.assert_array_equal(s.pending, batch)
    assert (s.round_of[batch] == -1).all()
    np.testing.assert_array_equal(s.select(), batch)  # select() gives the same batch back
    s.config = RunConfig(**{**CONFIG_KW, "min_steps": 20})
    record = s.run_round()  # the answers given are kept, not re-asked
    assert record["round"] == 1 and record["n_labeled"] == 28  # 20 + k_t, not 20 + 2 k_t
    np.testing.assert_array_equal(s.labels[batch], human)
    assert np.bincount(s.round_of[s.labeled]).tolist() == [20, 8]
    s.close()


@pytest.mark.slow
def test_cancel_with_a_person_as_oracle_reads_corrected_answers(stage, tmp_path):
    """A person cancels the training to fix answers in the label store: the fixed answers are the ones trained on."""
    from cmal.loop import RunConfig
    from cmal.session import Session

    config = RunConfig(**{**CONFIG_KW, "min_steps": 100_000})
    s = Session(stage, "cluster-margin", config, out=tmp_path, oracle="human")
    batch = s.select()
    for i in batch:
        s.label_store.give(int(i), 0)  # a first, careless pass
    s.label()
    job = s.train_round(background=True)
    time.sleep(1.0)
    job.cancel()
    assert job.wait(timeout=120) is None and not s.pending_labeled
    truth = stage.dataset.y_pool[batch]
    for i, y in zip(batch, truth):
        s.label_store.give(int(i), int(y))  # corrected
    np.testing.assert_array_equal(s.label(), truth)
    s.close()


# ------------------------------------------------------------------ 3 and 6. two processes
def _popen(*args: str, cwd=None, stderr=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cmal", *args],
        stdout=subprocess.PIPE,
        stderr=stderr or subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=cwd,
    )


@pytest.mark.slow
def test_second_process_on_a_waiting_run_is_refused_and_the_wait_is_announced(tmp_path, capsys, monkeypatch):
    from cmal.data import load_dataset
    from cmal.locks import DirectoryBusyError
    from cmal.loop import resume

    run = tmp_path / "run"
    log = open(tmp_path / "stderr.txt", "w")
    proc = _popen("run", *FAST, "--oracle", "human", "--heartbeat", "1", "--out", str(run), stderr=log)
    pending = run / "labels" / "cluster-margin_seed0.json"
    deadline = time.monotonic() + 300
    while not pending.exists():
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(2.5)  # long enough for a heartbeat
    # A second process resuming the waiting run is refused, naming the first one.
    second = subprocess.run(
        [sys.executable, "-m", "cmal", "run", "--resume", str(run), "--no-progress"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert second.returncode == 2, second.stderr
    assert f"is in use by process {proc.pid}" in second.stderr and "cmal run" in second.stderr
    import cmal.data

    with monkeypatch.context() as m:  # refused before the data (and TensorFlow) load
        m.setattr(cmal.data, "load_dataset", lambda *a, **k: pytest.fail("loaded data for a busy folder"))
        with pytest.raises(DirectoryBusyError, match=f"process {proc.pid}"):
            resume(run, progress=False)
    # What the waiting run printed: what it waits for, the export command, a heartbeat.
    said = (tmp_path / "stderr.txt").read_text()
    assert "waiting for labels: cluster-margin seed 0, round 1: 8 of 8 items need a class" in said
    assert f"cmal label export --run {run} --session cluster-margin_seed0 --out" in said
    assert "still waiting for cluster-margin_seed0 round 1: 0/8 labeled" in said
    assert said.count("waiting for labels:") == 1
    # Labels still arrive from other processes (they are not run-directory writers).
    args = ["label", "export", "--run", run, "--session", "cluster-margin_seed0"]
    assert exit_code(args + ["--out", tmp_path / "batch.csv"]) == 0
    y = load_dataset("digits", pool_size=200, test_size=100).y_pool
    rows = [r.split(",") for r in (tmp_path / "batch.csv").read_text().splitlines()[2:]]
    (tmp_path / "good.csv").write_text("pool_index,label\n" + "".join(f"{r[0]},{y[int(r[0])]}\n" for r in rows))
    assert exit_code(["label", "import", "--run", run, "--session", "cluster-margin_seed0", tmp_path / "good.csv"]) == 0
    assert proc.wait(timeout=300) == 0, (tmp_path / "stderr.txt").read_text()[-2000:]
    capsys.readouterr()
    # 5: exporting from the finished run no longer writes the labeled batch again with empty labels.
    assert exit_code(args + ["--out", tmp_path / "again.csv"]) == 2
    err = capsys.readouterr().err
    assert "no batch of session 'cluster-margin_seed0' is waiting for labels" in err and "the run is complete" in err
    assert not (tmp_path / "again.csv").exists()
    # Once the first process has ended, the folder is free again.
    assert resume(run, progress=False)["complete"]


WRITER = textwrap.dedent("""
    import sys
    from cmal.labels import LabelStore
    store = LabelStore.open(sys.argv[1])
    print("ready", flush=True)
    for line in sys.stdin:
        index, label = line.split()
        store.give(int(index), int(label))
        print("ok", flush=True)
""")


def _writer(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env()
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_two_label_writers_in_two_processes_lose_no_answer(tmp_path):
    """Two tabs or kernels on one batch: each opened the store before the other answered."""
    batch = np.arange(100, 160)
    path = tmp_path / "labels" / "s.json"
    LabelStore.create(path, batch=batch, classes=CLASSES)
    a, b = _writer(path), _writer(path)
    for proc, index in ((a, 100), (b, 101), (a, 102), (b, 103)):  # four answers given alternately
        proc.stdin.write(f"{index} {index % 10}\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ok"
    assert [LabelStore.open(path).answer(i) for i in (100, 101, 102, 103)] == [0, 1, 2, 3]
    # Then both at full speed at once, 28 answers each.
    for proc, items in ((a, batch[4::2]), (b, batch[5::2])):
        proc.stdin.write("".join(f"{i} {i % 10}\n" for i in items))
        proc.stdin.flush()
    for proc, items in ((a, batch[4::2]), (b, batch[5::2])):
        assert [proc.stdout.readline().strip() for _ in items] == ["ok"] * len(items)
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    store = LabelStore.open(path)
    assert store.complete and store.labels().tolist() == (batch % 10).tolist()


# ------------------------------------------------------------------ 5. label import and export
@pytest.fixture
def store(tmp_path):
    return LabelStore.create(
        tmp_path / "run" / "labels" / "s_seed0.json", batch=[11, 3, 25], classes=CLASSES, clusters=[0, 4, 4]
    )


def test_import_conflicts_with_stored_answers_need_overwrite(store, tmp_path, capsys):
    store.give(11, 2)
    (tmp_path / "f.csv").write_text("pool_index,label\n11,7\n3,1\n")
    cmd = ["label", "import", "--run", tmp_path / "run", "--session", "s_seed0", tmp_path / "f.csv"]
    assert exit_code(cmd) == 2
    err = capsys.readouterr().err
    assert "line 2: pool index 11 is already labeled '2', the file says '7'" in err and "--overwrite" in err
    assert LabelStore.open(store.path).answer(11) == 2 and LabelStore.open(store.path).answer(3) is None
    assert exit_code(cmd + ["--overwrite"]) == 0
    assert "applied 1 new label(s), replaced 1 stored answer(s)" in capsys.readouterr().out
    assert LabelStore.open(store.path).answer(11) == 7
    # The same file again: nothing to do, and it says so.
    assert exit_code(cmd) == 0
    said = capsys.readouterr().out
    assert "all 2 label(s) in" in said and "were already applied; nothing changed" in said
    assert store.import_file(tmp_path / "f.csv") == 0 and store.last_import["unchanged"] == 2


def test_import_of_a_file_without_labels_is_an_error(store, tmp_path, capsys):
    export_csv(tmp_path / "batch.csv", store.batch, clusters=store.clusters, classes=CLASSES)
    lines = (tmp_path / "batch.csv").read_text().splitlines()
    # The labels typed into a column of the user's own instead of "label".
    (tmp_path / "wrong.csv").write_text(
        "\n".join([lines[0], lines[1] + ",class"] + [ln + f",{k}" for k, ln in enumerate(lines[2:])]) + "\n"
    )
    cmd = ["label", "import", "--run", tmp_path / "run", "--session", "s_seed0"]
    assert exit_code(cmd + [tmp_path / "wrong.csv"]) == 2
    err = capsys.readouterr().err
    assert "the label column is empty in all 3 rows; column(s) 'class' hold values" in err
    assert exit_code(cmd + [tmp_path / "batch.csv"]) == 2  # exported, never filled in
    assert "the label column is empty in all 3 rows. Write each class" in capsys.readouterr().err


def test_import_line_numbers_match_the_file_and_repeated_problems_take_one_line(tmp_path):
    batch = np.arange(20)
    s = LabelStore.create(tmp_path / "s.json", batch=batch, classes=CLASSES)
    export_csv(tmp_path / "batch.csv", batch, classes=CLASSES)  # line 1 is "# classes: ..."
    lines = (tmp_path / "batch.csv").read_text().splitlines()
    filled = lines[:2] + [
        ln + ("2.5" if k < 12 else "x" if k == 12 else f"{k % 10}.0") for k, ln in enumerate(lines[2:])
    ]
    (tmp_path / "filled.csv").write_text("\n".join(filled) + "\n")
    with pytest.raises(LabelImportError) as err:
        s.import_file(tmp_path / "filled.csv")
    assert err.value.problems == [
        "lines 3, 4, 5, 6, 7, 8 and 6 more (12 rows): unknown class '2.5' (classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)",
        "line 15: unknown class 'x' (classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)",
    ]
    assert filled[15 - 1].startswith("12,")  # line 15 of the file is item 12
    # Integer-valued numbers (what pandas writes for a column with gaps) are class ids.
    (tmp_path / "floats.csv").write_text("pool_index,label\n" + "".join(f"{i},{i % 10}.0\n" for i in batch))
    assert s.import_file(tmp_path / "floats.csv") == 20 and s.labels().tolist() == (batch % 10).tolist()


def test_export_and_import_need_the_batch_the_session_waits_for(store, tmp_path, capsys):
    from cmal.state import write_checked

    run = tmp_path / "run"
    write_checked(run / "sessions" / "s_seed0.state.json", {"round": 1, "pending": None, "labeled": []})
    (tmp_path / "answers.csv").write_text("pool_index,label\n11,1\n")
    for sub, rest in (("export", ["--out", tmp_path / "b.csv"]), ("import", [tmp_path / "answers.csv"])):
        assert exit_code(["label", sub, "--run", run, "--session", "s_seed0", *rest]) == 2
        err = capsys.readouterr().err
        assert "is waiting for labels: its round 1 batch was labeled and trained on" in err, err
        assert "cmal run --resume" in err
    assert LabelStore.open(store.path).answer(11) is None and not (tmp_path / "b.csv").exists()
    assert exit_code(["label", "export", "--run", run, "--session", "nope_seed0", "--out", tmp_path / "c.csv"]) == 2
    assert "sessions with labels here: s_seed0" in capsys.readouterr().err


# ------------------------------------------------------------------ 7. resume from another directory
@pytest.mark.slow
def test_resume_from_another_directory(tmp_path, monkeypatch, capsys):
    from cmal.loop import RunConfig, run

    _digits_npz(tmp_path / "mine.npz", valid=True)
    monkeypatch.chdir(tmp_path)

    class Crash(Exception):
        pass

    def crash(record):
        raise Crash

    config = RunConfig(**{**CONFIG_KW, "dataset": "mine.npz", "pool_size": None, "target_clusters": None})
    with pytest.raises(Crash):
        run(config, "runs/x", progress=False, on_round=crash)  # stops after round 1 of 2
    saved = json.loads((tmp_path / "runs" / "x" / "config.json").read_text())["config"]["dataset"]
    assert saved == str(tmp_path / "mine.npz")  # stored absolute
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (tmp_path / "mine.npz").rename(elsewhere / "moved.npz")  # and the data moved too
    assert exit_code(["run", "--resume", tmp_path / "runs" / "x", "--no-progress"]) == 2
    assert "does not exist; if it moved, pass its new path" in capsys.readouterr().err
    assert exit_code(["run", "--resume", tmp_path / "runs" / "x", "--dataset", "moved.npz", "--no-progress"]) == 0
    saved = json.loads((tmp_path / "runs" / "x" / "config.json").read_text())["config"]["dataset"]
    assert saved == str(elsewhere / "moved.npz")  # checked by fingerprint, then remembered
    results = json.loads((tmp_path / "runs" / "x" / "results.json").read_text())
    assert results["complete"] and [r["n_labeled"] for r in results["runs"][0]["rounds"]] == [20, 28, 36]


# ------------------------------------------------------------------ 8. errors early and by flag
@pytest.fixture
def arrays(tmp_path, rng):
    np.save(tmp_path / "probs.npy", rng.dirichlet(np.ones(4), size=120))
    np.save(tmp_path / "emb.npy", rng.normal(size=(120, 3)))
    return tmp_path


def test_cli_checks_come_before_expensive_work(arrays, monkeypatch, capsys):
    import cmal.hac
    import cmal.loop
    import cmal.stage

    def never(*args, **kwargs):
        raise AssertionError("expensive work started before the input was checked")

    monkeypatch.setattr(cmal.hac, "build_tree", never)
    monkeypatch.setattr(cmal.loop, "prepare", never)
    monkeypatch.setattr(cmal.stage, "prepare", never)
    (arrays / "adir").mkdir()
    cases = [
        (
            ["cluster", "--embeddings", arrays / "emb.npy", "--target-clusters", "500", "--out", arrays / "c.npy"],
            "--target-clusters must be between 1 and the number of rows of --embeddings (120), got 500",
        ),
        (
            ["cluster", "--embeddings", arrays / "emb.npy", "--target-clusters", "5", "--out", arrays / "adir"],
            "--out: '" + str(arrays / "adir") + "' is a directory",
        ),
        (
            ["run", *FAST, "--target-clusters", "5000", "--out", arrays / "r"],
            "--target-clusters is 5000 but the pool has 200 examples",
        ),
        (["run", *FAST, "--distribute", "tpu", "--out", arrays / "r"], "--distribute auto"),
    ]
    for argv, says in cases:
        assert exit_code(argv) == 2, argv
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (arrays / "r").exists() and not (arrays / "c.npy").exists()


def test_cli_errors_name_flags_and_files(arrays, capsys):
    d = arrays
    probs = np.load(d / "probs.npy")
    np.savez(d / "arch.npz", probs=probs)
    np.save(d / "transposed.npy", probs.T)
    np.save(d / "sigmoid.npy", np.random.default_rng(0).random((120, 4)))
    sel = ["select", "--batch-size", "5", "--strategy", "margin", "--out", d / "s.npy"]
    cases = [
        (
            sel + ["--probs", d / "arch.npz"],
            "--probs: '" + str(d / "arch.npz") + "' is an .npz archive (arrays: probs)",
        ),
        (sel + ["--probs", d / "transposed.npy"], "--probs looks transposed: its 120 columns sum to 1"),
        (sel + ["--probs", d / "sigmoid.npy"], "pass --multilabel for sigmoid outputs"),
        (["run", "--dataset", d / "probs.npy", "--out", d / "r"], "is a single .npy array, not a dataset"),
        (
            ["cluster", "--embeddings", d / "emb.npy", "--target-clusters", "0", "--out", d / "c.npy"],
            "--target-clusters must be between 1",
        ),
        (
            [
                "select",
                "--probs",
                d / "probs.npy",
                "--clusters",
                d / "emb.npy",
                "--batch-size",
                "5",
                "--out",
                d / "s.npy",
            ],
            "expected (rows,)",
        ),
    ]
    for argv, says in cases:
        assert exit_code(argv) == 2, argv
        err = capsys.readouterr().err
        assert says in err, (argv, err)
        for python_name in ("n_clusters", "multilabel=True", "kind=", "batch_size", "seed_size", "'NpzFile'"):
            assert python_name not in err, (argv, err)


def test_cli_finds_a_dotted_path_rule_in_the_current_folder(arrays):
    """The installed `cmal` script (not `python -m`, which adds the folder itself) run from the rule's folder."""
    script = Path(sys.executable).parent / "cmal"
    if not script.exists():
        pytest.skip(f"no console script at {script} (cmal not installed in this environment)")
    np.save(arrays / "clusters.npy", np.arange(120) % 12)
    (arrays / "my_rules.py").write_text(
        textwrap.dedent("""
        def hardest_first(groups, k_t, rng, scores=None):
            return list(range(k_t))          # the first k_t candidates: enough to be found and called
    """)
    )
    done = subprocess.run(
        [
            str(script),
            "select",
            "--probs",
            "probs.npy",
            "--clusters",
            "clusters.npy",
            "--batch-size",
            "6",
            "--strategy",
            "my_rules:hardest_first",
            "--out",
            "sel.npy",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=arrays,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert np.load(arrays / "sel.npy").size == 6


# ------------------------------------------------------------------ found by review
def test_an_old_store_object_cannot_write_over_the_next_batch(tmp_path):
    path = tmp_path / "labels" / "s.json"
    old = LabelStore.create(path, batch=[1, 2, 3], classes=CLASSES)
    stale = LabelStore.open(path)
    LabelStore.create(path, batch=[4, 5, 6], classes=CLASSES, round=2).give(4, 9)  # the next round's batch
    (tmp_path / "f.csv").write_text("pool_index,label\n1,2\n")
    for write in (lambda: stale.import_file(tmp_path / "f.csv"), lambda: old.give(2, 3)):
        with pytest.raises(StateError, match="now holds another batch"):
            write()
    fresh = LabelStore.open(path)
    assert fresh.batch.tolist() == [4, 5, 6] and fresh.answer(4) == 9


def test_flags_are_not_written_into_paths():
    from cmal.cli import _with_flags

    said = _with_flags("run", "'exp/seed_size/r1' already holds a run; lower rounds, batch_size or seed_size.")
    assert said == "'exp/seed_size/r1' already holds a run; lower --rounds, --batch-size or --seed-size."
    assert _with_flags("run", "epochs must be >= 1, got 0.") == "--epochs must be >= 1, got 0."
    assert (
        _with_flags("select", "probs rows must sum to 1; or pass multilabel=True")
        == "--probs rows must sum to 1; or pass --multilabel"
    )
    assert _with_flags("select", "k_m='auto' needs more clusters than k_t") == "k_m='auto' needs more clusters than k_t"


def test_the_lock_of_a_deleted_folder_is_not_shared(tmp_path):
    """A notebook deletes its output folder (shutil.rmtree) and runs again while an old session still holds it."""
    import shutil

    from cmal.locks import DirectoryLock

    folder = tmp_path / "run"
    probe = (
        "from cmal.locks import DirectoryLock, DirectoryBusyError\n"
        f"try:\n    DirectoryLock({str(folder)!r}).acquire(); "
        "print('free')\nexcept DirectoryBusyError:\n    print('busy')"
    )

    def ask() -> str:
        return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env()).stdout.strip()

    old = DirectoryLock(folder).acquire()
    shutil.rmtree(folder)
    new = DirectoryLock(folder).acquire()
    assert ask() == "busy"
    old.release()
    assert ask() == "busy"
    new.release()
    assert ask() == "free"


def test_a_broken_rule_fails_before_the_run_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "broken_rules_13", raising=False)  # a module name no other test imports
    (tmp_path / "broken_rules_13.py").write_text(
        "def bad_sig(groups):\n    return [0]\ndef dupes(groups, k_t, rng):\n    return [0] * k_t\n"
    )
    for rule, says in (("bad_sig", "TypeError"), ("dupes", "distinct")):
        assert exit_code(["run", *FAST, "--strategies", f"broken_rules_13:{rule}", "--out", "runs/r"]) == 2
        err = capsys.readouterr().err
        assert f"strategy 'broken_rules_13:{rule}' fails on a small test pool" in err and says in err, err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()
    np.save(tmp_path / "p.npy", np.full((20, 2), 0.5))
    np.save(tmp_path / "c.npy", np.arange(20) % 4)
    assert (
        exit_code(
            [
                "select",
                "--probs",
                "p.npy",
                "--clusters",
                "c.npy",
                "--batch-size",
                "3",
                "--strategy",
                "broken_rules_13:bad_sig",
                "--out",
                "s.npy",
            ]
        )
        == 2
    )
    assert "--strategy broken_rules_13:bad_sig failed: TypeError" in capsys.readouterr().err


def test_new_runs_refuse_session_folders_foreign_files_and_keep_permissions(tmp_path):
    from cmal.loop import RunConfig, run
    from cmal.state import write_checked, write_json

    config = RunConfig(**CONFIG_KW)
    sessions = tmp_path / "cells"
    write_checked(sessions / "sessions" / "margin_seed0.state.json", {"round": 1})
    with pytest.raises(StateError, match=r"holds sessions saved by Session\(\.\.\.\) .*resume=True"):
        run(config, sessions, progress=False)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    with pytest.raises(StateError, match="holds files of its own \\(todo.txt\\)"):
        run(config, notes, progress=False)
    assert sorted(p.name for p in notes.iterdir()) == ["todo.txt"]
    # Files are readable as a plain open() would make them (not owner-only): several accounts may label a batch.
    write_json(tmp_path / "f.json", {})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_spreadsheet_csv_files_and_re_exports(store, tmp_path, capsys):
    (tmp_path / "bom.csv").write_text("\ufeffpool_index,label\n11,3\n", encoding="utf-8")
    assert store.import_file(tmp_path / "bom.csv") == 1
    (tmp_path / "semi.csv").write_text("pool_index;label\n3;1\n")
    with pytest.raises(ValueError, match="separates columns with ';'"):
        store.import_file(tmp_path / "semi.csv")
    # A re-export shows what is answered; importing it back changes nothing.
    cmd = ["label", "export", "--run", tmp_path / "run", "--session", "s_seed0", "--out", tmp_path / "again.csv"]
    assert exit_code(cmd) == 0
    rows = (tmp_path / "again.csv").read_text().splitlines()[2:]
    assert rows == ["11,0,,3", "3,4,,", "25,4,,"]
    assert store.import_file(tmp_path / "again.csv") == 0 and store.last_import["unchanged"] == 1
