"""Beyond the paper: cold-start seed sets, class-balanced Cluster-Margin, and stopping rules, on paired seeds.

Three parts, each answering one question with one count over seeds (the issue's goals):

- ``cold-start``: do TypiClust / ProbCover seed sets (chosen on label-free embeddings, PCA of the pixels or a
  small autoencoder) beat random seed sets? Bundled MNIST (pool ``--pool`` images, default 5,000, test 2,000),
  seed sets of 20 and 100, then two Cluster-Margin rounds of the same size. Reported: test accuracy after the
  seed model and after rounds 1 and 2, and in how many seeds each cold-start variant beats random (paired: the
  same seed).
- ``class-balanced``: on the long-tailed pool ``imbalanced-mnist`` (1,910 images, class sizes 714 -> 11, batch
  100 for 5 rounds, the imbalanced regime of ``label_efficiency.py``), is class-balanced Cluster-Margin's
  macro-averaged recall ahead of Cluster-Margin's, at the same ``k_m`` (1.25 ``k_t``, the default, and 4 ``k_t``,
  where the rule has more candidates to balance with)? Reported: macro recall per round, the rarest class's count
  per batch, and the seeds where the class-balanced rule is ahead (mean over rounds 1-5).
- ``stopping``: every round records the agreement (Cohen's kappa) of successive models on a stop set of 2,000
  pool points and the batch's mean margin. A long run (``--stop-dataset``, default ``digits``: seed 20, batch 20,
  15 rounds) is replayed: where would each default stopping rule have stopped, against the first round whose gain
  in accuracy falls below 0.1 points (:func:`cmal.stopping.plateau_round`; ``--windows 1,2``: the round's own gain,
  and the mean gain over two rounds, less sensitive to the noise of a small test set)? Reported: the rounds per
  seed, and the seeds where the rule is within one round, early, or late (a rule that never fires is late). Then a
  rule is *calibrated* (:func:`cmal.stopping.calibrate`, 45 candidates) on runs of other seeds
  (``--calibration-seeds``, seeds 100, 101, ...) and judged on the paired seeds, which it was not chosen on.

Usage::

    python benchmarks/beyond_the_paper.py --out runs/beyond                  # all three parts, 10 seeds
    python benchmarks/beyond_the_paper.py --parts cold-start --seeds 3
    python benchmarks/beyond_the_paper.py --smoke --out /tmp/b               # tiny, for the tests

Every run is saved as soon as it is done (``raw/<part>_<variant>_seed<s>.json``) and reused by a later call with
the same ``--out``, so an interrupted benchmark continues where it stopped. Writes ``beyond_the_paper.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PARTS = ("cold-start", "class-balanced", "stopping")
#: Cold-start variants: (seed strategy, label-free embedding); random is the reference.
COLD_VARIANTS = (
    ("random", None),
    ("typiclust", "pca"),
    ("probcover", "pca"),
    ("typiclust", "autoencoder"),
    ("probcover", "autoencoder"),
)


def _run(config: Any, path: Path) -> dict[str, Any]:
    """One seed's run, read back when it was saved already (same configuration), else run and saved."""
    from cmal.loop import run
    from cmal.state import write_json

    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("config") == config.to_dict():
            return saved
    t0 = time.perf_counter()
    results = run(config, progress=False)
    results["seconds"] = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, results)
    return json.loads(path.read_text())


def _curve(results: dict[str, Any], strategy: str, metric: str = "accuracy") -> list[float]:
    run = next(r for r in results["runs"] if r["strategy"] == strategy)
    return [float(x[metric]) for x in run["rounds"]]


def cold_start(
    out: Path,
    seeds: list[int],
    sizes: tuple[int, ...],
    base: dict[str, Any],
    ae_seeds: list[int],
    variants: tuple[tuple[str, str | None], ...] = COLD_VARIANTS,
) -> dict[str, Any]:
    from cmal.config import RunConfig

    table: dict[str, Any] = {}
    for size in sizes:
        per: dict[str, dict[str, Any]] = {}
        for strategy, emb in variants:
            label = strategy if emb is None else f"{strategy}@{emb}"
            curves, classes, secs = [], [], []
            for s in ae_seeds if emb == "autoencoder" else seeds:
                config = RunConfig(
                    **base,
                    strategies=("cluster-margin",),
                    seed_size=size,
                    batch_size=size,
                    rounds=2,
                    seed=s,
                    seeds=1,
                    seed_strategy=strategy,
                    seed_embedding=emb or "pca",
                )
                res = _run(config, out / "raw" / f"cold-start_{size}_{label}_seed{s}.json")
                curves.append(_curve(res, "cluster-margin"))
                classes.append(res["clustering"][0].get("seed_classes"))
                secs.append(res["clustering"][0]["seed_select_seconds"])
            per[label] = {"accuracy": curves, "seed_select_seconds": float(np.mean(secs)), "seed_classes": classes}
        for label, entry in per.items():
            acc = np.array(entry["accuracy"])
            ref = np.array(per["random"]["accuracy"])[: len(acc)]  # the same seeds, first to last
            entry["accuracy_mean"] = acc.mean(axis=0).tolist()
            if label != "random":
                entry["wins_vs_random"] = [int(v) for v in (acc > ref).sum(axis=0)]  # per round: seeds ahead
                entry["diff_vs_random_mean"] = (acc - ref).mean(axis=0).tolist()
        table[str(size)] = per
    return table


