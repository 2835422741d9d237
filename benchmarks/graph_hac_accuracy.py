"""Graph HAC against exact HAC on real embeddings: adjusted Rand index at 20k points for several k.

Embeddings: the small CNN trained on 1,000 labelled MNIST pool images, then applied to all 10,000 bundled
MNIST images and to the same images shifted by one pixel (a standard augmentation), giving 20,000 real
128-d embeddings (cached in ``--out``). Exact HAC (fastcluster) is cut at the ``epsilon`` giving a mean cluster
size of 20 (the demo's setting) and of 100; graph HAC on the k-NN graph is cut at the same ``epsilon``.

Usage: python benchmarks/graph_hac_accuracy.py [--n 20000] [--ks 10,20,50,100] [--out runs/benchmarks]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def mnist_embeddings(n: int, cache: Path) -> np.ndarray:
    """``n`` (<= 20,000) real embeddings of MNIST images and their one-pixel shifts, cached as .npy."""
    path = cache / f"mnist-embeddings-{n}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    from cmal.data import load_dataset
    from cmal.embed import embed
    from cmal.models import build_model, embedding_model
    from cmal.training import train_model

    ds = load_dataset("mnist")
    rng = np.random.default_rng(0)
    seed = rng.choice(ds.n_pool, 1000, replace=False)
    model, _ = train_model(
        lambda: build_model("small-cnn", ds.image_shape, ds.n_classes),
        ds.x_pool[seed],
        ds.y_pool[seed],
        random_state=0,
        epochs=15,
    )
    images = np.concatenate([ds.x_pool, ds.x_test])
    images = np.concatenate([images, np.roll(images, 1, axis=(1, 2))])[:n]
    emb = embed(embedding_model(model), images, progress=False).astype(np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    from cmal.state import save_npy

    save_npy(path, emb)
    return emb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--ks", default="5,10,20,50")
    parser.add_argument("--linkages", default="average,graph,edges")
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args()
    from sklearn.metrics import adjusted_rand_score

    from cmal.graph_hac import graph_linkage_tree
    from cmal.hac import linkage_tree

    out = Path(args.out)
    x = mnist_embeddings(args.n, out)
    t0 = time.perf_counter()
    exact = linkage_tree(x)
    t_exact = time.perf_counter() - t0
    eps = {size: exact.epsilon_for_mean_size(size) for size in (20, 100)}
    print(f"exact HAC of {len(x):,} x {x.shape[1]}: {t_exact:.1f} s; epsilon {eps}")
    rows = []
    for linkage in args.linkages.split(","):
        for k in map(int, args.ks.split(",")):
            t0 = time.perf_counter()
            tree = graph_linkage_tree(x, k=k, linkage=linkage, max_epsilon=max(eps.values()))
            secs = time.perf_counter() - t0
            row = {"linkage": linkage, "k": k, "seconds": round(secs, 2), "components": tree.n_components}
            for size, e in eps.items():
                row[f"ari_mean_size_{size}"] = round(adjusted_rand_score(exact.cut(e), tree.cut(e)), 4)
                row[f"clusters_{size}"] = [exact.n_clusters(e), tree.n_clusters(e)]
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| linkage | k | ARI (mean size 20) | ARI (mean size 100) | clusters exact / graph (20) | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['linkage']} | {r['k']} | {r['ari_mean_size_20']:.4f} | {r['ari_mean_size_100']:.4f} | "
            f"{r['clusters_20'][0]} / {r['clusters_20'][1]} | {r['seconds']} |"
        )
    from cmal.state import write_json

    write_json(
        out / "graph_hac_accuracy.json",
        {
            "n": len(x),
            "exact_seconds": t_exact,
            "epsilon": eps,
            "rows": rows,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
    )


if __name__ == "__main__":
    main()
