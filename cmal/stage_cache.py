"""A disk cache of seed stages, so a series of notebooks trains the same seed model once.

Steps 1-2 of Algorithm 2 (seed set, seed model, embeddings, HAC tree) cost tens of seconds on a laptop and are
identical in every notebook that uses the same data and training settings. :func:`load_or_prepare` keys a
:func:`cmal.stage.save_stage` folder on exactly what those steps depend on and reloads it when it matches.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cmal.config import RunConfig
from cmal.models import is_builtin, model_builder
from cmal.stage import SeedStage, load_stage, prepare, save_stage, target_clusters, versions

# RunConfig fields that only matter after the seed stage (rounds, batches, cut, what is saved): a change to them
# reuses the cached stage. Every other field (and any field added later) is part of the key, so a new training
# or HAC setting can never silently reuse a stage built without it.
ROUND_ONLY_FIELDS = frozenset(
    {
        "strategies",
        "rounds",
        "batch_size",
        "candidates",
        "seeds",
        "seed",
        "epsilon",
        "target_clusters",
        "warm_start",
        "checkpoints",
        "stop",
    }
)


def stage_key(config: RunConfig, dataset: Any, seed: int) -> str:
    """A 16-hex-digit key of what a seed stage depends on: the training and HAC fields of ``config``, the pool's
    fingerprint, the seed and the versions of cmal, numpy and TensorFlow."""
    fields = {k: v for k, v in config.to_dict().items() if k not in ROUND_ONLY_FIELDS and k != "k_m"}
    if not is_builtin(config.model):
        # A user's builder is recorded by name only; its source (and its module's, for helpers and custom layers
        # defined beside it) is part of the key, so editing the code trains a new seed model instead of reusing
        # the old one. A notebook function's globals are not covered: clear the cache after changing them.
        fields["model_source"] = _source_digest(model_builder(config.model))
    payload = {"config": fields, "seed": int(seed), "fingerprint": dataset.fingerprint(), "versions": versions()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _source_digest(fn: Any) -> str:
    import inspect

    texts = []
    for obj in (fn, sys.modules.get(getattr(fn, "__module__", "") or "")):
        if obj is None or getattr(obj, "__name__", None) == "__main__":
            continue  # a notebook's __main__ has no file; the function's own source is all there is
        try:
            texts.append(inspect.getsource(obj))
        except (OSError, TypeError):  # no source (built in C, or defined in an exec'd string): never reuse
            texts.append(f"{id(obj)}-{os.getpid()}")
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]


def _wanted_cut(config: RunConfig, n: int) -> dict[str, Any]:
    target = target_clusters(config, n)  # the cut prepare() would make
    if target is None:
        assert config.epsilon is not None  # target_clusters() gives None only when epsilon fixes the cut
        return {"epsilon": float(config.epsilon)}
    return {"n_clusters": int(target)}


def load_or_prepare(
    config: RunConfig,
    cache: str | os.PathLike = "runs/stages",
    seed: int | None = None,
    *,
    dataset: Any = None,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    tf_strategy: Any = None,
) -> SeedStage:
    """:func:`cmal.stage.prepare`, or the same stage read back from ``cache`` when it was computed before.

    The first call trains the seed model and saves the stage under ``cache/<key>/``; later calls with the same
    data and training settings (in any notebook or process) load it instead: a few seconds to read the model and
    predict the pool, against tens of seconds or more to train. A different ``epsilon``
    or ``target_clusters`` re-cuts the cached exact HAC tree instead of retraining (a graph-HAC tree is
    rebuilt, since it may stop below the new cut). Concurrent callers (two kernels) wait for each other on a
    lock file instead of training twice.

    Parameters
    ----------
    config : RunConfig
    cache : path
        Folder holding the cached stages (created if missing). Deleting it is always safe.
    seed : int, optional
        Defaults to ``config.seed``.
    dataset, on_epoch
        As for :func:`cmal.stage.prepare`; ``on_epoch`` is only called when the seed model is trained.
    tf_strategy : tf.distribute.Strategy, optional
        Where the seed model trains and predicts (``prepare``'s ``strategy``); default
        ``get_strategy(config.distribute)``.
    progress : bool
        Say whether the stage was loaded or trained, and show the embedding progress bar when training.

    Returns
    -------
    SeedStage
        ``stage.cluster_info["cached"]`` is True when it was read from ``cache``.

    Examples
    --------
    >>> import tempfile
    >>> from cmal.loop import RunConfig
    >>> config = RunConfig(dataset="digits", pool_size=300, test_size=100, seed_size=30, min_steps=20, epochs=1,
    ...                    rounds=1, batch_size=20, target_clusters=20)
    >>> cache = tempfile.mkdtemp()
    >>> first = load_or_prepare(config, cache, progress=False)            # trains the seed model
    >>> again = load_or_prepare(config, cache, progress=False)            # reads it back
    >>> again.cluster_info["cached"], bool((again.embeddings == first.embeddings).all())
    (True, True)
    >>> from dataclasses import replace
    >>> load_or_prepare(replace(config, target_clusters=40), cache, progress=False).cluster_info["n_clusters"]
    40
    """
    from filelock import FileLock

    from cmal.distribute import get_strategy

    config.validate()
    ds = dataset if dataset is not None else config.load_data()
    config.validate(ds.n_pool)
    seed = config.seed if seed is None else int(seed)
    if tf_strategy is None:
        tf_strategy = get_strategy(config.distribute, verbose=False)
    folder = Path(cache) / stage_key(config, ds, seed)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = _wanted_cut(config, ds.n_pool)
    with FileLock(str(folder / ".lock")):
        stage = load_stage(folder, seed, ds, distribution=tf_strategy, config=config)
        if stage is not None and type(stage.tree).__name__ == "HACTree":
            stage = stage.recut(**wanted)  # the exact tree holds every cut
        elif stage is not None and stage.cluster_info.get("requested_cut") != wanted:
            stage = None  # a graph-HAC tree may stop below the new cut: rebuild it
        if stage is not None:
            stage.cluster_info["cached"] = True
            if progress:
                print(
                    f"Seed stage loaded from {folder} (the seed model took {stage.train_seconds:.0f} s to "
                    f"train the first time; delete that folder to retrain).",
                    file=sys.stdout,
                )
            return stage
        stage = prepare(config, seed, dataset=ds, progress=progress, on_epoch=on_epoch, strategy=tf_strategy)
        stage.cluster_info["requested_cut"] = wanted
        save_stage(folder, stage)
        stage.cluster_info["cached"] = False
        return stage
