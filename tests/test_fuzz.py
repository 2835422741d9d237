"""Property-based fuzzing of every public entry point of the core: at least 1,000 generated inputs each
(empty, NaN, inf, huge, mismatched, wrong types); only the documented exceptions may escape.

Documented: ``ValueError`` (and its subclasses ``StateError``, ``ExactHACTooLargeError``,
``LabelImportError``) for bad input; the CLI returns exit status 2 (argparse usage errors raise
``SystemExit(2)``). Anything else (TypeError, IndexError, a crash, a silently wrong result) fails.
"""

from __future__ import annotations

import os
import string
import warnings
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

EXAMPLES = 1000
# Derandomized so CI is reproducible; CMAL_FUZZ_RANDOM=1 explores new inputs (run it when changing the core).
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("CMAL_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
COUNTS: Counter = Counter()

floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e308, -1e308, 1e-308]),
)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12)
arrays = hnp.arrays(dtype=st.sampled_from([np.float64, np.float32, np.int64, np.bool_]), shape=shapes, elements=None)


def probability_like(draw) -> np.ndarray:
    """Mostly valid softmax rows, sometimes broken (NaN, negative, not summing to 1, wrong shape)."""
    kind = draw(st.sampled_from(["valid", "valid", "any"]))
    if kind == "any":
        return draw(hnp.arrays(np.float64, shapes, elements=floats))
    n, c = draw(st.integers(0, 30)), draw(st.integers(1, 6))
    raw = draw(hnp.arrays(np.float64, (n, c), elements=st.floats(0, 1e6)))
    with np.errstate(all="ignore"):
        return raw / raw.sum(axis=1, keepdims=True) if c else raw


@FUZZ
@given(st.data())
def test_uncertainty(data):
    from cmal import uncertainty

    probs = probability_like(data.draw)
    kind = data.draw(st.sampled_from(["margin", "entropy", "least-confidence", "bald"]))
    multilabel = data.draw(st.booleans())
    COUNTS["uncertainty"] += 1
    try:
        values = uncertainty.score(probs, kind, multilabel=multilabel)
        chunked = uncertainty.score_chunked(
            probs, kind, multilabel=multilabel, chunk_rows=data.draw(st.integers(1, 40))
        )
    except ValueError:
        return
    assert values.shape == (probs.shape[0],) and np.isfinite(values).all()
    np.testing.assert_allclose(chunked, values, rtol=1e-5, atol=1e-6)


@FUZZ
@given(st.data())
def test_hac(data):
    from cmal.graph_hac import DisconnectedGraphWarning, graph_hac
    from cmal.hac import hac, linkage_tree

    if data.draw(st.booleans()):
        x = data.draw(hnp.arrays(np.float64, shapes, elements=floats))
    else:  # well-formed points with duplicates and zero rows
        n, d = data.draw(st.integers(1, 25)), data.draw(st.integers(1, 4))
        x = data.draw(hnp.arrays(np.float64, (n, d), elements=st.sampled_from([0.0, 1.0, -2.5, 3.0, 1e-3])))
    eps = data.draw(floats)
    metric = data.draw(st.sampled_from(["euclidean", "cosine", "manhattan"]))
    method = data.draw(st.sampled_from(["exact", "graph"]))
    k = data.draw(st.integers(-1, 30))
    COUNTS["hac"] += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DisconnectedGraphWarning)
            if method == "exact":
                labels = hac(x, eps, metric=metric)
            else:
                labels = graph_hac(x, eps, k=k, metric=metric)
    except ValueError:
        return
    assert labels.shape == (x.shape[0],) and labels.min() == 0
    assert set(np.unique(labels)) == set(range(labels.max() + 1))
    # The complete graph gives exact HAC's partition, for thresholds above floating-point noise in distances
    # (1 - cos of two identical vectors is ~1e-16 in SciPy/fastcluster, exactly 0 for collapsed duplicates).
    # Ties between linkage values make the partition depend on tie-breaking, so compare only without ties.
    if method == "graph" and k >= x.shape[0] - 1 and eps > 1e-6 and x.shape[0] > 1:
        from scipy.spatial.distance import pdist

        tree = linkage_tree(x, metric=metric)
        dist = pdist(x, metric=metric)
        if np.unique(dist).size == dist.size and np.unique(tree.heights).size == tree.heights.size:
            np.testing.assert_array_equal(labels, tree.cut(eps))


