"""Embedding and training throughput.

1. Embedding: cmal's embedding path (``cmal.embed.embed``) against a bare ``model.predict`` of the same
   embedding sub-model on the same data, in one run; prints examples/s and the ratio (goal >= 0.9).
2. Training under ``MirroredStrategy`` over 2 logical CPU devices against the default strategy (1 replica), in
   one run (a subprocess, because devices must be configured before TensorFlow starts): examples/s in total
   and per replica.

Usage: python benchmarks/embedding_throughput.py [--pool 8000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def embedding(pool: int, repeats: int) -> None:
    import numpy as np

    from cmal.data import load_dataset
    from cmal.embed import embed
    from cmal.models import build_model, embedding_model

    ds = load_dataset("mnist")
    x = np.concatenate([ds.x_pool] * max(1, pool // ds.n_pool))[:pool]
    model = build_model("small-cnn", ds.image_shape, 10, random_state=0)
    sub = embedding_model(model)
    embed(model, x[:2048], progress=False)
    sub.predict(x[:2048], batch_size=1024, verbose=0)  # warm both paths (tracing) before timing
    best = {"cmal": float("inf"), "predict": float("inf")}
    for _ in range(repeats):  # interleaved, best of n: the machine's other load hits both alike
        t0 = time.perf_counter()
        embed(model, x, batch_size=1024, progress=False)
        best["cmal"] = min(best["cmal"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        sub.predict(x, batch_size=1024, verbose=0)
        best["predict"] = min(best["predict"], time.perf_counter() - t0)
    ours, ref = len(x) / best["cmal"], len(x) / best["predict"]
    print(f"embedding {len(x)} MNIST images, small CNN, batch 1024, best of {repeats}:")
    print(f"  cmal.embed     {ours:10.0f} examples/s")
    print(f"  model.predict  {ref:10.0f} examples/s")
    print(f"  ratio          {ours / ref:10.2f}  (goal >= 0.9)")


TRAIN = textwrap.dedent("""
    import json, sys, time
    import tensorflow as tf
    replicas = int(sys.argv[1])
    if replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    from cmal.data import load_dataset
    from cmal.distribute import get_strategy
    from cmal.models import build_model
    from cmal.training import train_model
    ds = load_dataset("mnist")
    strategy = get_strategy("cpu", verbose=False)
    build = lambda: build_model("small-cnn", ds.image_shape, 10)
    x, y = ds.x_pool[:4000], ds.y_pool[:4000]
    train_model(build, x[:256], y[:256], strategy=strategy, batch_size=32, epochs=1, min_steps=0, random_state=0)
    t0 = time.perf_counter()
    _, info = train_model(build, x, y, strategy=strategy, batch_size=32, epochs=3, min_steps=0, random_state=0)
    seconds = time.perf_counter() - t0
    print(json.dumps({"replicas": info["replicas"], "global_batch": info["global_batch_size"],
                      "examples_per_s": info["steps"] * info["global_batch_size"] / seconds}))
""")


def training() -> None:
    rows = []
    for replicas in (1, 2):
        out = subprocess.run([sys.executable, "-c", TRAIN, str(replicas)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ref = rows[0]["examples_per_s"]
    print("training the small CNN on 4,000 MNIST images, 32 per replica, 3 epochs (2 physical cores):")
    for r in rows:
        print(
            f"  {r['replicas']} replica(s), global batch {r['global_batch']:3d}: {r['examples_per_s']:8.0f} examples/s"
            f" total, {r['examples_per_s'] / r['replicas']:8.0f} per replica,"
            f" {r['examples_per_s'] / ref:4.2f}x 1 replica"
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", type=int, default=8000)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    embedding(a.pool, a.repeats)
    training()
