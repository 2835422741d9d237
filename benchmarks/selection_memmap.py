"""Selection at 10^6 from memory-mapped inputs: margins in chunks, then Cluster-Margin on margins alone.

The pool's probabilities (10^6 x 10 float32, 40 MB) and cluster ids are written to ``.npy`` files; a fresh
subprocess per mode reports seconds and peak resident memory:

- ``memmap``: ``score_chunked`` over the memory-mapped probabilities, then ``ClusterMargin.select`` on
  ``PoolState(scores={"margin": ...})``;
- ``in-memory``: the probabilities loaded whole and passed as ``probs`` (the reference, same run).

Usage: python benchmarks/selection_memmap.py [--n 1000000] [--classes 10] [--out DIR]
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

WORKER = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np
    folder, mode = sys.argv[1], sys.argv[2]
    from cmal.strategies import ClusterMargin, PoolState
    from cmal.uncertainty import score_chunked
    clusters = np.load(f"{folder}/clusters.npy", mmap_mode="r")
    labeled = np.load(f"{folder}/labeled.npy")
    k_t = len(clusters) // 100
    t0 = time.perf_counter()
    if mode == "memmap":
        margins = score_chunked(np.load(f"{folder}/probs.npy", mmap_mode="r"), chunk_rows=1 << 17)
        t_scores = time.perf_counter() - t0
        state = PoolState.create(scores={"margin": margins}, clusters=np.asarray(clusters), labeled=labeled)
    else:
        probs = np.load(f"{folder}/probs.npy")
        t_scores = time.perf_counter() - t0
        state = PoolState.create(probs=probs, clusters=np.asarray(clusters), labeled=labeled)
    t1 = time.perf_counter()
    batch = ClusterMargin(random_state=0).select(state, k_t)
    t_select = time.perf_counter() - t1
    print(json.dumps({"mode": mode, "load_or_score_seconds": t_scores, "select_seconds": t_select,
                      "total_seconds": time.perf_counter() - t0, "batch_head": batch[:5].tolist(),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        logits = rng.normal(size=(args.n, args.classes)).astype(np.float32) * 3
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        np.save(f"{folder}/probs.npy", probs)
        del logits, probs
        np.save(f"{folder}/clusters.npy", rng.integers(0, args.n // 20, args.n))
        np.save(f"{folder}/labeled.npy", rng.choice(args.n, args.n // 100, replace=False))
        rows = []
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        for mode in ("in-memory", "memmap"):
            proc = subprocess.run([sys.executable, "-c", WORKER, folder, mode], capture_output=True, text=True, env=env)
            if proc.returncode:
                raise SystemExit(proc.stderr[-2000:])
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    ref, mm = rows
    assert ref["batch_head"] == mm["batch_head"], "the two modes chose different batches"
    for r in rows:
        print(
            f"{r['mode']:>10}: load/score {r['load_or_score_seconds']:.3f} s, select {r['select_seconds']:.3f} s, "
            f"total {r['total_seconds']:.3f} s, peak {r['peak_rss_mib']:.0f} MiB"
        )
    print(f"memmap / in-memory total time: {mm['total_seconds'] / ref['total_seconds']:.2f}; same batch: yes")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "selection_memmap.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
