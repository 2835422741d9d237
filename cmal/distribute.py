"""Choosing where Keras runs: TPU, GPUs or CPU, through one ``tf.distribute`` strategy.

The same notebook cell runs on a laptop CPU, a GPU box or a TPU VM: :func:`get_strategy` (``"auto"``) tries a TPU,
then all visible GPUs (``MirroredStrategy``), then the CPU, and says in one line what it found.

Examples
--------
>>> from cmal.distribute import get_strategy, describe
>>> strategy = get_strategy("cpu", verbose=False)
>>> describe(strategy)["kind"]
'CPU'
"""

from __future__ import annotations

import glob
import os
from typing import Any

__all__ = ["NoAcceleratorError", "describe", "get_strategy", "mixed_precision_policy"]

KINDS = ("auto", "tpu", "gpu", "cpu")


class NoAcceleratorError(RuntimeError):
    """The requested device kind is not available here; the message says what was looked for."""


def _tf() -> Any:
    from cmal._tf import tensorflow

    return tensorflow()


def _tpu_hint(tpu: str | None) -> bool:
    """Is there any sign of a TPU? Avoids a slow (and, offline, failing) metadata-server probe otherwise."""
    if tpu:
        return True
    if os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_ACCELERATOR_TYPE"):
        return True
    return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def _connect_tpu(tpu: str | None, zone: str | None, project: str | None) -> Any:
    tf = _tf()
    local = _local_tpu(tpu)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu="local" if local else tpu, zone=zone, project=project
    )
    if not local:
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _local_tpu(tpu: str | None) -> bool:
    # On a Cloud TPU VM the chips are local ("local"); Colab and TPU nodes give an address or a name instead.
    return tpu in (None, "", "local") and not os.environ.get("COLAB_TPU_ADDR") and not os.environ.get("TPU_NAME")


def get_strategy(
    kind: str = "auto",
    *,
    tpu: str | None = None,
    zone: str | None = None,
    project: str | None = None,
    verbose: bool = True,
) -> Any:
    """Resolve a ``tf.distribute.Strategy``.

    Parameters
    ----------
    kind : {"auto", "tpu", "gpu", "cpu"}
        ``"auto"``: a TPU if one is reachable, else every visible GPU, else the CPU. ``"cpu"`` mirrors over the
        logical CPU devices when TensorFlow was configured with several (how the tests exercise the distributed
        code path), and is the default strategy otherwise.
    tpu, zone, project : str, optional
        Passed to ``TPUClusterResolver`` (a TPU name or ``grpc://`` address; ``"local"`` on a TPU VM).
    verbose : bool
        Print one line saying what was found.

    Raises
    ------
    NoAcceleratorError
        ``"tpu"`` or ``"gpu"`` asked for where there is none (a clear message, not a gRPC stack trace).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    tf = _tf()
    strategy = None
    if kind in ("auto", "tpu"):
        reason = "no TPU device, TPU_NAME or COLAB_TPU_ADDR found"
        if _tpu_hint(tpu):
            try:
                strategy = _connect_tpu(tpu, zone, project)
            except Exception as err:  # resolver/gRPC failures come in many types; all mean "no TPU here"
                reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if strategy is None and kind == "tpu":
            raise NoAcceleratorError(
                f"No TPU available ({reason}). On a Cloud TPU VM call get_strategy('tpu', tpu='local'); on a TPU "
                "node pass tpu=NAME, zone=... and project=...; use kind='auto' to fall back to GPU/CPU."
            )
    if strategy is None and kind in ("auto", "gpu"):
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            strategy = tf.distribute.MirroredStrategy([d.name for d in gpus])
        elif kind == "gpu":
            raise NoAcceleratorError(
                "No GPU visible to TensorFlow (tf.config.list_logical_devices('GPU') is empty). Install a "
                "CUDA-enabled TensorFlow (pip install 'tensorflow[and-cuda]') or use kind='auto'/'cpu'."
            )
    if strategy is None:
        cpus = tf.config.list_logical_devices("CPU")
        strategy = (
            tf.distribute.MirroredStrategy([d.name for d in cpus]) if len(cpus) > 1 else tf.distribute.get_strategy()
        )
    if verbose:
        info = describe(strategy)
        print(f"cmal: training on {info['kind']} with {info['replicas']} replica(s) ({info['strategy']})")
    return strategy


def describe(strategy: Any) -> dict[str, Any]:
    """``{"kind": "TPU"|"GPU"|"CPU", "replicas": int, "strategy": class name}`` of a strategy."""
    name = type(strategy).__name__
    if "TPU" in name:
        kind = "TPU"
    else:
        try:
            devices = list(strategy.extended.worker_devices)
        except RuntimeError:  # the default strategy: Keras places ops on the first GPU when there is one
            devices = [d.name for d in _tf().config.list_logical_devices("GPU")[:1]]
        kind = "GPU" if any("GPU" in d.upper() for d in devices) else "CPU"
    return {"kind": kind, "replicas": int(strategy.num_replicas_in_sync), "strategy": name}


def mixed_precision_policy(strategy: Any, setting: str | None = "auto") -> str:
    """The Keras dtype policy to use: ``"auto"`` gives bfloat16 on TPU, float16 on GPU, float32 on CPU."""
    if setting in (None, "none", "float32"):
        return "float32"
    if setting == "auto":
        kind = describe(strategy)["kind"]
        return {"TPU": "mixed_bfloat16", "GPU": "mixed_float16"}.get(kind, "float32")
    if setting in ("mixed_bfloat16", "mixed_float16"):
        return setting
    raise ValueError(f"mixed_precision must be 'auto', None, 'mixed_bfloat16' or 'mixed_float16', got {setting!r}.")
