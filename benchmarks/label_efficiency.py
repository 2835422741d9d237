"""Label efficiency: how many labels each strategy needs, in seven regimes, with paired statistics.

Regimes (bundled MNIST, test 2,000 balanced, seed set 100, the small CNN retrained from scratch each round):

- ``large``: pool 8,000, batch 1,000 for 4 rounds (a sizable fraction of the pool, few rounds);
- ``small``: pool 8,000, batch 200 for 5 rounds;
- ``redundant``: Repeated-MNIST (2,666 images 3 times with pixel noise), batch 500 for 4 rounds;
- ``redundant-large``: ``redundant-mnist`` (1,600 images 5 times with pixel noise 0.1), batch 800 (10% of the
  pool) for 3 rounds: heavy near-duplication and batches that are a large share of the pool, the paper's setting
  in miniature;
- ``imbalanced``: ``imbalanced-mnist`` (1,910 images, class sizes falling geometrically 714 -> 11), batch 100 for
  5 rounds; scored by accuracy on the balanced test set and by macro-averaged recall;
- ``features`` and ``features-large``: a pool of 3,888 feature vectors (128 values each) of MNIST digits 5-9,
  computed by an encoder trained only on digits 0-4 (``benchmarks/feature_pool.py``), with the MLP head
  (``model="auto"``); seed set 25 and batch 25 for 6 rounds, or seed set 50 and batch 250 for 3 rounds.

Strategies are registered names, or Cluster-Margin variants written ``NAME@RATIO`` / ``NAME@RATIO/SIZE``:
``cluster-margin@4`` is ``k_m = 4 k_t``, ``cluster-margin@auto`` the adaptive ``k_m``, ``cluster-margin@4/5``
the same on a cut with clusters of 5 pool points on average (default: the loop's cut, pool / 20 clusters, or for
``k_m="auto"`` max(pool / 5, 2 k_t) clusters, see ``cmal.stage.auto_cut``). Every seed uses the same
seed set, seed model and HAC tree for all strategies (paired design); each seed is one process (``--jobs``)
and is saved as soon as it is done (``raw/<regime>_seed<s>.json``), so an interrupted run continues where it
stopped.

``--grid`` runs the ``k_m`` x granularity study in ``redundant-large`` and ``imbalanced``: ``k_m / k_t`` in
{1.25, 2, 4, 10} and ``auto``, mean cluster size in {5, 20, 100}, on seeds 100, 101, ... (never the seeds the
final tables use), and reports a heatmap of labels-to-target relative to Margin. ``--best-from GRID.json``
adds each regime's best grid setting (chosen on the grid seeds) to the strategies of a normal run.

Writes ``label_efficiency.json`` and ``label_efficiency.html`` (learning curves with mean ± standard error over
seeds, AULC, labels to reach a target, paired differences to Margin, batch diagnostics per round, heatmaps) into
``--out`` and prints the tables.

Usage::

    python benchmarks/label_efficiency.py                         # 10 seeds, all seven regimes (hours on 2 cores)
    python benchmarks/label_efficiency.py --grid --out runs/grid  # the k_m x granularity study, 3 seeds
    python benchmarks/label_efficiency.py --regimes redundant-large,imbalanced \\
        --best-from runs/grid/label_efficiency.json --strategies cluster-margin,cluster-margin@auto,margin,random
    python benchmarks/label_efficiency.py --smoke                 # about two minutes (run by the tests)
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
sys.path.insert(0, str(Path(__file__).resolve().parent))  # feature_pool.py, beside this file

REGIMES: dict[str, dict[str, Any]] = {
    "large": dict(dataset="mnist", batch_size=1000, rounds=4),
    "small": dict(dataset="mnist", batch_size=200, rounds=5),
    "redundant": dict(dataset="repeated-mnist", batch_size=500, rounds=4),
    "redundant-large": dict(dataset="redundant-mnist", batch_size=800, rounds=3),
    "imbalanced": dict(dataset="imbalanced-mnist", batch_size=100, rounds=5),
    # Feature vectors from an encoder trained on other classes (benchmarks/feature_pool.py), the MLP head:
    # small batches, then batches of 6% of the pool.
    "features": dict(dataset="mnist-5to9-features", seed_size=25, batch_size=25, rounds=6),
    "features-large": dict(dataset="mnist-5to9-features", seed_size=50, batch_size=250, rounds=3),
}
_TINY = dict(dataset="digits", seed_size=40, min_steps=40, epochs=1, test_size=200)
SMOKE_REGIMES: dict[str, dict[str, Any]] = {
    "smoke": dict(_TINY, batch_size=40, rounds=2, pool_size=500),
    "smoke-redundant": dict(_TINY, batch_size=60, rounds=2, copies=4),
    "smoke-imbalanced": dict(_TINY, batch_size=30, rounds=2, imbalance=16.0),
    "smoke-features": dict(
        dataset="mnist-5to9-features",
        seed_size=20,
        min_steps=40,
        epochs=1,
        batch_size=20,
        rounds=2,
        pool_size=600,
        test_size=200,
        encoder_epochs=1,
    ),
}
GRID_REGIMES = ("redundant-large", "imbalanced")
GRID_RATIOS = ("1.25", "2", "4", "10", "auto")
GRID_SIZES = (5, 20, 100)
GRID_FIRST_SEED = (
    100  # grid seeds never overlap the seeds of the final tables (0..9 by default, 10..19 in docs/guide/benchmarks.md)
)
DEFAULT_STRATEGIES = "cluster-margin,cluster-margin@auto,margin,random,entropy,coreset,badge"
REFERENCE = "cluster-margin"
DIAGNOSTICS = ("k_m", "batch_clusters", "batch_sources", "batch_class_min", "batch_class_entropy")


def parse_spec(spec: str) -> tuple[str, str | None, float | None]:
    """``"cluster-margin@4/5"`` -> ``("cluster-margin", "4", 5.0)``; a plain name -> ``(name, None, None)``.

    Raises ValueError (naming the spec) on a ratio that is not ``auto`` or a finite number >= 1, a size that is
    not a number > 0, or a variant of a strategy whose candidate count cannot be set."""
    import math

    from cmal.strategies import ClusterMargin, make_strategy

    name, _, variant = spec.partition("@")
    if not variant:
        if ":" in name or "." in name:
            make_strategy(name)  # a dotted path that does not import fails here, not in every worker later
        return name, None, None
    ratio, _, size = variant.partition("/")
    try:
        r = None if ratio == "auto" else float(ratio)
        g = float(size) if size else None
    except ValueError:
        raise ValueError(
            f"strategy spec {spec!r}: write NAME@RATIO or NAME@RATIO/SIZE, e.g. "
            "cluster-margin@4/5 or cluster-margin@auto"
        ) from None
    if r is not None and not (math.isfinite(r) and r >= 1):
        raise ValueError(f"strategy spec {spec!r}: k_m / k_t must be 'auto' or a finite number >= 1, got {ratio}")
    if g is not None and not (math.isfinite(g) and g > 0):
        raise ValueError(f"strategy spec {spec!r}: the mean cluster size must be a number > 0, got {size}")
    built = make_strategy(name)
    if not isinstance(built, ClusterMargin) or built.k_m == "all":
        raise ValueError(
            f"strategy spec {spec!r}: {name!r} has no candidate count to vary; variants apply to "
            "Cluster-Margin strategies (cluster-margin and its rule variants)"
        )
    return name, ratio, g


def regime_dataset(regime: dict[str, Any]) -> Any:
    """The regime's data: a named dataset, optionally repeated (``copies``) or made long-tailed (``imbalance``)."""
    from cmal.data import load_dataset, long_tailed, repeated, subset

    if regime["dataset"] == "mnist-5to9-features":
        from feature_pool import CACHE_DIR, feature_pool

        pool = feature_pool(regime.get("feature_cache", CACHE_DIR), encoder_epochs=regime.get("encoder_epochs", 10))
        ds = subset(pool, pool_size=regime.get("pool_size"), test_size=regime.get("test_size"))
    else:
        ds = load_dataset(regime["dataset"], pool_size=regime.get("pool_size"), test_size=regime.get("test_size"))
    if "copies" in regime:
        ds = repeated(ds, copies=regime["copies"])
    if "imbalance" in regime:
        ds = long_tailed(ds, imbalance=regime["imbalance"])
    return subset(ds)


