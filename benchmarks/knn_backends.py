"""Which kNN library and which parameters build cmal's graphs: time against recall@k, on the same data.

For each size and configuration a fresh subprocess builds the k-NN lists of a 64-d Gaussian mixture (the data of
``graph_hac_scale.py``) through :func:`cmal.knn.knn` and reports wall seconds (including pynndescent's numba
compilation, which a first call in a process pays), peak resident memory, and recall@k against exact neighbours
of 2,000 random rows. The configuration to use is the fastest with recall >= 0.95 (printed at the end).

A configuration is ``backend`` or ``backend:name=value:name=value`` with the options of :func:`cmal.knn.knn`
(pynndescent's ``NNDescent`` keywords such as ``n_iters``, ``n_trees``, ``max_candidates``; faiss HNSW's ``M``,
``efConstruction``, ``efSearch``). ``faiss-ivf:nlist=4096:nprobe=64`` measures a faiss inverted-file index
(IVF-flat, trained on up to 40 points per list), which cmal does not offer: to decide whether it should.

Usage: python benchmarks/knn_backends.py [--sizes 100000,1000000] [--k 30]
       [--configs pynndescent,faiss,faiss:M=16:efConstruction=40] [--out DIR]
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
    n, k, backend, options = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(max(1, n // 50), 64)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, 64)).astype(np.float32)
    t0 = time.perf_counter()
    if backend == "faiss-ivf":  # not a cmal backend: measured to decide whether to offer it
        import faiss
        nlist, nprobe = int(options.get("nlist", 4096)), int(options.get("nprobe", 64))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(x.shape[1]), x.shape[1], nlist)
        index.train(x[np.random.default_rng(2).choice(n, min(n, 40 * nlist), replace=False)])
        index.add(x)
        index.nprobe = nprobe
        d2, found = index.search(x, k + 1)
        from cmal.knn import _drop_self  # as cmal's faiss backend: self out, an error if a row found too few
        idx, _ = _drop_self(found, d2, k)
    else:
        from cmal.knn import knn
        idx, _ = knn(x, k, backend=backend, random_state=0, options=options)
    secs = time.perf_counter() - t0
    rows = np.random.default_rng(1).choice(n, min(n, 2000), replace=False)
    sq = (x ** 2).sum(1)
    exact = []
    for start in range(0, len(rows), 100):  # 100 rows at a time: 2,000 x 10^6 distances would need 8 GB
        part = rows[start : start + 100]
        d2 = sq[part][:, None] - 2 * x[part] @ x.T + sq[None]
        d2[np.arange(len(part)), part] = np.inf
        exact.extend(np.argpartition(d2, k, axis=1)[:, :k])
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(idx[rows], exact)]))
    print(json.dumps({"n": n, "backend": backend, "options": options, "seconds": secs, "recall": recall,
                      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
""")


def parse_config(text: str) -> tuple[str, dict]:
    """``"faiss:M=16:efConstruction=40"`` -> ``("faiss", {"M": 16, "efConstruction": 40})``."""
    backend, *pairs = text.split(":")
    options = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        options[name] = json.loads(value)
    return backend, options


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--configs", "--backends", default="pynndescent,faiss")
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args(argv)
    rows = []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    print("| n | configuration | seconds | recall@k | peak GiB |\n| --- | --- | --- | --- | --- |")
    for n in map(int, args.sizes.split(",")):
        for config in args.configs.split(","):
            backend, options = parse_config(config)
            proc = subprocess.run(
                [sys.executable, "-c", WORKER, str(n), str(args.k), backend, json.dumps(options)],
                capture_output=True,
                text=True,
                env=env,
            )
            if proc.returncode:
                print(f"{config} failed (exit code {proc.returncode}): {proc.stderr[-1500:]}", flush=True)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["config"] = config
            rows.append(r)
            line = f"| {n:,} | {config} | {r['seconds']:.1f} | {r['recall']:.4f} | {r['peak_rss_gib']:.2f} |"
            print(line, flush=True)
    for n in sorted({r["n"] for r in rows}):
        good = [r for r in rows if r["n"] == n and r["recall"] >= 0.95]
        best = min(good, key=lambda r: r["seconds"]) if good else None
        print(
            f"n={n:,}: fastest with recall >= 0.95: "
            + (f"{best['config']} ({best['seconds']:.1f} s, recall {best['recall']:.4f})" if best else "none")
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "knn_backends.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
