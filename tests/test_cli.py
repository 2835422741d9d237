"""The `cmal` command: stable subcommands and flags, one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cmal.cli import main


@pytest.fixture
def arrays(tmp_path, rng):
    probs = rng.dirichlet(np.ones(4), size=120)
    emb = np.concatenate([rng.normal(c, 0.2, size=(40, 3)) for c in (0, 3, 6)])
    np.save(tmp_path / "probs.npy", probs)
    np.save(tmp_path / "emb.npy", emb)
    np.save(tmp_path / "labeled.npy", np.arange(10))
    return tmp_path


def test_cluster_then_select(arrays, capsys):
    d = arrays
    assert (
        main(["cluster", "--embeddings", str(d / "emb.npy"), "--epsilon", "2.0", "--out", str(d / "clusters.npy")]) == 0
    )
    clusters = np.load(d / "clusters.npy")
    assert clusters.shape == (120,) and clusters.dtype == np.int64 and clusters.max() + 1 == 3
    assert (
        main(["cluster", "--embeddings", str(d / "emb.npy"), "--target-clusters", "7", "--out", str(d / "c7.npy")]) == 0
    )
    assert np.load(d / "c7.npy").max() + 1 == 7
    graph = ["cluster", "--embeddings", str(d / "emb.npy"), "--target-clusters", "7", "--method", "graph", "--k", "10"]
    assert main([*graph, "--out", str(d / "g7.npy")]) == 0
    assert main([*graph, "--exact-on-graph", "--out", str(d / "g7s.npy")]) == 0
    # 120 points: exact kNN lists, whose bound needs no dropping; the same partition, through the same code path.
    np.testing.assert_array_equal(np.load(d / "g7.npy"), np.load(d / "g7s.npy"))
    assert (
        main(
            [
                "select",
                "--probs",
                str(d / "probs.npy"),
                "--clusters",
                str(d / "c7.npy"),
                "--labeled",
                str(d / "labeled.npy"),
                "--batch-size",
                "6",
                "--candidates",
                "20",
                "--strategy",
                "cluster-margin",
                "--seed",
                "3",
                "--out",
                str(d / "sel.npy"),
            ]
        )
        == 0
    )
    sel = np.load(d / "sel.npy")
    assert sel.shape == (6,) and not np.isin(sel, np.arange(10)).any()
    # Same as the Python API with the same seed.
    from cmal.strategies import ClusterMargin, PoolState

    state = PoolState.create(probs=np.load(d / "probs.npy"), clusters=np.load(d / "c7.npy"), labeled=np.arange(10))
    np.testing.assert_array_equal(sel, ClusterMargin(k_m=20, random_state=3).select(state, 6))
    assert "selected 6" in capsys.readouterr().out


def test_select_with_auto_candidates(arrays, capsys):
    d = arrays
    assert (
        main(["cluster", "--embeddings", str(d / "emb.npy"), "--target-clusters", "7", "--out", str(d / "c7.npy")]) == 0
    )
    assert (
        main(
            [
                "select",
                "--probs",
                str(d / "probs.npy"),
                "--clusters",
                str(d / "c7.npy"),
                "--batch-size",
                "5",
                "--candidates",
                "auto",
                "--seed",
                "1",
                "--out",
                str(d / "sel.npy"),
            ]
        )
        == 0
    )
    from cmal.strategies import ClusterMargin, PoolState

    state = PoolState.create(probs=np.load(d / "probs.npy"), clusters=np.load(d / "c7.npy"))
    strategy = ClusterMargin(k_m="auto", random_state=1)
    np.testing.assert_array_equal(np.load(d / "sel.npy"), strategy.select(state, 5))
    assert f"(k_m = {strategy.last_k_m})" in capsys.readouterr().out


def test_select_random_needs_only_the_pool_size(arrays):
    d = arrays
    assert (
        main(
            [
                "select",
                "--probs",
                str(d / "probs.npy"),
                "--batch-size",
                "5",
                "--strategy",
                "random",
                "--out",
                str(d / "r.npy"),
            ]
        )
        == 0
    )
    assert np.load(d / "r.npy").size == 5


def bad_runs(d):
    p, e = str(d / "probs.npy"), str(d / "emb.npy")
    np.save(d / "nan.npy", np.full((120, 4), np.nan))
    np.save(d / "dup.npy", np.array([1, 1]))
    np.save(d / "short.npy", np.zeros(5, dtype=int))
    sel = ["select", "--out", str(d / "s.npy")]
    return [
        (sel + ["--probs", p, "--batch-size", "5", "--strategy", "bogus"], "Unknown strategy 'bogus'"),
        (sel + ["--probs", p, "--clusters", str(d / "short.npy"), "--batch-size", "5"], "disagree"),
        (sel + ["--probs", p, "--batch-size", "5"], "needs --clusters"),
        (sel + ["--probs", str(d / "nan.npy"), "--batch-size", "5", "--strategy", "margin"], "NaN"),
        (
            sel + ["--probs", p, "--labeled", str(d / "dup.npy"), "--batch-size", "5", "--strategy", "margin"],
            "repeats index 1",
        ),
        (sel + ["--probs", p, "--batch-size", "500", "--strategy", "margin"], "lower k_t"),
        (
            sel + ["--probs", p, "--clusters", str(d / "short.npy"), "--batch-size", "9", "--candidates", "3"],
            "disagree",
        ),
        (sel + ["--probs", str(d / "missing.npy"), "--batch-size", "5", "--strategy", "margin"], "--probs: file"),
        (sel + ["--batch-size", "x"], "invalid int value"),
        (["cluster", "--embeddings", e, "--epsilon", "0", "--out", str(d / "c.npy")], "epsilon must be"),
        (["cluster", "--embeddings", e, "--out", str(d / "c.npy")], "one of the arguments"),
        (["run", "--dataset", "imagenet", "--out", str(d / "r")], "Unknown dataset 'imagenet'"),
        (["run", "--batch-size", "10", "--candidates", "5", "--out", str(d / "r")], "k_m must be >= k_t"),
        (["run", "--strategies", "margin,nope", "--out", str(d / "r")], "Unknown strategy 'nope'"),
        (["run", "--candidates", "many", "--out", str(d / "r")], "or 'auto'"),
        (["frobnicate"], "invalid choice"),
        (["run", "--stop", "sometimes", "--out", str(d / "r")], "stop"),
        (["run", "--stop", "kappa:threshold", "--out", str(d / "r")], "KEY=VALUE"),
        (["run", "--stop", "kappa:threshold=2", "--out", str(d / "r")], "threshold"),
        (["run", "--seed-strategy", "margin", "--out", str(d / "r")], "needs probs"),
        (["run", "--seed-embedding", "tsne", "--out", str(d / "r")], "invalid choice"),
        (sel + ["--probs", p, "--batch-size", "5", "--strategy", "coreset"], "needs --embeddings"),
        (sel + ["--probs", p, "--batch-size", "5", "--strategy", "nomodule:rule"], "Cannot import strategy"),
    ]


def exit_code(argv) -> int:
    """main()'s status, whether it returns it or argparse raises SystemExit."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def test_bad_input_exits_2_with_one_line(arrays, capsys):
    for argv, match in bad_runs(arrays):
        assert exit_code(argv) == 2, argv
        err = capsys.readouterr().err
        assert match in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
    assert not (arrays / "s.npy").exists() and not (arrays / "c.npy").exists()
    assert not (arrays / "r" / "results.json").exists()