def run_seed(regime: dict[str, Any], specs: tuple[str, ...], seed: int) -> dict[str, Any]:
    """One seed of one regime: one seed stage shared by every strategy (a separate process under joblib)."""
    from cmal.loop import RunConfig, derive_seed, prepare
    from cmal.session import Session
    from cmal.strategies import make_strategy
    from cmal.strategies.cluster_margin import candidate_count

    fields = {
        k: v
        for k, v in regime.items()
        if k not in ("copies", "imbalance", "pool_size", "test_size", "encoder_epochs", "feature_cache")
    }
    config = RunConfig(strategies=("margin",), seeds=1, seed=seed, distribute="cpu", checkpoints=False, **fields)
    ds = regime_dataset(regime)
    stage = prepare(config, seed, dataset=ds)
    stages: dict[float, Any] = {}
    runs = []
    for spec in specs:
        name, ratio, size = parse_spec(spec)
        if size is not None and size not in stages:
            stages[size] = stage.recut(mean_cluster_size=size)
        st = stage if size is None else stages[size]
        if ratio is None:
            k_m: Any = config.k_m
        else:
            k_m = "auto" if ratio == "auto" else candidate_count(config.batch_size, float(ratio))
        strategy = make_strategy(name, k_m=k_m, random_state=derive_seed(seed, "select", spec))
        strategy.name = spec
        # A size in the spec fixes the cut; without one, the loop's rule applies (k_m="auto" cuts finer).
        session = Session(st, strategy, config, clusters=st.clusters if size is not None else None)
        for _ in range(config.rounds):
            session.run_round()
        runs.append(
            {"strategy": spec, "seed": seed, "rounds": session.records, "n_clusters": int(session.clusters.max()) + 1}
        )  # the cut the session selected with
    return {"seed": seed, "clustering": stage.cluster_info, "runs": runs}


