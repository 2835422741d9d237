"""Graph HAC at scale: the scaling curve, the Dask path, a scikit-learn peer, and exact HAC against fastcluster.

Data: a Gaussian mixture in 64-d (n/50 centres of unit spread around N(0, I); overlapping, like real
embeddings). Every measurement runs in a fresh subprocess, which reports wall seconds and its peak resident
memory (``ru_maxrss``: the data, the graph and everything else).

1. **Scaling curve** (``--sizes``; goals at 10^6: kNN graph + RAC <= 180 s and <= 6 GiB on 2 cores, RAC <= 60 s;
   2*10^6 within 24 GiB): the kNN graph (``--knn``, :func:`cmal.knn.knn`) then RAC (:func:`cmal.graph_hac.rac`) up
   to ``n / 20`` clusters (``target_clusters``: clusters of 20 points on average, cmal's default granularity), with
   rounds, completed cross sums and distance evaluations, and the fitted exponent ``b`` of ``time ~ n^b`` over the
   sizes. At the smallest size (if at most ``--reference-max``) the numpy reference rounds run on the same graph
   (``CMAL_RAC_ENGINE=numpy``): same merges, and the ratio of the two. With approximate kNN lists (above 50,000
   points) the two engines are compared with ``exact_on_graph``'s radius 0, the bound such lists allow (the listed
   radius is not one, and engines that complete pairs in different orders can then differ); ``--exact-on-graph``
   runs that at every size: its RAC time and the ARI of the default's partition against it.
   ``--in-process N`` times :func:`cmal.graph_hac.graph_linkage_tree` alone at N points, the call users make
   (it also checks the input and collapses duplicates), with its peak memory.
2. **Dask** (``--dask N``; goal: within 2x the in-process time): :func:`cmal.scale.graph_linkage_tree` on a
   2-worker ``LocalCluster`` (one thread each) with the kNN graph built per partition
   (:func:`cmal.scale.knn_partitions`), against :func:`cmal.graph_hac.graph_linkage_tree` in one process, both
   end to end at N points up to ``N / 20`` clusters.
3. **Peer** (``--peer N``, ``--ari M``): scikit-learn's ``AgglomerativeClustering(linkage="average",
   connectivity=kneighbors_graph(X, k))``, what a user would try first, against cmal's graph HAC at N points
   (time, memory), and both against exact average-linkage HAC at M points (adjusted Rand index at the cut with
   M / 20 clusters).
4. **Exact HAC** (goal: ratio <= 1.1; ``--skip-exact`` leaves it out): ``cmal.hac.linkage_tree`` on 20,000 x 64
   points against ``fastcluster.linkage`` called directly on the same array, same process, best of 3.

Usage: python benchmarks/graph_hac_scale.py [--sizes 100000,300000,1000000,2000000] [--k 30] [--knn auto]
       [--knn-options '{"n_iters": 4}']
       [--in-process 1000000] [--dask 1000000] [--peer 100000] [--ari 20000] [--skip-exact] [--exact-on-graph]
       [--reference-max 100000] [--out DIR]
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

PRELUDE = textwrap.dedent("""
    import json, os, resource, sys, time, warnings
    import numpy as np
    def mixture(n, seed=0):
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(max(1, n // 50), 64)).astype(np.float32)
        return centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, 64)).astype(np.float32)
    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    def emit(**row):
        print(json.dumps(row), flush=True)