def _cli(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "cmal", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_subprocess_error_has_no_traceback(arrays):
    out = _cli(
        "select",
        "--probs",
        str(arrays / "probs.npy"),
        "--batch-size",
        "5",
        "--candidates",
        "2",
        "--clusters",
        str(arrays / "labeled.npy"),
        "--out",
        str(arrays / "s.npy"),
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and out.stderr.startswith("cmal select: error:")


@pytest.mark.slow
def test_run_end_to_end_on_a_slice_of_mnist(tmp_path):
    out = _cli(
        "run",
        "--dataset",
        "mnist",
        "--strategies",
        "cluster-margin,margin,random",
        "--rounds",
        "2",
        "--batch-size",
        "50",
        "--seed-size",
        "50",
        "--seeds",
        "1",
        "--pool-size",
        "1000",
        "--test-size",
        "500",
        "--min-steps",
        "60",
        "--epochs",
        "2",
        "--target-clusters",
        "40",
        "--no-progress",
        "--out",
        str(tmp_path / "run"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "cluster-margin" in out.stdout and "150 labels" in out.stdout
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["complete"] and results["clustering"][0]["n_clusters"] == 40
    for r in results["runs"]:
        assert [x["n_labeled"] for x in r["rounds"]] == [50, 100, 150]
        assert {"n_labeled", "accuracy", "select_seconds"} <= r["rounds"][-1].keys()
        assert r["rounds"][-1]["accuracy"] > 0.5  # 150 real MNIST labels: far above chance (0.1)


def test_select_with_embeddings_for_geometric_strategies(arrays):
    d = arrays
    for name in ("coreset", "badge", "badge-partitioned"):
        assert (
            main(
                [
                    "select",
                    "--probs",
                    str(d / "probs.npy"),
                    "--embeddings",
                    str(d / "emb.npy"),
                    "--labeled",
                    str(d / "labeled.npy"),
                    "--batch-size",
                    "7",
                    "--strategy",
                    name,
                    "--out",
                    str(d / f"{name}.npy"),
                ]
            )
            == 0
        )
        sel = np.load(d / f"{name}.npy")
        assert sel.size == 7 and not np.isin(sel, np.arange(10)).any()


def test_stop_spec_parses_to_the_json_config_form():
    from cmal.cli import _stop_spec
    from cmal.stopping import make_stop_rule

    spec = _stop_spec("kappa:threshold=0.98,window=2")
    assert spec == {"rule": "kappa", "threshold": 0.98, "window": 2}
    rule = make_stop_rule(spec)
    assert (rule.threshold, rule.window) == (0.98, 2)
    assert _stop_spec("margin") == {"rule": "margin"}