def analyse(runs: list[dict[str, Any]], strategies: tuple[str, ...], metric: str = "accuracy") -> dict[str, Any]:
    """Curves, AULC, labels-to-target, ratios, paired differences and batch diagnostics from per-seed results.

    The target is Random's final mean ``metric`` (or, without Random, the strategies' mean final value).
    """
    from cmal.metrics import aulc, labels_to_reach, mean_and_se

    seeds = sorted({r["seed"] for res in runs for r in res["runs"]})
    found = {(r["strategy"], r["seed"]): r for res in runs for r in res["runs"]}
    acc = {s: np.array([[x[metric] for x in found[s, seed]["rounds"]] for seed in seeds]) for s in strategies}
    labels = [x["n_labeled"] for x in runs[0]["runs"][0]["rounds"]]
    out: dict[str, Any] = {"metric": metric, "n_labeled": labels, "seeds": seeds, "strategies": {}}
    target = (
        float(acc["random"].mean(0)[-1]) if "random" in acc else float(np.mean([a.mean(0)[-1] for a in acc.values()]))
    )
    out["target_accuracy"] = target
    need = {s: labels_to_reach(labels, acc[s].mean(0), target) for s in strategies}
    baselines = [s for s in strategies if not s.startswith(REFERENCE)]
    finite = [need[s] for s in baselines if np.isfinite(need[s])]
    best_baseline = min(finite) if finite else float("nan")
    for s in strategies:
        mean, se = mean_and_se(acc[s])
        per_seed_aulc = np.array([aulc(labels, a) for a in acc[s]])
        entry: dict[str, Any] = {
            "accuracy_mean": mean.tolist(),
            "accuracy_se": se.tolist(),
            "aulc_mean": float(per_seed_aulc.mean()),
            "aulc_se": float(mean_and_se(per_seed_aulc)[1]),
            "labels_to_target": need[s],
            "ratio_to_best_baseline": need[s] / best_baseline,
        }
        if "margin" in acc:
            entry["labels_vs_margin"] = need[s] / need["margin"] if np.isfinite(need["margin"]) else float("nan")
        if "margin" in acc and s != "margin":
            # Paired: same seed set and seed model; average over the rounds after the seed round.
            diff = (acc[s][:, 1:] - acc["margin"][:, 1:]).mean(axis=1)
            d_mean, d_se = mean_and_se(diff)
            a_diff = per_seed_aulc - np.array([aulc(labels, a) for a in acc["margin"]])
            a_mean, a_se = mean_and_se(a_diff)
            entry.update(
                diff_vs_margin_mean=float(d_mean),
                diff_vs_margin_se=float(d_se),
                seeds_better_than_margin=int((diff > 0).sum()),
                aulc_diff_vs_margin_mean=float(a_mean),
                aulc_diff_vs_margin_se=float(a_se),
            )
        diag = {}
        for key in DIAGNOSTICS:
            rows = [[x.get(key) for x in found[s, seed]["rounds"][1:]] for seed in seeds]
            if all(v is not None for row in rows for v in row):
                diag[key] = np.mean(np.array(rows, dtype=float), axis=0).tolist()
        entry["diagnostics"] = diag
        out["strategies"][s] = entry
    return out


