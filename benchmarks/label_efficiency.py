"""Label efficiency: how many labels each strategy needs, in three regimes, with paired statistics.

Regimes (bundled MNIST, pool 8,000, test 2,000, seed set 100, the small CNN retrained from scratch each round):

- ``large``: batch 1,000 for 4 rounds (a sizable fraction of the pool, few rounds: the paper's regime);
- ``small``: batch 200 for 5 rounds;
- ``redundant``: Repeated-MNIST (every pool image 3 times with pixel noise), batch 500 for 4 rounds, where
  uncertainty-only strategies pick near-duplicates.

Every seed uses the same seed set and seed model for all strategies (paired design). Seeds are independent
and run in parallel with ``--jobs``. Writes ``label_efficiency.json`` and ``label_efficiency.html`` (plotly
learning curves with mean ± standard error over seeds, AULC, labels to reach a target, ratio to the best baseline,
paired differences to Margin) into ``--out`` and prints the tables.

Usage::

    python benchmarks/label_efficiency.py                      # full: 10 seeds, all regimes (about 1 h per regime on 2 cores)
    python benchmarks/label_efficiency.py --smoke              # a minute: 2 seeds of a tiny setting (run by the tests)
    python benchmarks/label_efficiency.py --regimes large --seeds 3 --strategies cluster-margin,margin,random
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

REGIMES: dict[str, dict[str, Any]] = {
    "large": dict(dataset="mnist", batch_size=1000, rounds=4),
    "small": dict(dataset="mnist", batch_size=200, rounds=5),
    "redundant": dict(dataset="repeated-mnist", batch_size=500, rounds=4),
}
SMOKE = dict(dataset="digits", batch_size=40, rounds=2, seed_size=40, min_steps=40, epochs=1, pool_size=500,
             test_size=200)
DEFAULT_STRATEGIES = "cluster-margin,margin,random,entropy,coreset,badge"
REFERENCE = "cluster-margin"


def run_seed(regime: dict[str, Any], strategies: tuple[str, ...], seed: int) -> dict[str, Any]:
    """One seed of one regime (a separate process under joblib)."""
    from cmal.loop import RunConfig, run

    config = RunConfig(strategies=strategies, seeds=1, seed=seed, distribute="cpu", checkpoints=False, **regime)
    return run(config, None, progress=False)


def analyse(runs: list[dict[str, Any]], strategies: tuple[str, ...]) -> dict[str, Any]:
    """Curves, AULC, labels-to-target, ratios and paired differences from the per-seed results."""
    from cmal.metrics import aulc, labels_to_reach, mean_and_se

    seeds = sorted({r["seed"] for res in runs for r in res["runs"]})
    acc = {s: np.array([[x["accuracy"] for x in next(r for res in runs for r in res["runs"]
                                                           if r["strategy"] == s and r["seed"] == seed)["rounds"]]
                        for seed in seeds]) for s in strategies}
    labels = [x["n_labeled"] for x in runs[0]["runs"][0]["rounds"]]
    out: dict[str, Any] = {"n_labeled": labels, "seeds": seeds, "strategies": {}}
    target = float(acc["random"].mean(0)[-1]) if "random" in acc else float(np.mean([a.mean(0)[-1] for a in acc.values()]))
    out["target_accuracy"] = target
    need = {s: labels_to_reach(labels, acc[s].mean(0), target) for s in strategies}
    baselines = [s for s in strategies if s != REFERENCE]
    finite = [need[s] for s in baselines if np.isfinite(need[s])]
    best_baseline = min(finite) if finite else float("nan")
    for s in strategies:
        mean, se = mean_and_se(acc[s])
        per_seed_aulc = np.array([aulc(labels, a) for a in acc[s]])
        entry = {"accuracy_mean": mean.tolist(), "accuracy_se": se.tolist(),
                 "aulc_mean": float(per_seed_aulc.mean()), "aulc_se": float(mean_and_se(per_seed_aulc)[1]),
                 "labels_to_target": need[s], "ratio_to_best_baseline": need[s] / best_baseline}
        if "margin" in acc and s != "margin":
            # Paired: same seed set and seed model; average over the rounds after the seed round.
            diff = (acc[s][:, 1:] - acc["margin"][:, 1:]).mean(axis=1)
            d_mean, d_se = mean_and_se(diff)
            entry.update(diff_vs_margin_mean=float(d_mean), diff_vs_margin_se=float(d_se),
                         seeds_better_than_margin=int((diff > 0).sum()))
        out["strategies"][s] = entry
    return out


def table(name: str, a: dict[str, Any]) -> str:
    lines = [f"\n== {name}: {len(a['seeds'])} seeds, labels {a['n_labeled']}, target = Random's final mean accuracy "
             f"{100 * a['target_accuracy']:.2f}%",
             f"{'strategy':26s} {'final acc %':>14s} {'AULC %':>13s} {'labels to target':>17s} {'x best base':>11s} "
             f"{'vs Margin (paired) pts':>24s} {'seeds >':>8s}"]
    for s, e in a["strategies"].items():
        diff = (f"{100 * e['diff_vs_margin_mean']:+.2f} ± {100 * e['diff_vs_margin_se']:.2f}"
                if "diff_vs_margin_mean" in e else "")
        better = f"{e['seeds_better_than_margin']}/{len(a['seeds'])}" if "seeds_better_than_margin" in e else ""
        lines.append(f"{s:26s} {100 * e['accuracy_mean'][-1]:7.2f} ± {100 * e['accuracy_se'][-1]:4.2f} "
                     f"{100 * e['aulc_mean']:6.2f} ± {100 * e['aulc_se']:4.2f} {e['labels_to_target']:17.0f} "
                     f"{e['ratio_to_best_baseline']:11.2f} {diff:>24s} {better:>8s}")
    return "\n".join(lines)


def html_report(analyses: dict[str, dict[str, Any]], path: Path, meta: dict[str, Any]) -> None:
    import plotly.io as pio

    from cmal_widgets.monitor import learning_curve_figure

    parts = [f"<h1>cmal label-efficiency benchmark</h1><p>{meta['note']}</p>"]
    for i, (name, a) in enumerate(analyses.items()):
        curves = {s: {"n_labeled": a["n_labeled"], "accuracy_mean": e["accuracy_mean"],
                      "accuracy_se": e["accuracy_se"]} for s, e in a["strategies"].items()}
        fig = learning_curve_figure(curves, title=f"{name}: test accuracy (mean ± SE over {len(a['seeds'])} seeds)")
        fig.update_layout(width=760, height=440)
        parts.append(f"<h2>{name}</h2>" + pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False))
        parts.append("<pre>" + table(name, a) + "</pre>")
    path.write_text("<html><head><meta charset='utf-8'></head><body>" + "".join(parts) + "</body></html>")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--regimes", default="large,small,redundant")
    p.add_argument("--strategies", default=DEFAULT_STRATEGIES)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--jobs", type=int, default=1, help="seeds run in parallel (joblib processes)")
    p.add_argument("--out", default="runs/label-efficiency")
    p.add_argument("--smoke", action="store_true", help="tiny setting on digits, 2 seeds (about a minute)")
    a = p.parse_args(argv)
    from joblib import Parallel, delayed

    strategies = tuple(a.strategies.split(","))
    regimes = {"smoke": SMOKE} if a.smoke else {r: REGIMES[r] for r in a.regimes.split(",")}
    seeds = 2 if a.smoke else a.seeds
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    analyses, raw = {}, {}
    for name, regime in regimes.items():
        t0 = time.perf_counter()
        runs = Parallel(n_jobs=a.jobs)(delayed(run_seed)(regime, strategies, s) for s in range(seeds))
        raw[name] = runs
        analyses[name] = analyse(runs, strategies)
        analyses[name]["seconds"] = time.perf_counter() - t0
        print(table(name, analyses[name]) + f"\n({analyses[name]['seconds']:.0f} s)", flush=True)
        # Keep what is done even if a later regime is interrupted.
        from cmal.state import write_json

        write_json(out / "label_efficiency.json", {"regimes": regimes, "analysis": analyses, "raw": raw})
    html_report(analyses, out / "label_efficiency.html",
                {"note": f"strategies {', '.join(strategies)}; seeds 0..{seeds - 1}; paired design."})
    print(f"\nwrote {out / 'label_efficiency.json'} and {out / 'label_efficiency.html'}")
    return analyses


if __name__ == "__main__":
    main()
