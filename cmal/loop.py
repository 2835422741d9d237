"""The active-learning loop: seed set -> train -> embed + HAC once -> rounds of score, select, label, retrain.

For every seed, the seed set, the seed model, its embeddings and the clustering are shared by all
strategies, and the model trained in round ``r`` starts from the same initial weights whatever the
strategy: differences between strategies are paired, as the method's reference measurements require.
One integer seed drives every random step (seed set, weights, shuffling, selections) through
:func:`cmal.config.derive_seed`.

Examples
--------
>>> from cmal.loop import RunConfig, run
>>> config = RunConfig(dataset="digits", strategies=("cluster-margin", "random"), rounds=1,
...                    batch_size=20, seed_size=30, min_steps=20)
>>> results = run(config, progress=False)                      # doctest: +SKIP
>>> [r["n_labeled"] for r in results["runs"][0]["rounds"]]      # doctest: +SKIP
[30, 50]
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cmal import __version__

# The configuration and the seed stage live below the session, which the loop drives; they stay importable from
# here (``from cmal.loop import RunConfig, prepare``), as they always were.
from cmal.config import RunConfig, _saved_config_dict, config_from_dict, derive_seed
from cmal.metrics import mean_and_se
from cmal.stage import (
    SeedStage,
    auto_cut,
    load_saved_model,
    load_stage,
    prepare,
    save_stage,
    target_clusters,
    train_round_model,
    versions,
)
from cmal.state import StateError, read_json, write_json

__all__ = [
    "RunConfig",
    "SeedStage",
    "auto_cut",
    "config_from_dict",
    "derive_seed",
    "format_table",
    "load_saved_model",
    "load_stage",
    "prepare",
    "resume",
    "run",
    "save_stage",
    "saved_data_format",
    "summarize",
    "target_clusters",
    "train_round_model",
    "versions",
]


def run(
    config: RunConfig,
    out: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    on_round: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    oracle: str = "simulated",
    resume: bool = False,
    tf_strategy: Any = None,
    heartbeat: float = 60.0,
) -> dict[str, Any]:
    """Run the experiment described by ``config``.

    Parameters
    ----------
    config : RunConfig
    out : path, optional
        Run directory; receives ``config.json`` at the start, ``results.json`` after every finished
        strategy (``"complete": false`` until the end), and per strategy and seed (see
        :class:`cmal.session.Session`) ``selections/<strategy>_seed<s>.npz`` (labeled indices, the round each
        was labeled in, the labels), ``sessions/<strategy>_seed<s>.json`` (the rounds so far) and, when
        ``config.checkpoints``, ``models/<strategy>_seed<s>/round_XXX.keras``. Every file is written atomically.
    progress : bool
        Show a tqdm progress bar over all rounds.
    on_round : callable, optional
        Called with each round's record (a dict) as soon as it is measured.
    on_epoch : callable, optional
        Called after every training epoch with ``{"strategy", "seed", "round", "epoch", "loss", ...}``
        (strategy ``None`` for the seed model); the widgets' training monitor plugs in here.
    oracle : {"simulated", "human"}
        With ``"human"`` every round waits until its batch is labeled in the run directory's label store
        (the labeling widget, or ``cmal label import``); see :class:`cmal.session.Session`.
    resume : bool
        Continue the run saved in ``out`` (see :func:`resume`). Without it, a directory that already holds a
        run is refused, so saved work is never overwritten.
    tf_strategy : tf.distribute.Strategy, optional
        Where every model trains and predicts, e.g. ``get_strategy("tpu", tpu="my-tpu", zone=...)`` for a named
        TPU node. Default: ``get_strategy(config.distribute)``.
    heartbeat : float
        With ``oracle="human"``: seconds between the "still waiting" lines a waiting round prints (after one
        line saying what it waits for and the command that exports the batch).

    Every check (configuration, dataset, model, the directory) happens before ``out`` is created or written;
    a folder where an earlier start stopped before saving any work is reused. While it runs, this process is
    the directory's one writer (:class:`cmal.locks.DirectoryLock`): another run, resume or session on it is
    refused with a message naming this process. A dataset given as a path is saved as an absolute path.

    Returns
    -------
    dict
        The content of ``results.json``: ``config``, ``dataset``, ``devices``, ``metric`` ("accuracy", or
        "pooled_ap" for multi-label), ``clustering`` (per seed), ``runs`` (per strategy and seed: ``rounds``
        with ``n_labeled``, ``accuracy``, ``select_seconds``, ...) and ``summary`` (per strategy: mean and
        standard error of the metric per round over seeds).
    """
    from cmal.distribute import get_strategy
    from cmal.locks import DirectoryLock
    from cmal.models import check_model
    from cmal.rundir import check_new_run

    if not isinstance(config, RunConfig):
        raise ValueError(f"config must be a RunConfig, got {type(config).__name__}.")
    # Every check comes before the run directory is created or written: a bad configuration, dataset or model
    # leaves nothing behind, and the same command works once the input is fixed.
    config = config.validate().resolved()
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and not isinstance(config.model, str):
        from cmal.models import model_label

        label = model_label(config.model)
        import inspect

        if (
            "<lambda>" in label
            or "<locals>" in label
            or not (inspect.isfunction(config.model) or inspect.isclass(config.model))
        ):
            import warnings

            warnings.warn(
                f"the model builder {label} is a lambda, a nested function, a partial or a callable "
                "object: no later process, and no "
                "resume, can import it again; define it at the top level of a .py module (or of the "
                "notebook, for a resume in this kernel).",
                stacklevel=2,
            )
    if resume and out_dir is None:
        raise ValueError("resume=True needs the run directory as out.")
    resume_dir = out_dir if resume else None  # the folder a resume continues (None for a new run)
    if out_dir is not None and not resume:
        check_new_run(out_dir)
    with contextlib.ExitStack() as held:
        if resume_dir is not None:
            # A resume's folder exists: hold it first, so a busy folder is refused before data and TensorFlow load.
            held.enter_context(DirectoryLock(resume_dir, purpose="cmal run --resume"))
        # A resumed run reads its data as it first did (runs saved before data format 2 did not scale uint8).
        ds = config.load_data(saved_data_format(resume_dir) if resume_dir is not None else None)
        config.validate(ds.n_pool)
        distribution = tf_strategy if tf_strategy is not None else get_strategy(config.distribute, verbose=False)
        from cmal.distribute import describe, mixed_precision_policy

        policy = mixed_precision_policy(distribution, config.mixed_precision)
        check_model(
            config.model,
            ds.image_shape,
            ds.n_classes,
            multilabel=ds.multilabel,
            embedding_layer=config.embedding_layer,
            policy=policy,
        )
        if progress:  # one line, before the first minute of training, says where it runs
            d = describe(distribution)
            print(f"cmal: training on {d['kind']} with {d['replicas']} replica(s), {policy}", file=sys.stderr)
        if out_dir is None:
            return _run(config, ds, None, distribution, progress, on_round, on_epoch, oracle, resume, heartbeat)
        if resume:
            _check_resumable(out_dir, config, ds)
        else:
            held.enter_context(DirectoryLock(out_dir, purpose="cmal run"))
            note = check_new_run(out_dir)  # again, now that this process holds the folder
            if note:  # said once every check has passed, just before config.json is replaced
                print(f"cmal: {note}", file=sys.stderr)
        return _run(config, ds, out_dir, distribution, progress, on_round, on_epoch, oracle, resume, heartbeat)


def _run(
    config: RunConfig,
    ds: Any,
    out_dir: Path | None,
    distribution: Any,
    progress: bool,
    on_round: Callable[[dict[str, Any]], None] | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    oracle: str,
    resume: bool,
    heartbeat: float,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from cmal.distribute import describe
    from cmal.models import model_label, resolve_model
    from cmal.session import Session

    results: dict[str, Any] = {
        "cmal_version": __version__,
        "config": config.to_dict(),
        "dataset": ds.describe(),
        "devices": describe(distribution),
        "metric": "pooled_ap" if ds.multilabel else "accuracy",
        "model": model_label(resolve_model(config.model, ds.image_shape)),  # what "auto" built
        "clustering": [],
        "runs": [],
        "complete": False,
    }
    if out_dir is not None and not resume:
        from cmal.models import import_root

        # Where the user's model builder lives, so that a resume from another folder can import it again.
        root = import_root(config.model)
        from cmal.data import DATA_FORMAT

        write_json(
            out_dir / "config.json",
            {
                **{k: results[k] for k in ("cmal_version", "config", "dataset", "devices", "model")},
                "versions": versions(),
                "oracle": oracle,
                "data_format": DATA_FORMAT,
                **({"model_import_root": root} if root else {}),
            },
        )

    total = config.seeds * len(config.strategies) * config.rounds
    resume_dir = out_dir if resume else None  # run() refuses resume=True without out
    with tqdm(total=total, desc="rounds", unit="round", disable=not progress) as bar:
        for seed in range(config.seed, config.seed + config.seeds):
            bar.set_postfix_str(f"seed {seed}: seed model, embeddings, HAC")
            stage = load_stage(resume_dir, seed, ds, distribution, config=config) if resume_dir is not None else None
            if stage is None:
                stage = prepare(config, seed, dataset=ds, on_epoch=on_epoch, strategy=distribution)
                if out_dir is not None:
                    save_stage(out_dir, stage)
            results["clustering"].append({"seed": seed, **stage.cluster_info})
            for name in config.strategies:
                session = Session(
                    stage, name, config, out=out_dir, on_epoch=on_epoch, on_round=on_round, oracle=oracle, resume=resume
                )
                try:
                    bar.update(session.round)
                    for r in range(session.round + 1, config.rounds + 1):
                        if session.stopped is not None:  # config.stop fired: this strategy buys no more labels
                            bar.update(config.rounds - session.round)
                            break
                        bar.set_postfix_str(f"seed {seed}: {name} round {r}")
                        # A waiting human-oracle round says what it waits for (on stderr, above the bar).
                        session.run_round(report=lambda text: tqdm.write(text, file=sys.stderr), heartbeat=heartbeat)
                        bar.update(1)
                finally:
                    session.close()
                results["runs"].append(
                    {
                        "strategy": name,
                        "seed": seed,
                        "rounds": session.records,
                        "n_clusters": int(session.clusters.max()) + 1,
                        "stopped": session.stopped,
                    }
                )
                if out_dir is not None:
                    write_json(out_dir / "results.json", {**results, "summary": summarize(results)})
    results["summary"] = summarize(results)
    results["complete"] = True
    if out_dir is not None:
        write_json(out_dir / "results.json", results)
    return results


def _check_resumable(out: Path, config: RunConfig, ds: Any) -> None:
    import warnings

    saved = read_json(out / "config.json")
    then_config = _saved_config_dict(saved)
    now_config = config.to_dict()
    # The data is compared by its fingerprint below, not by its path: a pool that moved still resumes.
    if {k: v for k, v in then_config.items() if k != "dataset"} != {
        k: v for k, v in now_config.items() if k != "dataset"
    }:
        changed = sorted(k for k, v in now_config.items() if k != "dataset" and then_config.get(k) != v)
        raise StateError(
            f"{str(out)!r} was run with another configuration (differs in: {', '.join(changed)}); "
            "resume it with its own config (cmal.loop.resume / cmal run --resume)."
        )
    if saved.get("dataset", {}).get("fingerprint") != ds.fingerprint():
        raise StateError(
            f"{str(out)!r} was run on other data (fingerprint {saved.get('dataset', {}).get('fingerprint')}"
            f" vs {ds.fingerprint()} for {config.dataset!r}); resume it with the data it started with "
            "(the same file, pool_size and test_size)."
        )
    if then_config.get("dataset") != now_config["dataset"]:
        # The same data at a new path (checked by the fingerprint): remember where it is now.
        write_json(out / "config.json", {**saved, "config": {**saved["config"], "dataset": now_config["dataset"]}})
    now, then = versions(), saved.get("versions", {})
    differ = {k: (then.get(k), v) for k, v in now.items() if then.get(k) not in (None, v)}
    if differ:
        warnings.warn(
            f"resuming {str(out)!r} with other versions ({differ}); rounds trained from now on may "
            "differ from an uninterrupted run.",
            stacklevel=3,
        )


def resume(
    run_dir: str | os.PathLike,
    *,
    progress: bool = True,
    on_round: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    tf_strategy: Any = None,
    heartbeat: float = 60.0,
    dataset: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Continue the run saved in ``run_dir`` from its last completed step (``tf_strategy`` as for :func:`run`).

    Finished seed stages and rounds are loaded, not recomputed; a round interrupted mid-way is redone from its
    saved start (same batch, same training seed), so the finished run equals an uninterrupted one. Damaged
    state files fall back to their previous good version with a warning (:func:`cmal.state.read_checked`).
    ``dataset`` points a run whose data file moved (another folder or machine) at its new path; the data is
    checked against the run's fingerprint, and the new path is saved in ``config.json``.

    Examples
    --------
    >>> results = resume("runs/demo")          # doctest: +SKIP
    """
    from cmal.data import is_named_dataset
    from cmal.rundir import has_work, saved_work

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise StateError(f"{str(run_dir)!r} holds no run to resume (no config.json).")
    saved = read_json(run_dir / "config.json")
    work = saved_work(run_dir)
    root = saved.get("model_import_root")
    if isinstance(root, str) and os.path.isdir(root) and root not in sys.path:
        # The run's own model builder: importable from its folder, whatever folder the resume runs in.
        sys.path.append(root)
    try:
        config = config_from_dict(saved.get("config", {}))
        if dataset is not None:
            config = dataclasses.replace(config, dataset=str(dataset))
        config.validate()
        name = str(config.dataset)
        if not is_named_dataset(name) and not os.path.exists(os.path.expanduser(name)):
            # Runs saved before cmal stored dataset paths absolute hold the path as it was typed.
            where = (
                f"was saved as a relative path and does not exist from here ({os.getcwd()}): resume from the "
                "folder the run was started in, or pass its path"
                if not os.path.isabs(name)
                else "does not exist; if it moved, pass its new path"
            )
            raise ValueError(
                f"the run's dataset file {name!r} {where}: cmal run --resume DIR --dataset PATH "
                "(Python: resume(DIR, dataset=...)); the data is checked against the run's "
                "fingerprint."
            )
    except (TypeError, ValueError) as err:
        if isinstance(err, StateError) or has_work(work) or "dataset file" in str(err):
            raise StateError(f"{str(run_dir)!r} cannot be resumed: {err}") from None
        raise StateError(
            f"{str(run_dir)!r} cannot be resumed: its saved configuration is invalid ({err}). It holds "
            "no saved work: run the corrected command again with the same output directory, which "
            "reuses it."
        ) from None
    return run(
        config,
        run_dir,
        progress=progress,
        on_round=on_round,
        on_epoch=on_epoch,
        oracle=saved.get("oracle", "simulated"),
        resume=True,
        tf_strategy=tf_strategy,
        heartbeat=heartbeat,
    )