def _fmt(v: float, scale: float = 1.0, spec: str = ".0f") -> str:
    return "-" if v is None or not np.isfinite(v) else format(v * scale, spec)


def table(name: str, a: dict[str, Any]) -> str:
    metric = a.get("metric", "accuracy").replace("_", " ")
    whose = "Random's final" if "random" in a["strategies"] else "the strategies' mean final"
    lines = [
        f"\n== {name}: {metric}, {len(a['seeds'])} seeds, labels {a['n_labeled']}, target = {whose} "
        f"mean {metric} {100 * a['target_accuracy']:.2f}%",
        f"{'strategy':26s} {'final %':>14s} {'AULC %':>13s} {'labels to target':>17s} {'x Margin':>9s} "
        f"{'vs Margin, rounds (pts)':>24s} {'seeds >':>8s} {'AULC vs Margin (pts)':>21s}",
    ]
    for s, e in a["strategies"].items():
        diff = (
            f"{100 * e['diff_vs_margin_mean']:+.2f} ± {100 * e['diff_vs_margin_se']:.2f}"
            if "diff_vs_margin_mean" in e
            else ""
        )
        a_diff = (
            f"{100 * e['aulc_diff_vs_margin_mean']:+.2f} ± {100 * e['aulc_diff_vs_margin_se']:.2f}"
            if "aulc_diff_vs_margin_mean" in e
            else ""
        )
        better = f"{e['seeds_better_than_margin']}/{len(a['seeds'])}" if "seeds_better_than_margin" in e else ""
        lines.append(
            f"{s:26s} {100 * e['accuracy_mean'][-1]:7.2f} ± {100 * e['accuracy_se'][-1]:4.2f} "
            f"{100 * e['aulc_mean']:6.2f} ± {100 * e['aulc_se']:4.2f} {_fmt(e['labels_to_target']):>17s} "
            f"{_fmt(e.get('labels_vs_margin', float('nan')), spec='.2f'):>9s} {diff:>24s} {better:>8s} "
            f"{a_diff:>21s}"
        )
    return "\n".join(lines)


def diagnostics_table(name: str, a: dict[str, Any]) -> str:
    """Per round after the seed round, mean over seeds: k_m used, distinct clusters / source images in the batch,
    the rarest class's count and the class entropy (bits) of the batch."""
    labels = a["n_labeled"][1:]
    lines = [f"\n-- {name}: batch diagnostics, mean over seeds, rounds ending at {labels} labels"]
    for s, e in a["strategies"].items():
        d = e["diagnostics"]
        cells = [
            f"{k.replace('batch_', '')}=" + "/".join(_fmt(v, spec=".1f" if "entropy" in k else ".0f") for v in d[k])
            for k in DIAGNOSTICS
            if k in d
        ]
        lines.append(f"{s:26s} " + "  ".join(cells))
    return "\n".join(lines)


def grid_cells(a: dict[str, Any]) -> dict[str, Any]:
    """The k_m x granularity heatmap: labels-to-target and AULC difference, both relative to Margin."""
    ratios = [r for r in GRID_RATIOS if any(s.endswith(f"@{r}/{g:g}") for s in a["strategies"] for g in GRID_SIZES)]
    sizes = [g for g in GRID_SIZES if any(s.endswith(f"/{g:g}") for s in a["strategies"])]
    labels = np.full((len(sizes), len(ratios)), np.nan)
    aulc = np.full((len(sizes), len(ratios)), np.nan)
    names = [[f"cluster-margin@{r}/{g:g}" for r in ratios] for g in sizes]
    for i, row in enumerate(names):
        for j, s in enumerate(row):
            e = a["strategies"].get(s)
            if e is not None:
                labels[i, j] = e.get("labels_vs_margin", np.nan)
                aulc[i, j] = 100 * e.get("aulc_diff_vs_margin_mean", np.nan)
    # Best: fewest labels to the target relative to Margin (cells that never reach it come last), then the
    # larger AULC; when no cell reaches the target (or Margin does not), AULC alone decides.
    cells = [(i, j) for i in range(len(sizes)) for j in range(len(ratios))]
    best = min(
        cells,
        key=lambda c: (labels[c] if np.isfinite(labels[c]) else np.inf, -aulc[c] if np.isfinite(aulc[c]) else np.inf),
        default=None,
    )
    return {
        "ratios": ratios,
        "sizes": sizes,
        "labels_vs_margin": labels.tolist(),
        "aulc_diff_pts": aulc.tolist(),
        "best": None if best is None else names[best[0]][best[1]],
    }