""")

CURVE = PRELUDE + textwrap.dedent("""
    n, k, backend, reference = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
    options, strict = json.loads(sys.argv[5]), sys.argv[6] == "1"
    x = mixture(n)
    from cmal.graph_hac import knn_edges, rac
    from cmal.knn import resolved_backend
    t0 = time.perf_counter()
    a, b, d, radius = knn_edges(x, k, metric="euclidean", backend=backend, exact_max=50_000, random_state=0,
                                progress=False, options=options)
    t_knn = time.perf_counter() - t0
    pts = np.asarray(x, dtype=np.float64)
    del x
    info = {}
    t0 = time.perf_counter()
    merges = rac(n, a, b, d, points=pts, radius=radius, target_clusters=n // 20, info=info)
    t_rac = time.perf_counter() - t0
    row = dict(n=n, k=k, knn=backend, knn_options=options, knn_seconds=t_knn,
               rac_seconds=t_rac, clusters=n - len(merges), edges=int(a.size), rounds=info.get("rounds"),
               completed_pairs=info.get("completed_pairs"), distance_evaluations=info.get("distance_evaluations"),
               refined_bounds=info.get("refined_bounds"), entry_visits=info.get("entry_visits"),
               rac_split=info.get("seconds"), peak_rss_gib=peak(),
               stages=[[float(t), int(c)] for t, c in info.get("stages", [])])  # (threshold, clusters) per stage
    def partition(m):  # the n / 20 clusters of the lowest merges
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components
        m = m[np.argsort(m[:, 2], kind="stable")][: n - n // 20]
        g = coo_matrix((np.ones(len(m)), (m[:, 0].astype(np.int64), m[:, 1].astype(np.int64))), shape=(n, n))
        return connected_components(g, directed=False)[1]
    approximate = resolved_backend(n, k, backend, 50_000) != "exact"
    if approximate and (strict or reference):
        # exact_on_graph=True: radius 0, the bound approximate lists allow; same graph, compiled engine.
        from sklearn.metrics import adjusted_rand_score
        radius = np.zeros(n)
        strict_info = {}
        t0 = time.perf_counter()
        strict_merges = rac(n, a, b, d, points=pts, radius=radius, target_clusters=n // 20, info=strict_info)
        row["exact_on_graph"] = dict(
            rac_seconds=time.perf_counter() - t0, distance_evaluations=strict_info.get("distance_evaluations"),
            ari=float(adjusted_rand_score(partition(strict_merges), partition(merges))))
        merges = strict_merges  # what the numpy rounds must reproduce: bounds that are bounds
    if reference:
        os.environ["CMAL_RAC_ENGINE"] = "numpy"
        t0 = time.perf_counter()
        ref = rac(n, a, b, d, points=pts, radius=radius, target_clusters=n // 20)
        row["numpy_rac_seconds"] = time.perf_counter() - t0
        key = lambda m: m[np.lexsort((m[:, 1], m[:, 0]))]
        row["same_merges_as_numpy"] = bool(ref.shape == merges.shape and np.array_equal(key(ref)[:, :2],
                                                                                          key(merges)[:, :2]))
    emit(**row)
""")

DASK = PRELUDE + textwrap.dedent("""
    n, k, where = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    x = mixture(n)
    parts = {}
    def timed(module, name, key):
        # The trees look their kNN and RAC steps up in these modules when they run, so a wrapper splits the time.
        inner = getattr(module, name)
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                parts[key] = parts.get(key, 0.0) + time.perf_counter() - t
        setattr(module, name, wrapper)
    import cmal.graph_hac, cmal.scale.graph
    # The kNN part is the lists and the edges built from them on both sides (knn_edges does both in process).
    timed(cmal.scale.graph, "knn_partitions", "knn_seconds")
    timed(cmal.scale.graph, "knn_graph", "knn_seconds")
    timed(cmal.scale.graph, "edges_from_neighbours", "knn_seconds")
    timed(cmal.scale.graph, "rac", "rac_seconds")
    timed(cmal.graph_hac, "knn_edges", "knn_seconds")
    timed(cmal.graph_hac, "rac", "rac_seconds")
    t0 = time.perf_counter()
    if where == "dask":
        from cmal import scale
        client = scale.connect(n_workers=2, threads_per_worker=1)
        t_start = time.perf_counter() - t0
        t0 = time.perf_counter()
        tree = scale.graph_linkage_tree(x, k=k, client=client, knn="partitions", target_clusters=n // 20)
        secs = time.perf_counter() - t0
        workers = client.run(lambda: __import__("resource").getrusage(0).ru_maxrss / 2**20)
        emit(n=n, where=where, seconds=secs, cluster_start_seconds=t_start, peak_rss_gib=peak(),
             worker_peak_rss_gib=max(workers.values()), merges=int(tree.linkage.shape[0]), **parts)
        client.close()
    else:
        from cmal.graph_hac import graph_linkage_tree
        tree = graph_linkage_tree(x, k=k, target_clusters=n // 20)
        emit(n=n, where=where, seconds=time.perf_counter() - t0, peak_rss_gib=peak(),
             merges=int(tree.linkage.shape[0]), **parts)
""")

PEER = PRELUDE + textwrap.dedent("""
    n, k, who = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    x = mixture(n, seed=1)
    t0 = time.perf_counter()
    if who == "sklearn":
        from sklearn.cluster import AgglomerativeClustering
        from sklearn.neighbors import kneighbors_graph
        conn = kneighbors_graph(x, k, include_self=False)
        labels = AgglomerativeClustering(n_clusters=n // 20, linkage="average", connectivity=conn).fit_predict(x)
    else:
        from cmal.graph_hac import graph_linkage_tree
        tree = graph_linkage_tree(x, k=k, target_clusters=n // 20)
        labels = tree.cut(tree.epsilon_for_clusters(n // 20))
    emit(n=n, who=who, seconds=time.perf_counter() - t0, peak_rss_gib=peak(), clusters=int(labels.max() + 1))
""")

ARI = PRELUDE + textwrap.dedent("""
    n, k = int(sys.argv[1]), int(sys.argv[2])
    x = mixture(n, seed=2)
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import adjusted_rand_score
    from sklearn.neighbors import kneighbors_graph
    from cmal.graph_hac import graph_linkage_tree
    from cmal.hac import linkage_tree
    exact = linkage_tree(x)
    eps = exact.epsilon_for_clusters(n // 20)
    truth = exact.cut(eps)
    c = int(truth.max() + 1)
    graph = graph_linkage_tree(x, k=k, target_clusters=c)
    ours = graph.cut(graph.epsilon_for_clusters(c))
    conn = kneighbors_graph(x, k, include_self=False)
    peer = AgglomerativeClustering(n_clusters=c, linkage="average", connectivity=conn).fit_predict(x)
    emit(n=n, k=k, clusters=c, cmal_ari=adjusted_rand_score(truth, ours), sklearn_ari=adjusted_rand_score(truth, peer))
""")


def run(script: str, *args: object, timeout: float | None = None) -> dict:
    """One measurement in a fresh process; its last stdout line is a JSON row."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"timed_out_after_seconds": timeout}
    if proc.returncode:
        print(proc.stderr[-3000:])
        raise SystemExit(f"measurement {args} failed")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["process_seconds"] = time.perf_counter() - t0
    return row


def exponent(ns: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(time) against log(n)."""
    return float(np.polyfit(np.log(ns), np.log(seconds), 1)[0]) if len(ns) > 1 else float("nan")


def exponents(rows: list[dict]) -> dict[str, float]:
    """The fitted exponents of kNN, RAC and total time over the measured sizes."""
    ns = [r["n"] for r in rows]
    return {
        "knn": exponent(ns, [r["knn_seconds"] for r in rows]),
        "rac": exponent(ns, [r["rac_seconds"] for r in rows]),
        "total": exponent(ns, [r["knn_seconds"] + r["rac_seconds"] for r in rows]),
    }


def merge_results(paths: list[Path]) -> dict:
    """Saved runs of this script as one: the curve's rows of every file (a size measured twice: the later file's),
    exponents refitted over them, and the other parts (``dask``, ``peer``...) from the last file holding each.
    So the estimate can combine, e.g., a curve run and a separate ``--sizes "" --dask 1000000`` run."""
    merged: dict = {}
    rows: dict[int, dict] = {}
    for path in paths:
        results = json.loads(path.read_text())
        for row in results.get("graph", []):
            rows[row["n"]] = row
        merged.update({key: value for key, value in results.items() if key not in ("graph", "exponent")})
    merged["graph"] = [rows[n] for n in sorted(rows)]
    if len(rows) > 1:
        merged["exponent"] = exponents(merged["graph"])
    return merged


def estimate(results: dict, sizes: tuple[float, ...] = (1e7, 1e8), workers: tuple[int, ...] = (16, 64)) -> list[dict]:
    """Extrapolate the measured curve to larger pools on a W-worker Dask cluster (printed, and documented).

    Time: each part's fitted power law from the largest measured size, times the Dask overhead measured here
    (Dask on 2 workers / one process on the same 2 cores), divided by W / 2 (perfect scaling: optimistic).
    Memory per worker: the points (every worker holds all of them, float64, as the Dask RAC broadcasts them), its
    share of the directed edge list (4 arrays of 8 bytes per entry) and the per-round state (labels, 8 bytes per
    point). Shuffle per round: at most the whole edge list (every entry relabelled and sent to its new owner).
    """
    g = results["graph"][-1]
    b = results.get("exponent", {})
    ratio = results.get("dask", {}).get("ratio", float("nan"))
    entries_per_point = 2 * g["edges"] / g["n"]
    rows = []
    for n in sizes:
        scale = n / g["n"]
        t_knn = g["knn_seconds"] * scale ** b.get("knn", 1.0)
        t_rac = g["rac_seconds"] * scale ** b.get("rac", 1.0)
        for w in workers:
            entries = entries_per_point * n
            rows.append(
                {
                    "n": n,
                    "workers": w,
                    "hours": (t_knn + t_rac) * ratio / (w / 2) / 3600,
                    "one_process_hours": (t_knn + t_rac) / 3600,
                    "worker_gib": (n * 64 * 8 + entries * 32 / w + n * 8) / 2**30,
                    "shuffle_gib_per_round": entries * 32 / 2**30,
                    "rounds": g.get("rounds"),
                }
            )
    return rows


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


def print_estimate(rows: list[dict]) -> None:
    print("| points | workers | hours (Dask, ideal scaling) | one process | memory per worker | shuffle per round |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['n']:.0e} | {r['workers']} | {r['hours']:.1f} | {r['one_process_hours']:.1f} | "
            f"{r['worker_gib']:.0f} GiB | <= {r['shuffle_gib_per_round']:.0f} GiB |"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000,2000000")
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--knn", choices=["auto", "pynndescent", "faiss"], default="auto")
    parser.add_argument("--knn-options", default="{}", help="JSON options for cmal.knn.knn, e.g. '{\"M\": 16}'")
    parser.add_argument("--dask", type=int, default=1_000_000, help="size of the Dask comparison (0: skip)")
    parser.add_argument(
        "--in-process",
        type=int,
        default=0,
        help="size of a run of graph_linkage_tree alone, in one process (the user-facing call; 0: skip)",
    )
    parser.add_argument("--peer", type=int, default=100_000, help="size of the scikit-learn comparison (0: skip)")
    parser.add_argument("--ari", type=int, default=20_000, help="size of the agreement with exact HAC (0: skip)")
    parser.add_argument("--peer-timeout", type=float, default=1800.0)
    parser.add_argument("--skip-exact", action="store_true")
    parser.add_argument(
        "--reference-max",
        type=int,
        default=100_000,
        help="run the numpy reference rounds at the smallest size only if it is at most this (default 100000: "
        "at 2*10^6 they take over half an hour)",
    )
    parser.add_argument(
        "--exact-on-graph",
        action="store_true",
        help="at every size with approximate kNN lists, also run RAC with exact_on_graph's radius 0 (time, ARI)",
    )
    parser.add_argument(
        "--estimate-from",
        help="only print the 10^7/10^8 estimate from saved graph_hac_scale.json files (comma-separated: merged; "
        "a size in two files: the later one's)",
    )
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args(argv)
    if args.estimate_from:
        results = merge_results([Path(p) for p in args.estimate_from.split(",") if p])
        if "exponent" in results:
            e = results["exponent"]
            sizes = ", ".join(f"{r['n']:,}" for r in results["graph"])
            print(f"fitted exponent b over {sizes}: kNN {e['knn']:.2f}, RAC {e['rac']:.2f}, total {e['total']:.2f}")
        print_estimate(estimate(results))
        return results
    results: dict = {"graph": []}
    backend = args.knn if args.knn != "auto" else "auto"
    sizes = sorted(int(n) for n in args.sizes.split(",") if n)  # --sizes "": only the other parts
    print("| points | kNN graph | RAC | total | rounds | clusters | peak memory |\n|---|---|---|---|---|---|---|")
    for i, n in enumerate(sizes):
        reference = i == 0 and n <= args.reference_max
        row = run(CURVE, n, args.k, backend, int(reference), args.knn_options, int(args.exact_on_graph))
        results["graph"].append(row)
        total = row["knn_seconds"] + row["rac_seconds"]
        print(
            f"| {n:,} | {row['knn_seconds']:.1f} s | {row['rac_seconds']:.1f} s | {total:.1f} s | {row['rounds']} | "
            f"{row['clusters']:,} | {row['peak_rss_gib']:.2f} GiB |",
            flush=True,
        )
        strict = row.get("exact_on_graph")
        if strict:
            print(
                f"  exact_on_graph=True (radius 0): RAC {strict['rac_seconds']:.1f} s "
                f"({strict['rac_seconds'] / row['rac_seconds']:.2f}x), {strict['distance_evaluations']:.3g} distance "
                f"evaluations (default {row['distance_evaluations']:.3g}); ARI against the default at n / 20 "
                f"clusters {strict['ari']:.4f}",
                flush=True,
            )
        if "numpy_rac_seconds" in row:
            compiled = strict["rac_seconds"] if strict else row["rac_seconds"]
            print(
                f"  numpy reference rounds on the same graph{' (exact_on_graph)' if strict else ''}: "
                f"{row['numpy_rac_seconds']:.1f} s; compiled/numpy {compiled / row['numpy_rac_seconds']:.3f}; "
                f"same merges: {row['same_merges_as_numpy']}",
                flush=True,
            )
    g = results["graph"]
    if len(g) > 1:
        results["exponent"] = exponents(g)
        e = results["exponent"]
        print(f"fitted exponent b of time ~ n^b: kNN {e['knn']:.2f}, RAC {e['rac']:.2f}, total {e['total']:.2f}")
    if args.in_process:
        local = results["in_process"] = run(DASK, args.in_process, args.k, "local")
        print(
            f"graph_linkage_tree at {args.in_process:,} in one process: {local['seconds']:.1f} s (kNN graph "
            f"{local['knn_seconds']:.1f} s, RAC {local['rac_seconds']:.1f} s), peak {local['peak_rss_gib']:.2f} GiB",
            flush=True,
        )
    if args.dask:
        local = run(DASK, args.dask, args.k, "local")
        dask = run(DASK, args.dask, args.k, "dask")
        results["dask"] = {"in_process": local, "dask": dask, "ratio": dask["seconds"] / local["seconds"]}
        print(
            f"Dask at {args.dask:,} (2 workers x 1 thread, kNN by partitions): {dask['seconds']:.1f} s "
            f"(+{dask['cluster_start_seconds']:.1f} s to start the cluster; worker peak "
            f"{dask['worker_peak_rss_gib']:.2f} GiB) vs in process {local['seconds']:.1f} s "
            f"(peak {local['peak_rss_gib']:.2f} GiB): ratio {results['dask']['ratio']:.2f}",
            flush=True,
        )
        for part in ("knn", "rac"):
            if f"{part}_seconds" in dask and f"{part}_seconds" in local:
                d, lo = dask[f"{part}_seconds"], local[f"{part}_seconds"]
                print(f"  {part}: Dask {d:.1f} s, in process {lo:.1f} s (ratio {d / lo:.2f})", flush=True)
    if args.peer:
        ours = run(PEER, args.peer, args.k, "cmal")
        peer = run(PEER, args.peer, args.k, "sklearn", timeout=args.peer_timeout)
        results["peer"] = {"cmal": ours, "sklearn": peer}
        if "seconds" in peer:
            print(
                f"scikit-learn AgglomerativeClustering(average, kNN connectivity) at {args.peer:,}: "
                f"{peer['seconds']:.1f} s, {peer['peak_rss_gib']:.2f} GiB; cmal graph HAC {ours['seconds']:.1f} s, "
                f"{ours['peak_rss_gib']:.2f} GiB; ratio {peer['seconds'] / ours['seconds']:.1f}",
                flush=True,
            )
        else:
            print(f"scikit-learn at {args.peer:,}: not finished after {args.peer_timeout:.0f} s", flush=True)
    if args.ari:
        row = run(ARI, args.ari, args.k)
        results["ari"] = row
        print(
            f"agreement with exact HAC at {args.ari:,} ({row['clusters']:,} clusters, k={args.k}): "
            f"cmal graph HAC ARI {row['cmal_ari']:.4f}, scikit-learn ARI {row['sklearn_ari']:.4f}",
            flush=True,
        )
    if len(g) > 1 and "dask" in results:
        results["estimate"] = estimate(results)
        print_estimate(results["estimate"])
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
    return results


if __name__ == "__main__":
    main()
