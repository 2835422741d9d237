"""Which kNN library builds cmal's graphs: pynndescent against faiss (HNSW), measured on the same data.

For each size and backend a fresh subprocess builds the k-NN lists of a 64-d Gaussian mixture (the data of
``graph_hac_scale.py``) and reports wall seconds (including pynndescent's numba compilation, which a first
call in a process pays), peak resident memory, and recall@k against exact neighbours of 2,000 random rows.

Usage: python benchmarks/knn_backends.py [--sizes 100000,1000000] [--k 15] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

WORKER = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np
    n, k, backend = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(max(1, n // 50), 64)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, 64)).astype(np.float32)
    from cmal.knn import knn
    t0 = time.perf_counter()
    idx, _ = knn(x, k, backend=backend, random_state=0)
    secs = time.perf_counter() - t0
    rows = np.random.default_rng(1).choice(n, 2000, replace=False)
    d2 = (x[rows] ** 2).sum(1)[:, None] - 2 * x[rows] @ x.T + (x ** 2).sum(1)[None]
    d2[np.arange(len(rows)), rows] = np.inf
    exact = np.argpartition(d2, k, axis=1)[:, :k]
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(idx[rows], exact)]))
    print(json.dumps({"n": n, "backend": backend, "seconds": secs, "recall": recall,
                      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--backends", default="pynndescent,faiss")
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args()
    rows = []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    print("| n | backend | seconds | recall@k | peak GiB |\n| --- | --- | --- | --- | --- |")
    for n in map(int, args.sizes.split(",")):
        for backend in args.backends.split(","):
            proc = subprocess.run(
                [sys.executable, "-c", WORKER, str(n), str(args.k), backend], capture_output=True, text=True, env=env
            )
            if proc.returncode:
                print(proc.stderr[-1500:])
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(
                f"| {n:,} | {backend} | {r['seconds']:.1f} | {r['recall']:.4f} | {r['peak_rss_gib']:.2f} |", flush=True
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "knn_backends.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