def grid_table(name: str, g: dict[str, Any]) -> str:
    lines = [
        f"\n-- {name}: labels to target / Margin's (AULC vs Margin, points); rows: mean cluster size, "
        f"columns: k_m / k_t",
        f"{'size':>6s} " + " ".join(f"{r:>16s}" for r in g["ratios"]),
    ]
    for size, lab, au in zip(g["sizes"], g["labels_vs_margin"], g["aulc_diff_pts"]):
        lines.append(
            f"{size:6g} " + " ".join(f"{_fmt(x, spec='.2f'):>6s} ({_fmt(y, spec='+.2f'):>6s})" for x, y in zip(lab, au))
        )
    lines.append(f"best on these seeds: {g['best']}")
    return "\n".join(lines)


def heatmap_figure(name: str, g: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    z = np.array(g["labels_vs_margin"], dtype=float)
    text = [
        [("never" if not np.isfinite(x) else f"{x:.2f}") + f"<br>{y:+.2f} pts" for x, y in zip(r1, r2)]
        for r1, r2 in zip(g["labels_vs_margin"], g["aulc_diff_pts"])
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"k_m = {r} k_t" if r != "auto" else "k_m auto" for r in g["ratios"]],
            y=[f"~{s:g} per cluster" for s in g["sizes"]],
            text=text,
            texttemplate="%{text}",
            colorscale="RdBu_r",
            zmid=1.0,
            colorbar={"title": "labels / Margin's"},
        )
    )
    fig.update_layout(
        title=f"{name}<br><sup>labels to reach Random's final value ÷ Margin's (below 1 = fewer; "
        "'never' = not reached); second line: AULC minus Margin's, points</sup>",
        width=820,
        height=400,
        margin=dict(l=120, r=20, t=80, b=40),
    )
    return fig


def html_report(analyses: dict[str, dict[str, Any]], path: Path, meta: dict[str, Any]) -> None:
    import plotly.io as pio

    from cmal_widgets.monitor import learning_curve_figure

    parts = [f"<h1>cmal label-efficiency benchmark</h1><p>{meta['note']}</p>"]
    first = True
    for name, a in analyses.items():
        if name.endswith(":grid"):
            fig = heatmap_figure(name, a)
            parts.append(f"<h2>{name}</h2>" + pio.to_html(fig, include_plotlyjs=first, full_html=False))
            parts.append("<pre>" + grid_table(name, a) + "</pre>")
            first = False
            continue
        curves = {
            s: {"n_labeled": a["n_labeled"], "accuracy_mean": e["accuracy_mean"], "accuracy_se": e["accuracy_se"]}
            for s, e in a["strategies"].items()
        }
        metric = a.get("metric", "accuracy").replace("_", " ")
        fig = learning_curve_figure(curves, title=f"{name}: test {metric} (mean ± SE over {len(a['seeds'])} seeds)")
        fig.update_layout(width=760, height=440, yaxis_title=metric)
        parts.append(f"<h2>{name}</h2>" + pio.to_html(fig, include_plotlyjs=first, full_html=False))
        parts.append("<pre>" + table(name, a) + diagnostics_table(name, a) + "</pre>")
        first = False
    path.write_text("<html><head><meta charset='utf-8'></head><body>" + "".join(parts) + "</body></html>")


