"""Selection speed and memory of every strategy on synthetic pools of 10^4, 10^5 and 10^6 points.

Pools: 64-d float32 embeddings (a Gaussian mixture), softmax probabilities over 10 classes, cluster ids given
(n/20 clusters of skewed sizes), 1% already labeled, k_t = 1% of the pool, k_m = 1.25 k_t. Each (strategy, size)
runs in a fresh subprocess with a time budget; it reports the seconds of ``select`` alone (inputs already loaded,
lazy imports warmed up) and the process's peak resident memory (``ru_maxrss``: Python, numpy, the loaded inputs
(about 300 MiB at 10^6) and whatever selection allocated). Ratios are to Cluster-Margin measured in the same run.
"plain top-k margin" (margins + argpartition, no validation, no tie-breaking) is the lower bound.

Usage: python benchmarks/selection_speed.py [--sizes 10000,100000,1000000] [--budget 900] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

STRATEGIES = [
    "plain-top-k-margin",
    "random",
    "margin",
    "entropy",
    "least-confidence",
    "cluster-margin",
    "cluster-margin-auto",
    "cluster-random",
    "cluster-margin-descending",
    "cluster-margin-random-order",
    "cluster-margin-margin-weighted",
    "cluster-margin-proportional",
    "coreset",
    "coreset-partitioned",
    "badge",
    "badge-partitioned",
]

WORKER = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np
    folder, name = sys.argv[1], sys.argv[2]
    load = lambda f: np.load(f"{folder}/{f}.npy")
    probs, clusters, labeled, emb = load("probs"), load("clusters"), load("labeled"), load("embeddings")
    n = len(probs); k_t = n // 100
    from cmal.strategies import PoolState, make_strategy
    if name != "plain-top-k-margin":
        # Warm-up on 200 rows so lazy imports (scipy.special, ...) are not timed.
        w = make_strategy(name, k_m=3, random_state=0)
        w.select(PoolState.create(probs=probs[:200], clusters=clusters[:200], embeddings=emb[:200]), 2)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    t0 = time.perf_counter()
    if name == "plain-top-k-margin":
        top2 = np.partition(probs, 8, axis=1)[:, -2:]
        m = top2[:, 1] - top2[:, 0]
        m[labeled] = np.inf
        batch = np.argpartition(m, k_t)[:k_t]
    else:
        s = make_strategy(name, k_m=int(1.25 * k_t), random_state=0)
        state = PoolState.create(probs=probs, clusters=clusters, labeled=labeled,
                                 embeddings=emb if "embeddings" in s.needs else None)
        batch = s.select(state, k_t)
    seconds = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert len(np.unique(batch)) == k_t
    print(json.dumps({"seconds": seconds, "peak_mib": peak_kib / 1024, "before_mib": rss0 / 1024}))
""")


def make_pool(n: int, folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(50, 64)).astype(np.float32)
    comp = rng.integers(0, 50, n)
    emb = centers[comp] + rng.normal(size=(n, 64)).astype(np.float32)
    logits = rng.normal(size=(n, 10)).astype(np.float32) * 2
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    sizes = rng.zipf(1.6, size=n // 20).astype(np.float64)
    clusters = rng.choice(n // 20, size=n, p=sizes / sizes.sum())
    np.save(folder / "embeddings.npy", emb)
    np.save(folder / "probs.npy", probs)
    np.save(folder / "clusters.npy", clusters)
    np.save(folder / "labeled.npy", rng.choice(n, n // 100, replace=False))


def run_one(folder: Path, name: str, budget: float) -> dict:
    try:
        out = subprocess.run(
            [sys.executable, "-c", WORKER, str(folder), name], capture_output=True, text=True, timeout=budget
        )
    except subprocess.TimeoutExpired:
        return {"status": f"over budget ({budget:.0f} s)"}
    if out.returncode != 0:
        return {"status": "failed: " + (out.stderr.strip().splitlines() or ["?"])[-1][:80]}
    return {"status": "ok", **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--budget", type=float, default=900.0, help="seconds per strategy and size")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--out", default="runs/benchmarks", help="folder for selection_speed.json")
    a = p.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    names = a.strategies.split(",")
    results: dict[str, dict[int, dict]] = {name: {} for name in names}
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            make_pool(n, Path(tmp))
            for name in names:
                results[name][n] = run_one(Path(tmp), name, a.budget)
                r = results[name][n]
                print(
                    f"  n={n:>8} {name:32s} "
                    + (f"{r['seconds']:9.3f} s {r['peak_mib']:9.1f} MiB" if r["status"] == "ok" else r["status"]),
                    flush=True,
                )
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "selection_speed.json").write_text(json.dumps(results, indent=1))
    print("\nk_t = 1% of n, 64-d, 10 classes; seconds (peak RSS MiB) and ratio to cluster-margin in this run")
    print(f"{'strategy':32s}" + "".join(f"{'n=' + format(n, ','):>30s}" for n in sizes))
    for name in names:
        cells = []
        for n in sizes:
            r, ref = results[name][n], results["cluster-margin"].get(n, {}) if "cluster-margin" in results else {}
            if r["status"] != "ok":
                cells.append(f"{r['status'][:28]:>30s}")
                continue
            ratio = r["seconds"] / ref["seconds"] if ref.get("status") == "ok" else float("nan")
            cells.append(f"{r['seconds']:9.3f} s ({r['peak_mib']:7.0f}) {ratio:6.1f}x")
        print(f"{name:32s}" + "".join(cells))


if __name__ == "__main__":
    main()
