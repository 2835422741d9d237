"""Graph HAC at scale: kNN graph + RAC on 10^5 and 10^6 points x 64-d, and exact HAC at 20k against fastcluster.

Part 1 (goal: <= 10 min and <= 8 GiB on 2 cores at 10^6). Data: a Gaussian mixture in 64-d (n/50 centres of
unit spread around N(0, I); overlapping, like real embeddings). Each size runs in a fresh subprocess that
reports wall seconds of the kNN graph (``--knn``: pynndescent by default, or faiss) and of RAC, and its
peak resident memory (``ru_maxrss``: the data, the graph and everything else). ``epsilon`` is 1.2 x the median
k-th-neighbour distance (clusters of a few dozen points).

Part 2 (goal: ratio <= 1.1): ``cmal.hac.linkage_tree`` on 20,000 x 64 points against ``fastcluster.linkage``
called directly on the same array, same process, best of 3.

Usage: python benchmarks/graph_hac_scale.py [--sizes 100000,1000000] [--k 30] [--knn pynndescent|faiss]
       [--skip-exact] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

WORKER = textwrap.dedent("""
    import json, resource, sys, time, warnings
    import numpy as np
    n, k = int(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(max(1, n // 50), 64)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, 64)).astype(np.float32)
    from cmal.graph_hac import knn_edges, rac, _validated_float64, GraphHACTree
    t0 = time.perf_counter()
    a, b, d, radius = knn_edges(x, k, metric="euclidean", backend=sys.argv[3], exact_max=1, random_state=0,
                                progress=False)
    t_knn = time.perf_counter() - t0
    eps = float(np.median(radius)) * 1.2
    t0 = time.perf_counter()
    merges = rac(n, a, b, d, threshold=eps, points=np.asarray(x, dtype=np.float64), radius=radius)
    t_rac = time.perf_counter() - t0
    print(json.dumps({"n": n, "k": k, "knn_seconds": t_knn, "rac_seconds": t_rac, "epsilon": eps,
                      "clusters": n - len(merges), "edges": int(a.size),
                      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
""")


def exact_ratio(n: int = 20000, repeats: int = 3) -> dict:
    import fastcluster

    from cmal.hac import linkage_tree

    x = np.random.default_rng(1).normal(size=(n, 64)).astype(np.float32)
    ours, ref = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        tree = linkage_tree(x)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        z = fastcluster.linkage(np.asarray(x, dtype=np.float64), method="average", metric="euclidean")
        ref.append(time.perf_counter() - t0)
    assert np.allclose(tree.linkage[:, 2], z[:, 2])
    return {"n": n, "cmal_seconds": min(ours), "fastcluster_seconds": min(ref), "ratio": min(ours) / min(ref)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--knn", choices=["pynndescent", "faiss"], default="pynndescent")
    parser.add_argument("--skip-exact", action="store_true")
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args()
    results: dict = {"graph": []}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for n in map(int, args.sizes.split(",")):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", WORKER, str(n), str(args.k), args.knn], capture_output=True, text=True, env=env
        )
        if proc.returncode:
            print(proc.stderr[-2000:])
            raise SystemExit(f"worker for n={n} failed")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["wall_seconds"] = time.perf_counter() - t0
        results["graph"].append(row)
        print(
            f"n={n:>9,}: kNN {row['knn_seconds']:7.1f} s + RAC {row['rac_seconds']:7.1f} s "
            f"(process {row['wall_seconds']:.0f} s), {row['clusters']:,} clusters, peak {row['peak_rss_gib']:.2f} GiB",
            flush=True,
        )
    if not args.skip_exact:
        results["exact"] = exact_ratio()
        e = results["exact"]
        print(
            f"exact HAC at {e['n']:,}: cmal {e['cmal_seconds']:.2f} s, fastcluster directly "
            f"{e['fastcluster_seconds']:.2f} s, ratio {e['ratio']:.3f}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "graph_hac_scale.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
