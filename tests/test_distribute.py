"""Device resolution and the distributed code path (MirroredStrategy over 2 logical CPUs, in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow


def test_auto_falls_back_to_cpu_and_accelerators_fail_clearly(capsys):
    from cmal.distribute import NoAcceleratorError, describe, get_strategy

    strategy = get_strategy("auto")
    assert describe(strategy) == {"kind": "CPU", "replicas": 1, "strategy": "_DefaultDistributionStrategy"}
    assert capsys.readouterr().out.strip() == "cmal: training on CPU with 1 replica(s) (_DefaultDistributionStrategy)"
    with pytest.raises(NoAcceleratorError, match="No TPU available.*tpu='local'"):
        get_strategy("tpu", verbose=False)
    with pytest.raises(NoAcceleratorError, match="No GPU visible"):
        get_strategy("gpu", verbose=False)
    with pytest.raises(ValueError, match="kind must be one of"):
        get_strategy("quantum")


def test_mixed_precision_policy_per_device():
    from cmal.distribute import get_strategy, mixed_precision_policy

    cpu = get_strategy("cpu", verbose=False)
    assert mixed_precision_policy(cpu, "auto") == "float32"
    assert mixed_precision_policy(cpu, None) == "float32"
    assert mixed_precision_policy(cpu, "mixed_bfloat16") == "mixed_bfloat16"
    with pytest.raises(ValueError, match="mixed_precision"):
        mixed_precision_policy(cpu, "fp8")


TWO_CPU_ROUND = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from cmal.distribute import describe, get_strategy
    from cmal.embed import embed
    from cmal.loop import RunConfig, prepare
    from cmal.session import Session

    strategy = get_strategy("cpu", verbose=False)
    config = RunConfig(dataset="digits", pool_size=400, test_size=200, seed_size=40, batch_size=20,
                       train_batch_size=8, min_steps=40, epochs=1, distribute="cpu")
    stage = prepare(config, strategy=strategy)
    session = Session(stage, "cluster-margin", config, out=sys.argv[1])
    record = session.run_round()
    plain = embed(stage.model, stage.dataset.x_pool, progress=False)      # not distributed
    from dataclasses import replace
    from cmal.loop import run
    ran = run(replace(config, strategies=("random",), rounds=1), progress=False, tf_strategy=strategy)
    print(json.dumps({"devices": describe(strategy), "record": record, "run_devices": ran["devices"],
                      "run_replicas": ran["runs"][0]["rounds"][1]["replicas"],
                      "embed_max_diff": float(np.abs(plain - stage.embeddings).max()),
                      "n_embedded": int(stage.embeddings.shape[0])}))
""")


def test_a_full_round_runs_mirrored_over_two_cpu_devices(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, "-c", TWO_CPU_ROUND, str(tmp_path)], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == {"kind": "CPU", "replicas": 2, "strategy": "MirroredStrategy"}
    # run(tf_strategy=...) trains under the strategy it is given, not one of its own.
    assert result["run_devices"] == result["devices"] and result["run_replicas"] == 2
    record = result["record"]
    # 8 examples per replica x 2 replicas: the paper's per-core batch arithmetic.
    assert record["replicas"] == 2 and record["global_batch_size"] == 16
    assert record["n_labeled"] == 60 and 0 <= record["accuracy"] <= 1 and record["select_seconds"] >= 0
    # Distributed embedding gathers the replicas' shares back in pool order (incl. the padded last batch).
    assert result["n_embedded"] == 400 and result["embed_max_diff"] < 1e-4
    assert (tmp_path / "models" / "cluster-margin_seed0" / "round_001.keras").is_file()
    assert (tmp_path / "selections" / "cluster-margin_seed0.npz").is_file()