def class_balanced(out: Path, seeds: list[int], base: dict[str, Any], ratios: tuple[str, ...]) -> dict[str, Any]:
    """Cluster-Margin and its class-balanced rule at the same ``k_m`` (each ratio of ``ratios``: the paper's
    1.25, and a wider candidate set where the rule has room to balance), paired by seed."""
    from cmal.config import RunConfig
    from cmal.strategies.cluster_margin import candidate_count

    names = ("cluster-margin", "cluster-margin-class-balanced")
    table: dict[str, Any] = {}
    for ratio in ratios:
        recall: dict[str, list[list[float]]] = {n: [] for n in names}
        accuracy: dict[str, list[list[float]]] = {n: [] for n in names}
        rarest: dict[str, list[list[float]]] = {n: [] for n in names}
        for s in seeds:
            k_m = candidate_count(base["batch_size"], float(ratio))
            config = RunConfig(**base, strategies=names, seed=s, seeds=1, candidates=k_m)
            res = _run(config, out / "raw" / f"class-balanced_km{ratio}_seed{s}.json")
            for n in names:
                recall[n].append(_curve(res, n, "macro_recall"))
                accuracy[n].append(_curve(res, n))
                run = next(r for r in res["runs"] if r["strategy"] == n)
                rarest[n].append([float(x["batch_class_min"]) for x in run["rounds"][1:]])
        cm, cb = (np.array(recall[n])[:, 1:].mean(axis=1) for n in names)  # mean over the rounds after the seed set
        table[ratio] = {
            "k_m": candidate_count(base["batch_size"], float(ratio)),
            "macro_recall": recall,
            "accuracy": accuracy,
            "macro_recall_mean": {n: np.mean(recall[n], axis=0).tolist() for n in names},
            "batch_class_min_mean": {n: float(np.mean(rarest[n])) for n in names},
            "class_balanced_ahead": int((cb > cm).sum()),
            "diff_mean": float((cb - cm).mean()),
            "n_seeds": len(seeds),
        }
    return table