@FUZZ
@given(st.data())
def test_strategies(data):
    from cmal.strategies import PoolState, make_strategy

    name = data.draw(
        st.sampled_from(
            [
                "cluster-margin",
                "margin",
                "random",
                "entropy",
                "cluster-random",
                "coreset",
                "badge",
                "coreset-partitioned",
                "badge-partitioned",
                "cluster-margin-proportional",
                "cluster-margin-auto",
            ]
        )
    )
    probs = probability_like(data.draw)
    n = probs.shape[0] if probs.ndim else 0
    clusters = data.draw(
        st.one_of(
            hnp.arrays(np.int64, st.just((n,)), elements=st.integers(-2, 5)),
            hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=8), elements=floats),
            st.none(),
        )
    )
    labeled = data.draw(st.one_of(st.lists(st.integers(-3, n + 3), max_size=8), st.none()))
    embeddings = data.draw(st.one_of(st.none(), hnp.arrays(np.float64, st.just((n, 3)), elements=floats)))
    k_t = data.draw(st.one_of(st.integers(-2, n + 3), st.floats(allow_nan=True), st.just(True)))
    k_m = data.draw(st.one_of(st.none(), st.integers(-1, n + 5), st.just("auto")))
    COUNTS["strategies"] += 1
    try:
        strategy = make_strategy(name, k_m=k_m, random_state=data.draw(st.integers(0, 2**32 - 1)))
        state = PoolState.create(probs=probs, clusters=clusters, labeled=labeled, embeddings=embeddings)
        batch = strategy.select(state, k_t)
    except ValueError:
        return
    assert batch.size == k_t and np.unique(batch).size == batch.size
    assert not np.isin(batch, state.labeled).any() and ((batch >= 0) & (batch < state.n)).all()


@FUZZ
@given(st.binary(max_size=400), st.sampled_from(["json", "checked", "npy", "labels", "csv"]))
def test_state_loading(tmp_path_factory, raw, kind):
    from cmal.labels import LabelStore, read_labels
    from cmal.state import load_npy, read_checked, read_json

    folder = tmp_path_factory.mktemp("fuzz", numbered=True)
    path = folder / ("f.csv" if kind == "csv" else "f.npy" if kind == "npy" else "f.json")
    # Half the time: a real file with a few bytes damaged, the hard case for a loader.
    if raw and raw[0] % 2:
        good = {
            "json": b'{"a": [1, 2]}',
            "checked": b'{"sha256": "x", "payload": {"round": 1}}',
            "npy": b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }" + b" " * 60,
            "labels": b'{"sha256": "0", "payload": {"batch": [1], "classes": ["a"], "round": 1, "answers": {}}}',
            "csv": b"pool_index,label\n1,a\n",
        }[kind]
        raw = bytes(b ^ raw[i % len(raw)] if i % 7 == 0 else b for i, b in enumerate(good))
    path.write_bytes(raw)
    COUNTS["state loading"] += 1
    try:
        if kind == "json":
            read_json(path)
        elif kind == "checked":
            read_checked(path)
        elif kind == "npy":
            load_npy(path, "--file", mmap=bool(len(raw) % 2), shape=(None,))
        elif kind == "labels":
            LabelStore.open(path)
        else:
            read_labels(path)
    except ValueError:
        pass


