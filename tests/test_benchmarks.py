"""The benchmark scripts run (smoke settings) and produce what their docs promise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.mark.slow
def test_label_efficiency_smoke(tmp_path):
    import label_efficiency

    analyses = label_efficiency.main(
        [
            "--smoke",
            "--seeds",
            "1",
            "--strategies",
            "cluster-margin,cluster-margin@auto,margin,random",
            "--out",
            str(tmp_path),
        ]
    )
    assert set(analyses) == {"smoke", "smoke-redundant", "smoke-imbalanced", "smoke-imbalanced:macro_recall"}
    a = analyses["smoke"]
    assert a["seeds"] == [0] and a["n_labeled"] == [40, 80, 120]  # one seed keeps make test short
    cm = a["strategies"]["cluster-margin"]
    assert len(cm["accuracy_mean"]) == 3 and "diff_vs_margin_mean" in cm and 0 <= cm["aulc_mean"] <= 1
    assert "diff_vs_margin_mean" not in a["strategies"]["margin"]
    # Batch diagnostics per round: copies counted once on the redundant pool; k_m only for Cluster-Margin.
    red = analyses["smoke-redundant"]["strategies"]
    assert all(len(e["diagnostics"]["batch_sources"]) == 2 for e in red.values())  # one value per round
    assert all(1 <= v <= 60 for e in red.values() for v in e["diagnostics"]["batch_sources"])
    assert "k_m" in red["cluster-margin@auto"]["diagnostics"] and "k_m" not in red["margin"]["diagnostics"]
    assert red["cluster-margin"]["diagnostics"]["k_m"] == [75.0, 75.0]  # ceil(1.25 * 60)
    assert analyses["smoke-imbalanced:macro_recall"]["metric"] == "macro_recall"
    saved = json.loads((tmp_path / "label_efficiency.json").read_text())
    assert len(saved["raw"]["smoke"]) == 1 and len(list((tmp_path / "raw").glob("*.json"))) == 3
    html = (tmp_path / "label_efficiency.html").read_text()
    assert "plotly" in html and "cluster-margin@auto" in html and "batch diagnostics" in html


@pytest.mark.slow
def test_label_efficiency_grid_smoke_and_best_from(tmp_path):
    import label_efficiency

    grid = label_efficiency.main(
        ["--smoke", "--grid", "--seeds", "1", "--regimes", "smoke-redundant", "--out", str(tmp_path / "g")]
    )
    cells = grid["smoke-redundant:grid"]
    assert cells["ratios"] == ["1.25", "4", "auto"] and cells["sizes"] == [5, 20]
    assert np.array(cells["labels_vs_margin"]).shape == (2, 3) and cells["best"].startswith("cluster-margin@")
    assert "heatmap" in (tmp_path / "g" / "label_efficiency.html").read_text()
    # --best-from adds the grid's best setting; finished seeds are reused, not recomputed.
    best = label_efficiency.best_settings(str(tmp_path / "g" / "label_efficiency.json"))
    assert best == {"smoke-redundant": cells["best"]}
    out = tmp_path / "final"
    again = label_efficiency.main(
        [
            "--smoke",
            "--regimes",
            "smoke-redundant",
            "--strategies",
            "margin,random",
            "--best-from",
            str(tmp_path / "g" / "label_efficiency.json"),
            "--out",
            str(out),
        ]
    )
    assert list(again["smoke-redundant"]["strategies"]) == ["margin", "random", cells["best"]]
    stamp = (out / "raw" / "smoke-redundant_seed0.json").stat().st_mtime_ns
    label_efficiency.main(
        [
            "--smoke",
            "--regimes",
            "smoke-redundant",
            "--strategies",
            "margin,random",
            "--best-from",
            str(tmp_path / "g" / "label_efficiency.json"),
            "--out",
            str(out),
        ]
    )
    assert (out / "raw" / "smoke-redundant_seed0.json").stat().st_mtime_ns == stamp


def test_label_efficiency_analysis_is_paired():
    import label_efficiency
    import numpy as np

    def result(seed, accs):
        return {
            "runs": [
                {
                    "strategy": s,
                    "seed": seed,
                    "rounds": [{"n_labeled": n, "accuracy": a} for n, a in zip((100, 200, 300), acc)],
                }
                for s, acc in accs.items()
            ]
        }

    runs = [
        result(0, {"cluster-margin": [0.5, 0.7, 0.8], "margin": [0.5, 0.6, 0.7], "random": [0.5, 0.55, 0.6]}),
        result(1, {"cluster-margin": [0.6, 0.8, 0.9], "margin": [0.6, 0.8, 0.8], "random": [0.6, 0.65, 0.7]}),
    ]
    a = label_efficiency.analyse(runs, ("cluster-margin", "margin", "random"))
    cm = a["strategies"]["cluster-margin"]
    # Paired differences over rounds 1-2: seed 0 -> +0.1, seed 1 -> +0.05.
    assert cm["diff_vs_margin_mean"] == pytest.approx(0.075) and cm["seeds_better_than_margin"] == 2
    assert cm["diff_vs_margin_se"] == pytest.approx(np.std([0.1, 0.05], ddof=1) / np.sqrt(2))
    assert a["target_accuracy"] == pytest.approx(0.65)  # Random's final mean accuracy
    assert cm["labels_to_target"] == pytest.approx(100 + (0.65 - 0.55) / (0.75 - 0.55) * 100)


def test_grid_best_cell_and_spec_validation():
    import label_efficiency

    def entry(labels_vs_margin, aulc_pts):
        return {"labels_vs_margin": labels_vs_margin, "aulc_diff_vs_margin_mean": aulc_pts / 100}

    a = {
        "strategies": {
            "cluster-margin@1.25/5": entry(float("nan"), -0.05),
            "cluster-margin@auto/5": entry(float("nan"), 0.03),
        }
    }
    assert label_efficiency.grid_cells(a)["best"] == "cluster-margin@auto/5"  # nobody reaches it: AULC decides
    a["strategies"]["cluster-margin@1.25/5"] = entry(0.9, -0.05)
    assert label_efficiency.grid_cells(a)["best"] == "cluster-margin@1.25/5"  # fewer labels first
    a["strategies"]["cluster-margin@auto/5"] = entry(0.9, 0.03)
    assert label_efficiency.grid_cells(a)["best"] == "cluster-margin@auto/5"  # a tie in labels: larger AULC
    assert label_efficiency.parse_spec("cluster-margin@auto/5") == ("cluster-margin", "auto", 5.0)
    assert label_efficiency.parse_spec("cluster-margin-descending@2") == ("cluster-margin-descending", "2", None)
    for bad, match in (
        ("cluster-margin@nan", "finite number >= 1"),
        ("cluster-margin@0.5", ">= 1"),
        ("cluster-margin@4/-3", "size must be"),
        ("cluster-margin@x", "NAME@RATIO"),
        ("margin@4", "no candidate count"),
        ("cluster-random@auto", "no candidate count"),
    ):
        with pytest.raises(ValueError, match=match):
            label_efficiency.parse_spec(bad)
    # A dotted path is imported up front, so a missing module fails before any worker trains a seed model.
    with pytest.raises((ImportError, ValueError)):
        label_efficiency.parse_spec("no_such_module_for_cmal:rule")
    assert label_efficiency.parse_spec("cmal.strategies.rules:descending")[0] == "cmal.strategies.rules:descending"


def _run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=900,
    )


def _script(name: str, *args: str) -> str:
    proc = _run_script(name, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_rac_cached_smoke(tmp_path):
    # The graph is built once and cached; a second run on it finds the merges the first saved.
    cache = tmp_path / "cache"
    out = _script("rac_cached.py", "--n", "3000", "--knn", "exact", "--cache", str(cache), "--save-merges", "first")
    first = json.loads(out.strip().splitlines()[-1])
    assert first["clusters"] <= 150 and first["rounds"] > 0 and first["entry_visits"] > 0 and "kNN graph" in out
    assert len(list(cache.glob("graph_n3000_*.npz"))) == 1
    out = _script("rac_cached.py", "--n", "3000", "--knn", "exact", "--cache", str(cache), "--compare", "first")
    assert "kNN graph" not in out  # read from the cache
    assert json.loads(out.strip().splitlines()[-1])["same_merges_as"] == {"first": True}
    # Merges saved with the listed radius are not those of radius 0: kept apart, and a missing name is an error.
    out = _script("rac_cached.py", "--n", "3000", "--knn", "exact", "--cache", str(cache), "--exact-on-graph")
    assert json.loads(out.strip().splitlines()[-1])["exact_on_graph"] is True
    proc = _run_script(
        "rac_cached.py",
        "--n",
        "3000",
        "--knn",
        "exact",
        "--cache",
        str(cache),
        "--exact-on-graph",
        "--compare",
        "first",
    )
    assert proc.returncode == 2 and "--compare first: no merges saved under that name" in proc.stderr


@pytest.mark.slow
def test_scale_benchmarks_smoke(tmp_path):
    out = _script(
        "graph_hac_scale.py",
        *("--sizes", "2000,4000", "--dask", "3000", "--peer", "2000", "--ari", "1500", "--skip-exact"),
        *("--out", str(tmp_path)),
    )
    res = json.loads((tmp_path / "graph_hac_scale.json").read_text())
    row = res["graph"][0]
    # RAC stops after the stage that brings the count to n / 20 = 100 or below (the tree then cuts at 100).
    assert row["n"] == 2000 and row["knn_seconds"] > 0 and 1 <= row["clusters"] <= 100 and "peak memory" in out
    assert row["same_merges_as_numpy"] and row["rounds"] > 0 and "fitted exponent" in out
    assert row["stages"] and row["stages"][-1][1] == row["clusters"]  # (threshold, clusters) of every stage
    # Approximate lists: the engines are compared with exact_on_graph's radius 0, which the run also times (faiss:
    # approximate like pynndescent, without its compilation in a fresh process).
    _script(
        "graph_hac_scale.py",
        *("--sizes", "1500", "--knn", "faiss", "--exact-on-graph", "--dask", "0", "--peer", "0", "--ari", "0"),
        *("--skip-exact", "--in-process", "1200", "--out", str(tmp_path / "strict")),
    )
    strict_run = json.loads((tmp_path / "strict" / "graph_hac_scale.json").read_text())
    alone = strict_run["in_process"]  # graph_linkage_tree alone, its time split into the kNN graph and the rounds
    assert alone["n"] == 1200 and 0 < alone["knn_seconds"] + alone["rac_seconds"] <= alone["seconds"]
    strict = strict_run["graph"][0]
    assert strict["same_merges_as_numpy"] and strict["exact_on_graph"]["rac_seconds"] > 0
    assert 0.9 < strict["exact_on_graph"]["ari"] <= 1
    # Exact kNN in process, approximate per partition on Dask: nearly the same tree, not necessarily the same.
    assert abs(res["dask"]["dask"]["merges"] - res["dask"]["in_process"]["merges"]) <= 0.05 * 3000
    assert all(res["dask"][side][f"{part}_seconds"] > 0 for side in ("dask", "in_process") for part in ("knn", "rac"))
    assert res["peer"]["sklearn"]["clusters"] == res["peer"]["cmal"]["clusters"] == 100
    assert 0 <= res["ari"]["sklearn_ari"] <= 1 and res["ari"]["cmal_ari"] > 0.9
    # The extrapolation to 10^7 and 10^8 points is computed from the measured rows (and printed).
    assert [(r["n"], r["workers"]) for r in res["estimate"]] == [(1e7, 16), (1e7, 64), (1e8, 16), (1e8, 64)]
    assert all(r["worker_gib"] > 0 and r["hours"] > 0 for r in res["estimate"]) and "memory per worker" in out
    # A separate run (here only the Dask part, no curve) merges with the curve's file for the estimate.
    _script(
        "graph_hac_scale.py",
        "--sizes",
        "",
        "--dask",
        "2500",
        "--peer",
        "0",
        "--ari",
        "0",
        "--skip-exact",
        "--out",
        str(tmp_path / "dask_only"),
    )
    only = json.loads((tmp_path / "dask_only" / "graph_hac_scale.json").read_text())
    assert only["graph"] == [] and only["dask"]["dask"]["n"] == 2500
    import graph_hac_scale

    merged = graph_hac_scale.merge_results(
        [tmp_path / "graph_hac_scale.json", tmp_path / "dask_only" / "graph_hac_scale.json"]
    )
    assert [r["n"] for r in merged["graph"]] == [2000, 4000] and merged["dask"] == only["dask"]
    assert merged["exponent"] == pytest.approx(res["exponent"])
    out = _script(
        "graph_hac_scale.py",
        "--estimate-from",
        f"{tmp_path / 'graph_hac_scale.json'},{tmp_path / 'dask_only' / 'graph_hac_scale.json'}",
    )
    assert "fitted exponent b over 2,000, 4,000" in out and "| 1e+08 | 64 |" in out
    out = _script("selection_memmap.py", "--n", "20000", "--out", str(tmp_path))
    assert "same batch: yes" in out
    # faiss only: pynndescent would compile for ~40 s in the fresh process (its options are tested in test_knn.py).
    configs = "faiss,faiss:M=16,faiss-ivf:nlist=16:nprobe=16"  # nprobe = nlist: the inverted file searches all
    out = _script("knn_backends.py", "--sizes", "3000", "--configs", configs, "--out", str(tmp_path))
    rows = json.loads((tmp_path / "knn_backends.json").read_text())
    assert [r["config"] for r in rows] == configs.split(",") and all(r["recall"] > 0.8 for r in rows)
    assert rows[2]["recall"] > 0.999  # exhaustive, so exact: checks how the inverted file's lists are read
    assert rows[1]["options"] == {"M": 16} and "fastest with recall >= 0.95" in out


def test_notebook_times_counts_solution_cells(tmp_path):
    import nbformat
    import notebook_times

    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# t"),
            nbformat.v4.new_code_cell("import time; time.sleep(0.2)"),
            nbformat.v4.new_code_cell("# Solution 1\ntime.sleep(0.5)", metadata={"tags": ["solution"]}),
        ]
    )
    path = tmp_path / "00_tiny.ipynb"
    nbformat.write(nb, path)
    row = notebook_times.time_notebook(path, tmp_path)
    assert row["notebook"] == "00_tiny" and row["slowest_cell"] == 2
    assert 0.5 <= row["solution_seconds"] < row["seconds"]


def test_label_efficiency_on_a_feature_pool_smoke(tmp_path):
    """The feature-vector regime end to end: encoder on digits 0-4, pool of digits 5-9 as (n, 128) vectors,
    the MLP head chosen by model="auto"."""
    import label_efficiency

    analyses = label_efficiency.main(
        [
            "--smoke",
            "--regimes",
            "smoke-features",
            "--strategies",
            "cluster-margin,margin,random",
            "--out",
            str(tmp_path / "le"),
            "--feature-cache",
            str(tmp_path / "cache"),
        ]
    )
    a = analyses["smoke-features"]
    assert a["n_labeled"] == [20, 40, 60]
    assert (tmp_path / "cache" / "mnist-5to9-features-1ep-seed0.npz").exists()
    raw = json.loads((tmp_path / "le" / "label_efficiency.json").read_text())["raw"]["smoke-features"]
    # Five classes (digits 5-9); better than chance (20%) after 60 labels on every seed.
    assert all(r["rounds"][-1]["accuracy"] > 0.4 for seed in raw for r in seed["runs"])


@pytest.mark.slow
def test_beyond_the_paper_smoke(tmp_path, capsys):
    """Cold start (random, TypiClust on PCA, ProbCover on an autoencoder), class-balanced Cluster-Margin and the
    stopping replay, end to end on tiny settings; a second call reuses every saved run."""
    import beyond_the_paper

    from cmal.stopping import available_stop_rules

    report = beyond_the_paper.main(["--smoke", "--out", str(tmp_path)])
    cold = report["cold-start"]["20"]
    assert list(cold) == ["random", "typiclust@pca", "probcover@autoencoder"]
    assert all(len(e["accuracy"]) == 1 and len(e["accuracy"][0]) == 3 for e in cold.values())
    assert cold["typiclust@pca"]["wins_vs_random"][0] in (0, 1) and 1 <= cold["random"]["seed_classes"][0] <= 10
    cb = report["class-balanced"]["1.25"]
    assert set(cb["macro_recall"]) == {"cluster-margin", "cluster-margin-class-balanced"}
    assert cb["class_balanced_ahead"] in (0, 1)
    (row,) = report["stopping"]["rows"]
    assert len(row["accuracy"]) == 5 and row["kappa"][0] is None and -1 <= row["kappa"][1] <= 1
    cal = report["stopping"]["calibrated@2"]  # chosen on seed 100, judged on seed 0
    assert report["stopping"]["calibration_seeds"] == [100] and cal["on_pilots"]["within"] in (0, 1)
    assert cal["held_out"]["stops"][0] in (None, 1, 2, 3, 4) and cal["rule"]["rule"] in available_stop_rules()
    out = capsys.readouterr().out
    assert "cold start" in out and "class-balanced" in out and "stopping" in out
    stamps = {f.name: f.stat().st_mtime_ns for f in (tmp_path / "raw").glob("*.json")}
    assert len(stamps) == 6  # five runs plus the calibration seed's
    beyond_the_paper.main(["--smoke", "--out", str(tmp_path)])
    assert {f.name: f.stat().st_mtime_ns for f in (tmp_path / "raw").glob("*.json")} == stamps