def saved_data_format(run_dir: str | os.PathLike) -> int:
    """The data format a saved run loaded its data with (``cmal.data.DATA_FORMAT``; 1 for runs saved before
    cmal recorded it)."""
    try:
        value = read_json(Path(run_dir) / "config.json").get("data_format", 1)
    except (OSError, ValueError, StateError, AttributeError):
        return 1
    return value if value in (1, 2) else 1


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per strategy: labels per round and the mean and standard error over seeds of the run's metric
    (``accuracy``, or ``pooled_ap`` for multi-label), as ``<metric>_mean`` / ``<metric>_se``."""
    metric = results.get("metric", "accuracy")
    summary = []
    for name in dict.fromkeys(r["strategy"] for r in results["runs"]):
        runs = [r for r in results["runs"] if r["strategy"] == name]
        n_rounds = min(len(r["rounds"]) for r in runs)
        values = np.array([[x[metric] for x in r["rounds"][:n_rounds]] for r in runs])
        mean, se = mean_and_se(values)
        summary.append(
            {
                "strategy": name,
                "metric": metric,
                "n_seeds": len(runs),
                "n_labeled": [x["n_labeled"] for x in runs[0]["rounds"][:n_rounds]],
                f"{metric}_mean": mean.tolist(),
                f"{metric}_se": se.tolist(),
                "select_seconds_mean": float(np.mean([x["select_seconds"] for r in runs for x in r["rounds"][1:]])),
            }
        )
    return summary


def format_table(summary: list[dict[str, Any]]) -> str:
    """A plain-text table: one row per strategy, one column per round (mean metric in %, ± SE)."""
    if not summary:
        return "(no results)"
    metric = summary[0].get("metric", "accuracy")
    labels = summary[0]["n_labeled"]
    # Rows measured at different label counts (another batch size, an extra batch) must not sit under one
    # "N labels" header: then the columns are rounds and every cell names its own label count.
    same = all(list(s["n_labeled"]) == list(labels) for s in summary)
    n_cols = max(len(s["n_labeled"]) for s in summary)
    head = (
        ["strategy"]
        + ([f"{n} labels" for n in labels] if same else [f"round {r}" for r in range(n_cols)])
        + ["select s"]
    )
    rows = [head]
    for s in summary:
        cells = [s["strategy"]]
        for m, e, n in zip(s[f"{metric}_mean"], s[f"{metric}_se"], s["n_labeled"]):
            cells.append(
                f"{100 * m:.2f}" + (f" ±{100 * e:.2f}" if s["n_seeds"] > 1 else "") + ("" if same else f" @{n}")
            )
        cells += [""] * (n_cols - len(s["n_labeled"]))
        cells.append(f"{s['select_seconds_mean']:.4f}")
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