def best_settings(path: str) -> dict[str, str]:
    """Each regime's best grid setting, as chosen on the grid seeds (``--best-from``)."""
    saved = json.loads(Path(path).read_text())
    return {k.removesuffix(":grid"): v["best"] for k, v in saved["analysis"].items() if k.endswith(":grid")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--regimes",
        default=None,
        help=f"comma-separated, of {', '.join(REGIMES)} (default: all; with --grid: {', '.join(GRID_REGIMES)})",
    )
    p.add_argument("--strategies", default=DEFAULT_STRATEGIES)
    p.add_argument("--seeds", type=int, default=None, help="default 10 (3 with --grid, 2 with --smoke)")
    p.add_argument("--first-seed", type=int, default=None, help=f"default 0 ({GRID_FIRST_SEED} with --grid)")
    p.add_argument("--jobs", type=int, default=1, help="seeds run in parallel (joblib processes)")
    p.add_argument("--out", default="runs/label-efficiency")
    p.add_argument(
        "--grid", action="store_true", help="the k_m x cluster-granularity study (Margin and Random included)"
    )
    p.add_argument(
        "--best-from",
        default=None,
        help="a --grid run's label_efficiency.json: add each regime's best grid setting to --strategies",
    )
    p.add_argument("--smoke", action="store_true", help="tiny settings on digits, 2 seeds (about two minutes)")
    p.add_argument(
        "--feature-cache",
        default=None,
        help="folder of the feature pool's cache file (default runs/cache; see feature_pool.py)",
    )
    a = p.parse_args(argv)
    from joblib import Parallel, delayed

    from cmal.state import write_json

    known = SMOKE_REGIMES if a.smoke else REGIMES
    names = (
        a.regimes.split(",")
        if a.regimes
        else [r for r in (SMOKE_REGIMES if a.smoke else GRID_REGIMES if a.grid else REGIMES) if r != "smoke-features"]
    )
    unknown = [r for r in names if r not in known]
    if unknown:
        p.error(f"unknown regime(s) {unknown}; choose from {', '.join(known)}")
    table_ = {r: known[r] for r in names}
    if a.feature_cache:
        table_ = {
            r: {**v, "feature_cache": a.feature_cache} if "features" in v["dataset"] else v for r, v in table_.items()
        }
    seeds = a.seeds if a.seeds is not None else (2 if a.smoke else 3 if a.grid else 10)
    first = a.first_seed if a.first_seed is not None else (GRID_FIRST_SEED if a.grid else 0)
    base = tuple(a.strategies.split(","))
    for s in base:
        try:
            parse_spec(s)
        except ValueError as err:
            p.error(str(err))
    best = best_settings(a.best_from) if a.best_from else {}
    plan: dict[str, tuple[str, ...]] = {}
    for name in table_:
        if a.grid:
            ratios, sizes = (("1.25", "4", "auto"), (5, 20)) if a.smoke else (GRID_RATIOS, GRID_SIZES)
            plan[name] = ("margin", "random", *(f"cluster-margin@{r}/{g:g}" for g in sizes for r in ratios))
        else:
            plan[name] = base + ((best[name],) if name in best and best[name] not in base else ())
    out = Path(a.out)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def job(name: str, seed: int) -> dict[str, Any]:
        # Saved per seed: an interrupted benchmark continues with the seeds it has not finished.
        path = out / "raw" / f"{name}_seed{seed}.json"
        if path.exists():
            done = json.loads(path.read_text())
            if [r["strategy"] for r in done["runs"]] == list(plan[name]) and done.get("regime") == table_[name]:
                return done
        result = {"regime": table_[name], **run_seed(table_[name], plan[name], seed)}
        write_json(path, result)
        return result

    tasks = [(name, s) for name in table_ for s in range(first, first + seeds)]
    results = Parallel(n_jobs=a.jobs)(delayed(job)(n, s) for n, s in tasks)
    analyses: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    for name in table_:
        runs = [r for (n, _), r in zip(tasks, results) if n == name]
        raw[name] = runs
        metrics = ["accuracy"] + (["macro_recall"] if "imbalanced" in name else [])
        for metric in metrics:
            key = name if metric == "accuracy" else f"{name}:{metric}"
            analyses[key] = analyse(runs, plan[name], metric)
            print(
                table(key, analyses[key]) + (diagnostics_table(key, analyses[key]) if metric == "accuracy" else ""),
                flush=True,
            )
            if a.grid:
                analyses[f"{key}:grid"] = grid_cells(analyses[key])
                print(grid_table(key, analyses[f"{key}:grid"]), flush=True)
    seconds = time.perf_counter() - t0
    print(f"\n({seconds:.0f} s)")
    write_json(
        out / "label_efficiency.json",
        {
            "regimes": table_,
            "plan": plan,
            "seeds": [first, first + seeds - 1],
            "seconds": seconds,
            "analysis": analyses,
            "raw": raw,
        },
    )
    html_report(
        analyses,
        out / "label_efficiency.html",
        {
            "note": f"seeds {first}..{first + seeds - 1}; paired design (one seed set, seed model and HAC tree "
            f"per seed, shared by every strategy); {seconds:.0f} s."
        },
    )
    print(f"wrote {out / 'label_efficiency.json'} and {out / 'label_efficiency.html'}")
    return analyses


if __name__ == "__main__":
    main()