def _stopping_runs(out: Path, seeds: list[int], base: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Run (or read back) Cluster-Margin for many rounds on each seed; the round records of each run."""
    from cmal.config import RunConfig

    runs = []
    for s in seeds:
        config = RunConfig(**base, strategies=("cluster-margin",), seed=s, seeds=1)
        runs.append(_run(config, out / "raw" / f"stopping_seed{s}.json")["runs"][0]["rounds"])
    return runs


def _counts(row: dict[str, Any], plateaus: list[int | None]) -> dict[str, Any]:
    """The benchmark's counts from a row of :func:`cmal.stopping.calibrate`'s table."""
    keys = ("within", "early", "late", "never_fired", "mean_offset")
    return {**{k: row[k] for k in keys}, "no_plateau": sum(p is None for p in plateaus), "stops": row["stops"]}


def stopping(
    out: Path,
    seeds: list[int],
    base: dict[str, Any],
    min_gain: float,
    windows: tuple[int, ...],
    calibration_seeds: list[int] | None = None,
) -> dict[str, Any]:
    """Run Cluster-Margin for many rounds per seed, then replay each default stopping rule and compare its stop
    round with the plateau round of the test-accuracy curve, for each plateau ``window`` (1: the first round
    whose own gain is below ``min_gain``; 2: the mean gain over two rounds, less sensitive to test-set noise).

    With ``calibration_seeds``, also choose a rule on those seeds' runs (:func:`cmal.stopping.calibrate`, its
    default grid of 45 candidates) and judge it on ``seeds``, which it was not chosen on."""
    from cmal.stopping import calibrate, plateau_round

    defaults = ("kappa", "margin")  # the shipped rules, each named by its spec
    runs = _stopping_runs(out, seeds, base)
    rows = []
    for s, records in zip(seeds, runs):
        acc = [float(r["accuracy"]) for r in records]
        rows.append(
            {
                "seed": s,
                "accuracy": acc,
                "kappa": [r.get("stop_agreement") for r in records],
                "batch_mean_margin": [r.get("batch_mean_margin") for r in records],
                "plateau_round": {str(w): plateau_round(acc, min_gain=min_gain, window=w) for w in windows},
            }
        )
    summary: dict[str, Any] = {"rows": rows, "min_gain": min_gain, "windows": list(windows), "rounds": base["rounds"]}
    for w in windows:
        judged = calibrate(runs, list(defaults), min_gain=min_gain, window=w)
        for name, row in zip(defaults, judged.table):
            summary[f"{name}@{w}"] = _counts(row, judged.plateaus)
            for r, stop in zip(rows, row["stops"]):
                r[f"{name}_round"] = stop
    if calibration_seeds:
        pilots = _stopping_runs(out, calibration_seeds, base)
        summary["calibration_seeds"] = calibration_seeds
        for w in windows:
            chosen = calibrate(pilots, min_gain=min_gain, window=w)
            pilot_row = chosen.row
            judged = calibrate(runs, [chosen.rule], min_gain=min_gain, window=w)
            summary[f"calibrated@{w}"] = {
                "rule": pilot_row["rule"],
                "on_pilots": _counts(pilot_row, chosen.plateaus),
                "held_out": _counts(judged.table[0], judged.plateaus),
            }
    return summary


def print_report(report: dict[str, Any]) -> None:
    if "cold-start" in report:
        print("\n== cold start: test accuracy after the seed model / round 1 / round 2 (mean over seeds)")
        for size, per in report["cold-start"].items():
            print(f"-- seed set and batch of {size}")
            for label, e in per.items():
                acc = " / ".join(f"{100 * v:.2f}" for v in e["accuracy_mean"])
                wins = (
                    ""
                    if label == "random"
                    else "  ahead of random in " + " / ".join(f"{w}/{len(e['accuracy'])}" for w in e["wins_vs_random"])
                )
                print(f"  {label:24s} {acc}   seed set chosen in {e['seed_select_seconds']:.1f} s{wins}")
    if "class-balanced" in report:
        print("\n== class-balanced Cluster-Margin on imbalanced-mnist: macro recall per round (mean over seeds)")
        for ratio, c in report["class-balanced"].items():
            print(f"-- k_m = {ratio} k_t = {c['k_m']}")
            for n, v in c["macro_recall_mean"].items():
                print(
                    f"  {n:32s} "
                    + " ".join(f"{100 * x:.2f}" for x in v)
                    + f"   rarest class per batch {c['batch_class_min_mean'][n]:.1f}"
                )
            print(
                f"  class-balanced ahead (mean macro recall over rounds 1-5) in {c['class_balanced_ahead']}/"
                f"{c['n_seeds']} seeds; mean difference {100 * c['diff_mean']:+.2f} points"
            )
    if "stopping" in report:
        st = report["stopping"]
        windows = st["windows"]
        print(
            f"\n== stopping: the round each default rule stops at, against the plateau round (gain below "
            f"{100 * st['min_gain']:.1f} points; mean over a window of {' or '.join(map(str, windows))} rounds)"
        )
        for row in st["rows"]:
            plateaus = ", ".join(f"window {w}: {row['plateau_round'][str(w)]}" for w in windows)
            print(
                f"  seed {row['seed']}: plateau ({plateaus}); "
                f"kappa rule {row['kappa_round']}, margin rule {row['margin_round']}"
            )
        for name in ("kappa", "margin"):
            for w in windows:
                e = st[f"{name}@{w}"]
                print(f"  {name} vs window {w}: {_count_line(e, len(st['rows']), st['rounds'])}")
        for w in windows:
            if f"calibrated@{w}" in st:
                c = st[f"calibrated@{w}"]
                params = ", ".join(f"{k}={v}" for k, v in c["rule"].items() if k != "rule")
                print(
                    f"  calibrated on seeds {st['calibration_seeds'][0]}-{st['calibration_seeds'][-1]} against "
                    f"window {w}: {c['rule']['rule']}({params})\n"
                    f"    on its pilots: {_count_line(c['on_pilots'], len(st['calibration_seeds']), st['rounds'])}\n"
                    f"    held out:      {_count_line(c['held_out'], len(st['rows']), st['rounds'])}; "
                    f"stops {c['held_out']['stops']}"
                )


def _count_line(e: dict[str, Any], n: int, rounds: int) -> str:
    offset = "n/a" if e["mean_offset"] is None else f"{e['mean_offset']:+.1f}"
    return (
        f"within one round in {e['within']}/{n} seeds (early {e['early']}, late {e['late']} of which never fired "
        f"in {rounds} rounds {e['never_fired']}; no plateau {e['no_plateau']}; mean stop - plateau {offset})"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    p.add_argument("--seeds", type=int, default=None, help="paired seeds 0..N-1 (default 10, 1 with --smoke)")
    p.add_argument("--pool", type=int, default=5_000, help="MNIST pool size of the cold-start part (default 5,000)")
    p.add_argument("--stop-dataset", default="digits", help="dataset of the stopping part (default digits)")
    p.add_argument("--stop-rounds", type=int, default=15, help="rounds of the stopping part (default 15)")
    p.add_argument(
        "--calibration-seeds",
        type=int,
        default=None,
        help="stopping: choose a rule on this many other seeds (100, 101, ...) and judge it on the paired seeds "
        "(default 10, 1 with --smoke; 0: skip)",
    )
    p.add_argument(
        "--min-gain", type=float, default=0.001, help="plateau: gain per round below this (0.001 = 0.1 points)"
    )
    p.add_argument(
        "--windows", default="1,2", help="plateau: mean gain over this many rounds, comma-separated (default 1,2)"
    )
    p.add_argument("--cb-ratios", default="4,1.25", help="k_m / k_t of the class-balanced part (default 4,1.25)")
    p.add_argument(
        "--autoencoder-seeds",
        type=int,
        default=None,
        help="seeds of the autoencoder variants of the cold-start part (default: all; each trains an autoencoder)",
    )
    p.add_argument("--smoke", action="store_true", help="tiny settings on digits, 1 seed (for the tests)")
    p.add_argument("--out", default="runs/beyond_the_paper")
    a = p.parse_args(argv)
    parts = [x for x in a.parts.split(",") if x]
    unknown = set(parts) - set(PARTS)
    if unknown:
        p.error(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    seeds = list(range(a.seeds if a.seeds is not None else (1 if a.smoke else 10)))
    out = Path(a.out)
    tiny = dict(min_steps=40, epochs=1, test_size=200)
    report: dict[str, Any] = {"seeds": seeds, "smoke": a.smoke}
    t0 = time.perf_counter()
    if "cold-start" in parts:
        base = dict(dataset="digits", **tiny) if a.smoke else dict(dataset="mnist", pool_size=a.pool, test_size=2000)
        ae_seeds = seeds if a.autoencoder_seeds is None else seeds[: a.autoencoder_seeds]
        # The smoke runs each seed strategy and each embedding once.
        variants = (COLD_VARIANTS[0], COLD_VARIANTS[1], COLD_VARIANTS[4]) if a.smoke else COLD_VARIANTS
        report["cold-start"] = cold_start(out, seeds, (20,) if a.smoke else (20, 100), base, ae_seeds, variants)
    if "class-balanced" in parts:
        base = (
            dict(dataset="imbalanced-mnist", **tiny, seed_size=40, batch_size=40, rounds=2)
            if a.smoke
            else dict(dataset="imbalanced-mnist", test_size=2000, batch_size=100, rounds=5)
        )
        ratios = ("1.25",) if a.smoke else tuple(a.cb_ratios.split(","))
        report["class-balanced"] = class_balanced(out, seeds, base, ratios)
    if "stopping" in parts:
        rounds = 4 if a.smoke else a.stop_rounds
        base = dict(dataset=a.stop_dataset, seed_size=20, batch_size=20, rounds=rounds)
        if a.smoke:
            base.update(tiny)
        n_cal = a.calibration_seeds if a.calibration_seeds is not None else (1 if a.smoke else 10)
        # Pilot seeds start at 100 so they never overlap the paired seeds the chosen rule is judged on.
        cal_seeds = list(range(100, 100 + n_cal))
        windows = tuple(int(w) for w in a.windows.split(","))
        report["stopping"] = stopping(out, seeds, base, a.min_gain, windows, cal_seeds)
    report["seconds"] = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    from cmal.state import write_json

    write_json(out / "beyond_the_paper.json", report)
    print_report(report)
    print(f"\n{time.perf_counter() - t0:.0f} s; {out / 'beyond_the_paper.json'}")
    return report


if __name__ == "__main__":
    main()