TOKENS = [
    "run",
    "cluster",
    "select",
    "label",
    "export",
    "import",
    "--resume",
    "--out",
    "--embeddings",
    "--epsilon",
    "--target-clusters",
    "--method",
    "graph",
    "exact",
    "auto",
    "--k",
    "--probs",
    "--margins",
    "--clusters",
    "--labeled",
    "--batch-size",
    "--candidates",
    "--strategy",
    "cluster-margin",
    "margin",
    "--seed",
    "--run",
    "--session",
    "--format",
    "csv",
    "label-studio",
    "--metric",
    "cosine",
    "-1",
    "0",
    "3",
    "nan",
    "1e309",
    "",
    "--no-progress",
    "--help-not",
    "x.npy",
]


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(TOKENS), st.text(string.printable, max_size=8)), max_size=10))
def test_cli_argument_parsing(tmp_path_factory, argv):
    from cmal.cli import main

    if argv[:1] == ["run"] and "--resume" not in argv:
        argv = ["run", "--resume", *argv[1:]]  # a new run would train models; resuming checks its input first
    # module:object strategy paths import code by design; random module names are not fuzzed.
    argv = [a.replace(":", "_") for a in argv]
    folder = tmp_path_factory.mktemp("cli", numbered=True)
    argv = [str(folder / a) if a.endswith(".npy") else a for a in argv]
    COUNTS["cli"] += 1
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse: usage errors exit 2, --help/--version exit 0
        assert exit_.code in (0, 2)
        return
    assert code in (0, 2)


# Run directories under sequences of CLI commands. The directory logic is what is fuzzed, so the seed model and
# rounds (seconds each) are replaced by a stand-in that writes what a start writes first (config.json, then, if it
# gets that far, a seed stage and a session state) and may crash in between, like a killed process.
RUN_DIR_EXAMPLES = 300
GOOD = [
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
    "--strategies",
    "random",
    "--no-progress",
]
BAD = [
    ["--model", "vgg17"],
    ["--early-stopping", "2"],
    ["--batch-size", "0"],
    ["--dataset", "nothing.npz"],
    ["--target-clusters", "5000"],
    ["--seed-size", "500"],
]
command = st.one_of(
    st.tuples(st.just("new"), st.none(), st.sampled_from(["none", "config", "stage", "session"])),
    st.tuples(st.just("new"), st.sampled_from(range(len(BAD))), st.just("none")),
    st.tuples(st.just("resume"), st.booleans(), st.sampled_from(["none", "config", "stage", "session"])),
)


