"""Graph HAC alone on a cached kNN graph: engine versions compared on identical input.

The kNN graph of ``graph_hac_scale.py``'s 64-d mixture (same data, ``--knn``, ``--k``) is built once and cached in
``--cache``; each run then times :func:`cmal.graph_hac.rac` on it up to ``n / 20`` clusters, in this process, and
prints what the rounds did (``info``: seconds per step, rounds, refined bounds, entry visits, distance
evaluations) and the peak memory. ``--save-merges NAME`` keeps the merges, ``--compare NAME`` checks a run's
merges against them. To compare with an earlier version, run it first with its code on ``PYTHONPATH``::

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before python benchmarks/rac_cached.py --n 1000000 --save-merges before
    python benchmarks/rac_cached.py --n 1000000 --compare before

Each run prints which ``cmal`` it imported: check it is the code you meant (the "after" run imports the installed
cmal, which is the working tree only with an editable install, as ``make setup`` makes). numba caches compiled
code on disk per source file: the first run after installing or after an edit compiles for about 20 s inside the
timing, so compare runs with the cache warm (run each version twice). The peak memory of a run that built the
graph includes building it. With approximate kNN lists (pynndescent, faiss) the listed radius is not a strict
bound, so two correct versions that complete pairs in a different order may merge differently;
``--exact-on-graph`` uses radius 0, the bound such lists allow (always, also for exact lists, where
``exact_on_graph=True`` would keep the radius); merges saved with it are kept apart from those without. The cache is
named by n, k and backend only: delete it after changing how graphs are built.

Usage: python benchmarks/rac_cached.py --n 1000000 [--k 30] [--knn pynndescent] [--cache runs/rac-cache]
       [--exact-on-graph] [--save-merges NAME] [--compare NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
from graph_hac_scale import PRELUDE  # the mixture, shared with the scaling curve


def mixture(n: int) -> np.ndarray:
    namespace: dict = {}
    exec(PRELUDE, namespace)  # the prelude is source text for the curve's subprocesses
    return namespace["mixture"](n)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--knn", choices=["auto", "exact", "pynndescent", "faiss"], default="pynndescent")
    parser.add_argument("--cache", default="runs/rac-cache")
    parser.add_argument("--exact-on-graph", action="store_true", help="radius 0: the bound approximate lists allow")
    parser.add_argument("--save-merges", metavar="NAME", help="keep this run's merges under NAME")
    parser.add_argument("--compare", metavar="NAME", help="compare this run's merges with those saved under NAME")
    args = parser.parse_args(argv)
    import cmal
    from cmal.graph_hac import knn_edges, rac

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    n = args.n
    x = mixture(n)
    graph = cache / f"graph_n{n}_k{args.k}_{args.knn}.npz"
    stem = f"merges_n{n}_k{args.k}_{args.knn}{'_strict' if args.exact_on_graph else ''}"
    if args.compare and not (cache / f"{stem}_{args.compare}.npy").exists():
        parser.error(f"--compare {args.compare}: no merges saved under that name in {cache} (run with --save-merges)")
    built = not graph.exists()
    if built:
        t0 = time.perf_counter()
        a, b, d, radius = knn_edges(
            x, args.k, metric="euclidean", backend=args.knn, exact_max=50_000, random_state=0, progress=True
        )
        print(f"kNN graph: {time.perf_counter() - t0:.1f} s, cached in {graph}", flush=True)
        tmp = graph.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, a=a, b=b, d=d, radius=radius)
        tmp.replace(graph)  # atomic: an interrupted run leaves no half-written cache
    with np.load(graph) as g:
        a, b, d, radius = g["a"], g["b"], g["d"], g["radius"]
    if args.exact_on_graph:
        radius = np.zeros(n)
    points = np.asarray(x, dtype=np.float64)
    del x
    info: dict = {}
    t0 = time.perf_counter()
    merges = rac(n, a, b, d, points=points, radius=radius, target_clusters=n // 20, info=info)
    row = dict(
        n=n,
        k=args.k,
        knn=args.knn,
        exact_on_graph=args.exact_on_graph,
        cmal=str(Path(cmal.__file__).parent),
        graph_built_here=built,
        rac_seconds=time.perf_counter() - t0,
        clusters=n - len(merges),
        peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        **{key: info.get(key) for key in ("rounds", "completed_pairs", "refined_bounds", "entry_visits")},
        distance_evaluations=info.get("distance_evaluations"),
        seconds=info.get("seconds"),
    )
    if args.compare:  # before saving, so that the same NAME for both compares with the earlier run

        def key(m: np.ndarray) -> np.ndarray:  # merges in a canonical order: engines may list a round differently
            return m[np.lexsort((m[:, 1], m[:, 0]))]

        ref = np.load(cache / f"{stem}_{args.compare}.npy")
        row["same_merges_as"] = {
            args.compare: bool(
                ref.shape == merges.shape
                and np.array_equal(key(ref)[:, :2], key(merges)[:, :2])
                and np.allclose(key(ref)[:, 2], key(merges)[:, 2], rtol=1e-12, atol=0)
            )
        }
    if args.save_merges:
        np.save(cache / f"{stem}_{args.save_merges}.npy", merges)
    split = ", ".join(f"{key} {value:.1f} s" for key, value in (row["seconds"] or {}).items())
    print(f"cmal from {row['cmal']}")
    print(
        f"RAC on the cached graph: {row['rac_seconds']:.1f} s ({split}), {row['clusters']:,} clusters, "
        f"peak {row['peak_rss_gib']:.2f} GiB{' (building the graph included)' if built else ''}"
    )
    if args.compare:
        print(f"same merges as {args.compare}: {row['same_merges_as'][args.compare]}")
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