@settings(
    max_examples=RUN_DIR_EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("CMAL_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    pre=st.sampled_from(["missing", "empty", "junk-config", "foreign-files"]), commands=st.lists(command, max_size=5)
)
def test_cli_run_directory_sequences(tmp_path_factory, pre, commands):
    """Start, fail, fix, rerun, resume (from another folder): only exit 0 or 2 (one line), saved work is never
    changed by a refused command, a new run starts only where no work is saved, and a folder where no work is
    saved is always reusable by a valid command."""
    import contextlib
    import io
    import json
    from unittest import mock

    import cmal.loop
    from cmal.cli import main
    from cmal.rundir import foreign_entries, has_work, saved_work
    from cmal.state import write_checked

    root = tmp_path_factory.mktemp("rundirs", numbered=True)
    out = root / "runs" / "x"
    if pre != "missing":
        out.mkdir(parents=True)
    if pre == "junk-config":
        (out / "config.json").write_text(json.dumps({"config": {"dataset": "digits", "batch_size": -1}}))
    if pre == "foreign-files":
        (out / "notes.txt").write_text("mine")
    calls = []

    def stand_in(config, ds, out_dir, distribution, progress, on_round, on_epoch, oracle, resume, heartbeat):
        calls.append("resume" if resume else "new")
        if not resume:
            cmal.loop.write_json(out_dir / "config.json", {"config": config.to_dict(), "dataset": ds.describe()})
        if stop_after in ("stage", "session", "none"):
            write_checked(out_dir / "stages" / "seed0" / "stage.json", {"seed": 0})
        if stop_after in ("session", "none"):
            write_checked(out_dir / "sessions" / "random_seed0.state.json", {"round": 1, "labeled": [1]})
        if stop_after != "none":
            raise KeyboardInterrupt  # killed
        return {
            "summary": [],
            "clustering": [],
            "devices": {"kind": "cpu", "replicas": 1},
            "metric": "accuracy",
            "dataset": {"name": "digits"},
        }

    with mock.patch.object(cmal.loop, "_run", stand_in), mock.patch.object(cmal.loop, "format_table", str):
        for kind, arg, stop_after in commands:  # noqa: B007 (stand_in reads it)
            COUNTS["cli run directories"] += 1
            existed = out.exists()
            before = saved_work(out) if existed else {"stages": [], "sessions": {}}
            foreign = bool(existed and foreign_entries(out))
            files = (
                {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "lock" not in p.name}
                if out.exists()
                else {}
            )
            n_calls = len(calls)
            if kind == "new":
                argv = ["run", *GOOD, *(BAD[arg] if arg is not None else []), "--out", str(out)]
            else:
                argv = ["run", "--resume", str(out), "--no-progress"]
            err = io.StringIO()
            cwd = os.getcwd()
            try:
                if kind == "resume" and arg:
                    os.chdir(root)  # from another working directory
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    code = main(argv)
            except SystemExit as stop:
                code = stop.code
            finally:
                os.chdir(cwd)
            assert code in (0, 2, 130), (argv, code, err.getvalue())
            started = len(calls) > n_calls
            if code == 2:
                assert not started and len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
                # A refused command changed nothing that was saved.
                assert {p: p.read_bytes() for p in files} == files
            if kind == "new":
                # A new run starts exactly when its options are valid and nothing is saved (or the user's own)
                # where it would write.
                assert started == (arg is None and not has_work(before) and not foreign), (argv, err.getvalue())
                if not started:
                    assert out.exists() == existed, "a refused start created the directory"
            else:
                COUNTS["cli run directories resumed"] += started
                if started:
                    assert (out / "config.json").exists()
                elif (out / "config.json").exists() and not has_work(before):
                    # Not resumable: then the error says the folder is reusable by the corrected command.
                    assert "reuses it" in err.getvalue(), err.getvalue()
            COUNTS["cli run directories started"] += started and kind == "new"


@pytest.mark.slow
def test_cli_sequence_start_fail_fix_rerun_then_resume_from_another_folder(tmp_path):
    """The sequence a user made, with real processes: a start that fails on the data's shape, the fix, a start that
    is killed after its seed stage, the same command again, then --resume from another working directory."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from cmal.data import load_dataset

    project, other = tmp_path / "project", tmp_path / "other"
    project.mkdir()
    other.mkdir()
    ds = load_dataset("digits")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}

    def cmal(*args, cwd=project, wait=True):
        cmd = [sys.executable, "-m", "cmal", *args]
        if not wait:
            return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)

    args = [
        "run",
        "--dataset",
        "mine.npz",
        "--strategies",
        "cluster-margin,random",
        "--rounds",
        "3",
        "--batch-size",
        "10",
        "--seed-size",
        "30",
        "--min-steps",
        "40",
        "--epochs",
        "1",
        "--no-progress",
        "--out",
        "runs/x",
    ]
    np.savez(project / "mine.npz", x=ds.x_pool[:500], y=ds.y_pool[:500] + 0.5)  # scores, not class ids
    failed = cmal(*args)
    assert failed.returncode == 2 and "integer class ids" in failed.stderr, failed.stderr
    assert not (project / "runs" / "x").exists()
    np.savez(project / "mine.npz", x=ds.x_pool[:500], y=ds.y_pool[:500])  # fixed
    proc = cmal(*args, wait=False)
    deadline = time.monotonic() + 300
    while not (project / "runs" / "x" / "stages" / "seed0" / "stage.json").exists():
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = cmal(*args)
    assert again.returncode == 2 and "already holds a run" in again.stderr and "--resume runs/x" in again.stderr
    resumed = cmal("run", "--resume", str(project / "runs" / "x"), "--no-progress", cwd=other)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    results = json.loads((project / "runs" / "x" / "results.json").read_text())
    assert results["complete"] and results["config"]["dataset"] == str(project / "mine.npz")
    assert [[x["n_labeled"] for x in r["rounds"]] for r in results["runs"]] == [[30, 40, 50, 60]] * 2


def test_counts_reported():
    """Every entry point above ran at least EXAMPLES generated inputs (printed for the closing note)."""
    print("fuzzed inputs per entry point:", dict(COUNTS))
    for name in ("uncertainty", "hac", "strategies", "state loading", "cli"):
        assert COUNTS[name] >= EXAMPLES, (name, COUNTS[name])
    assert COUNTS["cli run directories"] >= RUN_DIR_EXAMPLES, COUNTS["cli run directories"]
    # Both kinds of command really got past the checks many times (the properties above are not vacuous).
    assert COUNTS["cli run directories started"] >= 50 and COUNTS["cli run directories resumed"] >= 50, COUNTS
