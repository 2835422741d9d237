"""The ``cmal`` command: ``run``, ``cluster``, ``select`` and ``label``.

The subcommand names and flags are stable. Any bad input ends with exit status 2 and one line on stderr
(``cmal: error: ...``), never a traceback; outputs are written atomically, so a failure leaves no half file.

Examples
--------
::

    cmal run --dataset mnist --strategies cluster-margin,margin,random --rounds 5 --batch-size 200 --out runs/demo
    cmal cluster --embeddings emb.npy --epsilon 2.5 --out clusters.npy
    cmal select --probs probs.npy --clusters clusters.npy --labeled labeled.npy --batch-size 100 \\
        --candidates 125 --strategy cluster-margin --seed 0 --out batch.npy
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line (exit status 2) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _UsageError(ValueError):
    pass


def _candidates(text: str) -> int | str:
    """``--candidates``: a positive integer, or ``auto`` (the adaptive k_m)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= the batch size, or 'auto', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, or 'auto', got {value}")
    return value


def _names(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of strategy names")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cmal", description="Batch active learning with Cluster-Margin.")
    p.add_argument("--version", action="version", version=f"cmal {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run an active-learning experiment and write DIR/results.json")
    r.add_argument(
        "--dataset",
        default=None,
        help="mnist (bundled, default), mnist-pairs, repeated-mnist, "
        "redundant-mnist, imbalanced-mnist, digits, cifar10, cifar100, svhn, tfds:NAME (any "
        "tensorflow-datasets name, online), or a path: an .npz file (x, y: images (n, h, w[, c]) or "
        "feature vectors (n, d)), a folder holding x.npy and y.npy, or a folder of images in one "
        "sub-folder per class (paths are saved absolute, so --resume works from any folder; with --resume: "
        "the new path of a run's data file that moved, checked by its fingerprint)",
    )
    r.add_argument(
        "--strategies",
        type=_names,
        default=["cluster-margin", "margin", "random"],
        help="comma-separated strategy names (default: cluster-margin,margin,random)",
    )
    r.add_argument("--rounds", type=int, default=5, help="active-learning rounds (default 5)")
    r.add_argument("--batch-size", type=int, default=200, help="k_t, labels per round (default 200)")
    r.add_argument(
        "--candidates",
        type=_candidates,
        default=None,
        help="k_m, low-margin candidates (default 1.25 * k_t), or 'auto': each round the fewest "
        "candidates (>= k_t, <= 10 k_t) that span k_t clusters",
    )
    r.add_argument("--seed-size", type=int, default=100, help="p, seed set size (default 100)")
    r.add_argument(
        "--seed-strategy",
        default="random",
        help="how the seed set is chosen: random (default, the paper's), or a cold-start strategy on label-free "
        "embeddings: typiclust, probcover",
    )
    r.add_argument(
        "--seed-embedding",
        choices=["pca", "autoencoder"],
        default="pca",
        help="label-free embeddings a cold-start --seed-strategy sees (default pca)",
    )
    r.add_argument(
        "--stop",
        type=_stop_spec,
        default=None,
        metavar="RULE[:KEY=VALUE,...]",
        help="end a strategy's rounds when a stopping rule fires: kappa (stabilizing predictions, e.g. "
        "kappa:threshold=0.99,window=3) or margin (the batch's mean margin stops changing); default: never",
    )
    r.add_argument("--seeds", type=int, default=1, help="number of repetitions (default 1)")
    r.add_argument("--seed", type=int, default=0, help="first seed (default 0); seeds are seed..seed+seeds-1")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--epsilon", type=float, default=None, help="HAC distance threshold")
    g.add_argument(
        "--target-clusters",
        type=int,
        default=None,
        help="choose epsilon to give about this many clusters (default: pool size / 20)",
    )
    r.add_argument(
        "--hac-method",
        choices=["auto", "exact", "graph"],
        default="auto",
        help="exact HAC or kNN-graph HAC (default auto: by pool size)",
    )
    r.add_argument("--knn-k", type=int, default=30, help="neighbours per point for graph HAC (default 30)")
    r.add_argument(
        "--model",
        default="auto",
        help="auto (default: small-cnn for images, mlp for feature vectors), small-cnn, vgg16, mlp, "
        "linear, or your builder as module:function (build(input_shape, n_classes) -> "
        "keras.Model; a module in the current folder or on PYTHONPATH)",
    )
    r.add_argument(
        "--embedding-layer",
        type=_layer,
        default=None,
        metavar="NAME|POSITION",
        help="the layer of your model whose output is the embedding, by name or by position in "
        "model.layers (-2: the layer feeding the output); default: the layer named 'embedding'",
    )
    r.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("HEIGHT", "WIDTH"),
        help="for a folder of images: resize every image to HEIGHT x WIDTH (needed when sizes differ)",
    )
    r.add_argument("--epochs", type=int, default=10, help="minimum epochs per round (default 10)")
    r.add_argument("--min-steps", type=int, default=300, help="minimum gradient steps per round (default 300)")
    r.add_argument(
        "--distribute",
        choices=["auto", "tpu", "gpu", "cpu"],
        default="auto",
        help="where to train: a TPU, all GPUs, or the CPU (default auto: the first available)",
    )
    r.add_argument("--train-batch-size", type=int, default=32, help="training examples per replica per step")
    r.add_argument("--warm-start", action="store_true", help="start each round from the previous model")
    r.add_argument(
        "--early-stopping",
        type=int,
        default=None,
        metavar="PATIENCE",
        help="stop training when validation loss stalls for PATIENCE epochs",
    )
    r.add_argument("--pool-size", type=int, default=None, help="use only the first N pool examples")
    r.add_argument("--test-size", type=int, default=None, help="use only the first N test examples")
    r.add_argument("--out", help="run directory (created after every check passes; refused if it holds saved work)")
    r.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run saved in DIR from its last completed step "
        "(its saved configuration is used; other options are ignored)",
    )
    r.add_argument(
        "--oracle",
        choices=["simulated", "human"],
        default="simulated",
        help="who labels: held labels (default), or people via the labeling widget / cmal label import "
        "(each round waits for its batch)",
    )
    r.add_argument(
        "--heartbeat",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --oracle human: seconds between the 'still waiting' lines while a round waits for "
        "labels (default 60)",
    )
    r.add_argument("--no-progress", action="store_true", help="hide progress bars")

    c = sub.add_parser("cluster", help="average-linkage HAC of an embedding matrix, cut at epsilon")
    c.add_argument("--embeddings", required=True, help=".npy file of shape (n, d)")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--epsilon", type=float, help="distance threshold")
    g.add_argument("--target-clusters", type=int, help="choose epsilon to give about this many clusters")
    c.add_argument("--metric", choices=["euclidean", "cosine"], default="euclidean")
    c.add_argument(
        "--method",
        choices=["auto", "exact", "graph"],
        default="auto",
        help="exact HAC, or average linkage on a kNN graph for large pools (default auto: exact up to 30,000 points)",
    )
    c.add_argument("--k", type=int, default=30, help="neighbours per point of the kNN graph (default 30)")
    c.add_argument("--seed", type=int, default=0, help="seed of the approximate kNN search (default 0)")
    c.add_argument(
        "--exact-on-graph",
        action="store_true",
        help="graph HAC: exact average linkage on the graph even with approximate kNN lists (above 50,000 points; "
        "3-4.5x slower, see the scale guide)",
    )
    c.add_argument("--out", required=True, help=".npy file receiving one int64 cluster id per row")
    c.add_argument("--no-progress", action="store_true", help="hide progress bars")

    s = sub.add_parser("select", help="choose a batch from probabilities and cluster labels of any framework")
    s.add_argument("--probs", help=".npy (n, C) class probabilities (needed by margin-based strategies)")
    s.add_argument(
        "--margins",
        help=".npy (n,) precomputed margins, instead of --probs for margin strategies "
        "(e.g. from cmal.uncertainty.score_chunked on a memory-mapped pool)",
    )
    s.add_argument("--clusters", help=".npy (n,) cluster ids (needed by cluster strategies)")
    s.add_argument("--labeled", help=".npy of pool indices already labeled (default: none)")
    s.add_argument("--embeddings", help=".npy (n, d) embeddings (needed by coreset and badge)")
    s.add_argument("--batch-size", type=int, required=True, help="k_t")
    s.add_argument(
        "--candidates",
        type=_candidates,
        default=None,
        help="k_m (default 1.25 * k_t), or 'auto' (the fewest candidates that span k_t clusters)",
    )
    s.add_argument(
        "--strategy",
        default="cluster-margin",
        help="a registered strategy name (default cluster-margin) or module:object (a Strategy class "
        "or a diversity rule function)",
    )
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--multilabel", action="store_true", help="probs hold one sigmoid per class")
    s.add_argument(
        "--aggregate",
        choices=["mean", "min"],
        default="mean",
        help="multi-label margin aggregation over classes (default mean)",
    )
    s.add_argument("--out", required=True, help=".npy file receiving the selected pool indices")

    lab = sub.add_parser("label", help="hand labels: export the pending batch of a human-oracle run, import answers")
    lsub = lab.add_subparsers(dest="label_command", required=True)
    e = lsub.add_parser("export", help="write the pending batch for a labeling tool (CSV or Label Studio JSON)")
    e.add_argument("--run", required=True, help="run directory of a `cmal run --oracle human`")
    e.add_argument("--session", required=True, help="which batch: <strategy>_seed<s>, e.g. cluster-margin_seed0")
    e.add_argument("--format", choices=["csv", "label-studio"], default="csv")
    e.add_argument("--images", help="also write the batch's images as PNG files into this folder")
    e.add_argument("--image-prefix", default="", help="prefix of each image reference (e.g. a URL base)")
    e.add_argument("--out", required=True, help="file to write")
    i = lsub.add_parser("import", help="apply labels from a CSV or Label Studio JSON export (all or nothing)")
    i.add_argument("--run", required=True, help="run directory")
    i.add_argument("--session", required=True, help="<strategy>_seed<s>")
    i.add_argument("file", help="CSV with pool_index,label columns, or a Label Studio JSON export")
    i.add_argument(
        "--overwrite",
        action="store_true",
        help="replace stored answers the file disagrees with (without it such conflicts are reported "
        "and nothing is applied)",
    )
    return p


def _version() -> str:
    from cmal import __version__

    return __version__


def _check_out_file(path: str, flag: str = "--out") -> None:
    """Fail before any work when an output file cannot be written where it is asked for."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise _UsageError(f"{flag}: {path!r} is a directory; give a file path, e.g. {str(p / 'out.npy')!r}")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise _UsageError(f"{flag}: {str(parent)!r} is a file, so {path!r} cannot be created")
            if not os.access(parent, os.W_OK):
                raise _UsageError(f"{flag}: cannot write in {str(parent)!r} (permission denied)")
            break


def _layer(text: str) -> str | int:
    """``--embedding-layer``: a position when it is an integer (``-2``), else a layer name."""
    try:
        return int(text)
    except ValueError:
        return text


def _stop_spec(text: str) -> dict[str, Any]:
    """``--stop kappa:threshold=0.99,window=3`` -> ``{"rule": "kappa", "threshold": 0.99, "window": 3}``."""
    name, _, rest = text.partition(":")
    spec: dict[str, Any] = {"rule": name}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise argparse.ArgumentTypeError(
                f"write RULE:KEY=VALUE,..., e.g. kappa:threshold=0.99,window=3; got {text!r}"
            )
        try:
            spec[key] = int(value)
        except ValueError:
            try:
                spec[key] = float(value)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{key}={value!r} in --stop is not a number") from None
    from cmal.stopping import make_stop_rule

    try:
        make_stop_rule(spec)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return spec


def _ignored_with_resume(a: argparse.Namespace) -> list[str]:
    """The run options given with --resume that it does not use (its saved ones win)."""
    parser = build_parser()
    subcommands = next(act for act in parser._actions if isinstance(act, argparse._SubParsersAction))
    run = subcommands.choices["run"]
    used = {"resume", "no_progress", "heartbeat", "dataset", "out", "help"}
    return [
        act.option_strings[0]
        for act in run._actions
        if act.dest not in used and act.option_strings and getattr(a, act.dest, None) != act.default
    ]


def _cmd_run(a: argparse.Namespace) -> int:
    from cmal.loop import RunConfig, format_table, resume, run
    from cmal.rundir import check_new_run

    if not a.heartbeat > 0:
        raise _UsageError(f"--heartbeat must be a number of seconds > 0, got {a.heartbeat}")
    if a.resume is not None:
        if a.out is not None and os.path.abspath(a.out) != os.path.abspath(a.resume):
            raise _UsageError(
                "give --resume DIR alone: a resumed run keeps its directory and saved options (--out is for a new run)"
            )
        ignored = _ignored_with_resume(a)
        if ignored:
            print(
                f"cmal run: --resume continues with the run's saved options; ignored: {', '.join(ignored)}",
                file=sys.stderr,
            )
        t0 = time.perf_counter()
        results = resume(a.resume, progress=not a.no_progress, heartbeat=a.heartbeat, dataset=a.dataset)
        print(format_table(results["summary"]))
        print(f"\nResumed run complete: {a.resume}/results.json ({time.perf_counter() - t0:.0f} s)")
        return 0
    if a.out is None:
        raise _UsageError("pass --out DIR for a new run, or --resume DIR to continue one")

    config = RunConfig(
        dataset=a.dataset or "mnist",
        strategies=tuple(a.strategies),
        rounds=a.rounds,
        batch_size=a.batch_size,
        candidates=a.candidates,
        seed_size=a.seed_size,
        seeds=a.seeds,
        seed=a.seed,
        epsilon=a.epsilon,
        target_clusters=a.target_clusters,
        hac_method=a.hac_method,
        knn_k=a.knn_k,
        model=a.model,
        embedding_layer=a.embedding_layer,
        image_size=None if a.image_size is None else tuple(a.image_size),
        epochs=a.epochs,
        min_steps=a.min_steps,
        pool_size=a.pool_size,
        test_size=a.test_size,
        distribute=a.distribute,
        train_batch_size=a.train_batch_size,
        warm_start=a.warm_start,
        early_stopping=a.early_stopping,
        seed_strategy=a.seed_strategy,
        seed_embedding=a.seed_embedding,
        stop=a.stop,
    ).validate()
    check_new_run(a.out, flag="--out")  # before the dataset loads: a refused folder costs nothing
    t0 = time.perf_counter()
    results = run(config, a.out, oracle=a.oracle, progress=not a.no_progress, heartbeat=a.heartbeat)
    for c in results["clustering"]:
        print(
            f"seed {c['seed']}: HAC gave {c['n_clusters']} clusters at epsilon={c['epsilon']:.4g} "
            f"(largest {c['largest_cluster']}, {c['singletons']} singletons) in {c['hac_seconds']:.1f} s"
        )
    metric = "pooled average precision" if results["metric"] == "pooled_ap" else "accuracy"
    print(f"\nTest {metric} (%) on {results['dataset']['name']}, mean over {config.seeds} seed(s):")
    print(format_table(results["summary"]))
    print(f"\nResults written to {a.out}/results.json ({time.perf_counter() - t0:.0f} s)")
    return 0


def _cmd_cluster(a: argparse.Namespace) -> int:
    from cmal.hac import build_tree
    from cmal.state import load_npy, save_npy

    if a.k < 1:
        raise _UsageError(f"--k must be >= 1, got {a.k}")
    if a.epsilon is not None and not a.epsilon > 0:
        raise _UsageError(f"--epsilon must be > 0, got {a.epsilon}")
    _check_out_file(a.out)
    emb = load_npy(a.embeddings, "--embeddings", mmap=True, shape=(None, None))
    if a.target_clusters is not None and not 1 <= a.target_clusters <= emb.shape[0]:
        raise _UsageError(
            f"--target-clusters must be between 1 and the number of rows of --embeddings "
            f"({emb.shape[0]}), got {a.target_clusters}"
        )
    t0 = time.perf_counter()
    # Graph HAC stops merging at --epsilon, or once --target-clusters is reachable (cheaper than the forest).
    tree = build_tree(
        emb,
        method=a.method,
        metric=a.metric,
        k=a.k,
        max_epsilon=a.epsilon,
        target_clusters=a.target_clusters,
        random_state=a.seed,
        progress=not a.no_progress,
        exact_on_graph=a.exact_on_graph,  # graph HAC only; exact HAC ignores it
    )
    epsilon = a.epsilon if a.epsilon is not None else tree.epsilon_for_clusters(a.target_clusters)
    labels = tree.cut(epsilon)
    save_npy(a.out, labels)
    how = tree.describe()
    print(f"{how}, {time.perf_counter() - t0:.1f} s")
    print(f"{labels.max() + 1} clusters of {labels.size} points at epsilon={epsilon:.6g} -> {a.out}")
    return 0


def _cmd_select(a: argparse.Namespace) -> int:
    from cmal.state import load_npy, save_npy
    from cmal.strategies import PoolState, make_strategy

    if a.batch_size < 1:
        raise _UsageError(f"--batch-size must be >= 1, got {a.batch_size}")
    if a.seed < 0:
        raise _UsageError(f"--seed must be >= 0, got {a.seed}")
    _check_out_file(a.out)
    strategy = make_strategy(a.strategy, k_m=a.candidates, aggregate=a.aggregate, random_state=a.seed)
    margin_ok = a.margins is not None and getattr(strategy, "score_kind", None) == "margin"
    for flag in sorted(strategy.needs):
        if getattr(a, flag) is None and not (flag == "probs" and margin_ok):
            raise _UsageError(f"strategy {a.strategy!r} needs --{flag}; pass --{flag} FILE.npy")
    if a.probs is None and a.clusters is None and a.embeddings is None and a.margins is None:
        raise _UsageError("pass --probs, --margins, --clusters or --embeddings so the pool size is known")
    # Memory-mapped: a pool of millions is read where it lies, never copied whole.
    probs = load_npy(a.probs, "--probs", mmap=True, shape=(None, None)) if a.probs else None
    margins = load_npy(a.margins, "--margins", mmap=True, shape=(None,)) if a.margins else None
    embeddings = load_npy(a.embeddings, "--embeddings", mmap=True, shape=(None, None)) if a.embeddings else None
    clusters = load_npy(a.clusters, "--clusters", shape=(None,)) if a.clusters else None
    labeled = load_npy(a.labeled, "--labeled") if a.labeled else None
    state = PoolState.create(
        probs=probs,
        clusters=clusters,
        labeled=labeled,
        multilabel=a.multilabel,
        embeddings=embeddings,
        scores=None if margins is None else {"margin": margins},
    )
    try:
        batch = strategy.select(state, a.batch_size)
    except (ValueError, OSError):
        raise
    except Exception as err:  # noqa: BLE001 - a user's rule (dotted path) failing: one line, not a traceback
        if ":" not in a.strategy and "." not in a.strategy:
            raise
        raise _UsageError(f"--strategy {a.strategy} failed: {type(err).__name__}: {err}") from None
    save_npy(a.out, batch)
    used = getattr(strategy, "last_k_m", None)
    print(
        f"selected {batch.size} of {state.unlabeled.size} unlabeled examples with {a.strategy}"
        + (f" (k_m = {used})" if used is not None else "")
        + f" -> {a.out}"
    )
    return 0


def _label_store(a: argparse.Namespace) -> Any:
    """The label store of the batch the session waits for; an error when it waits for none."""
    from pathlib import Path

    from cmal.labels import LabelStore
    from cmal.state import StateError, read_checked

    run = Path(a.run)
    if not run.is_dir():
        raise _UsageError(f"--run: {a.run!r} is not a run directory")
    path = run / "labels" / f"{a.session}.json"
    if not path.exists() and not path.with_name(path.name + ".prev").exists():
        known = sorted(p.name[:-5] for p in (run / "labels").glob("*.json")) if (run / "labels").is_dir() else []
        hint = (
            f" (sessions with labels here: {', '.join(known)})"
            if known
            else (" (this run has no human-labeled session: it was not started with --oracle human)")
        )
        raise _UsageError(f"--session: no batch is waiting for labels in {a.run} for session {a.session!r}{hint}")
    store = LabelStore.open(path)
    state_path = run / "sessions" / f"{a.session}.state.json"
    if state_path.exists() or state_path.with_name(state_path.name + ".prev").exists():
        try:
            state = read_checked(state_path)
        except StateError:
            state = None
        if state is not None and (state.get("pending") is None or list(state["pending"]) != store.batch.tolist()):
            done = (run / "results.json").exists() and (read_checked_json(run / "results.json") or {}).get("complete")
            then = (
                "the run is complete"
                if done
                else f"the next batch is chosen when the run continues (cmal run --resume {a.run})"
            )
            raise _UsageError(
                f"no batch of session {a.session!r} is waiting for labels: its round {store.round} batch "
                f"was labeled and trained on (the session is at round {state.get('round')}); {then}"
            )
    return store


def read_checked_json(path: Any) -> Any:
    from cmal.state import read_json

    try:
        return read_json(path)
    except ValueError:
        return None


def _cmd_label(a: argparse.Namespace) -> int:
    from cmal.labels import export_csv, export_label_studio, write_images

    if a.label_command == "export":
        _check_out_file(a.out)
    store = _label_store(a)
    if a.label_command == "import":
        n = store.import_file(a.file, overwrite=a.overwrite)
        c, done = store.counts(), store.last_import
        if n == 0:
            what = f"all {done['unchanged']} label(s) in {a.file} were already applied; nothing changed"
        else:
            what = (
                f"applied {done['new']} new label(s)"
                + (f", replaced {done['overwritten']} stored answer(s)" if done["overwritten"] else "")
                + (f"; {done['unchanged']} were already applied" if done["unchanged"] else "")
            )
        print(
            f"{what}. {c['labeled']}/{store.batch.size} labeled"
            + (" — batch complete, the run continues" if store.complete else "")
        )
        return 0
    images = None
    if a.images:
        from cmal.loop import config_from_dict, saved_data_format
        from cmal.state import read_json

        ds = config_from_dict(read_json(f"{a.run}/config.json")["config"]).load_data(saved_data_format(a.run))
        if ds.kind != "images":
            raise _UsageError(
                f"--images: the run's pool holds feature vectors {ds.image_shape}, not images; "
                "export without --images (the CSV names pool indices)"
            )
        images = write_images(a.images, ds.x_pool, store.batch, prefix=a.image_prefix)
    if a.format == "csv":
        export_csv(
            a.out,
            store.batch,
            clusters=store.clusters,
            images=images,
            classes=store.classes,
            labels=store.answered_names(),
        )
    else:
        if images is None:
            raise _UsageError("--format label-studio needs --images DIR (tasks reference image files)")
        export_label_studio(a.out, store.batch, images, clusters=store.clusters)
    print(f"{store.batch.size} items of round {store.round} -> {a.out}")
    return 0


# Error messages from the library name Python parameters; on the command line they name the flag instead.
_FLAGS = {
    "common": [
        ("batch_size (k_t)", "--batch-size (k_t)"),
        ("k_t (batch size)", "--batch-size (k_t)"),
        ("candidates (k_m)", "--candidates (k_m)"),
        ("k_m (candidates)", "--candidates (k_m)"),
        ("n_clusters", "--target-clusters"),
        ("target_clusters", "--target-clusters"),
        ("max_epsilon", "--epsilon"),
    ],
    "run": [
        ("seed_size + rounds * batch_size", "--seed-size + --rounds * --batch-size"),
        ("lower rounds, batch_size or seed_size", "lower --rounds, --batch-size or --seed-size"),
        ("Unknown model", "Unknown --model"),
        ("embedding_layer=", "--embedding-layer "),
        ("image_size=(height, width)", "--image-size HEIGHT WIDTH"),
        ("image_size", "--image-size"),
        ("seed_size", "--seed-size"),
        ("early_stopping", "--early-stopping"),
        ("pool_size", "--pool-size"),
        ("test_size", "--test-size"),
        ("knn_k", "--knn-k"),
        ("min_steps", "--min-steps"),
        ("train_batch_size", "--train-batch-size"),
        ("hac_method", "--hac-method"),
        ("kind='auto'/'cpu'", "--distribute auto or cpu"),
        ("kind='auto'", "--distribute auto"),
        ("resume()", "--resume"),
    ],
    "select": [("multilabel=True", "--multilabel")],
    "cluster": [("metric='euclidean'", "--metric euclidean")],
}
# Array names are also ordinary words ("more clusters than"): they become flags only as a sentence's subject.
_SUBJECTS = {
    "select": ("probs", "clusters", "labeled", "embeddings", "margins"),
    "cluster": ("embeddings",),
    "run": ("rounds", "seeds", "seed", "epochs", "epsilon"),
}
_VERBS = "must|has|have|holds|hold|rows|repeats|is|are|disagree|looks|contains"


def _with_flags(command: str, message: str) -> str:
    """``message`` with the Python parameter names it holds replaced by the flags of ``command``.

    Quoted parts ('a/seed_size/path', values) are left as they are; elsewhere only whole words are replaced.
    A fallback for messages written for Python callers: the CLI's own checks name their flags directly."""
    import re

    pairs = _FLAGS["common"] + _FLAGS.get(command, [])
    for name, flag in pairs:  # names written with their quoted value (kind='auto') first
        if "'" in name:
            message = message.replace(name, flag)
    parts = re.split(r"('[^']*')", message)  # odd positions are quoted
    for k in range(0, len(parts), 2):
        text = parts[k]
        for name, flag in (p for p in pairs if "'" not in p[0]):
            text = re.sub(rf"(?<![\w\-/.]){re.escape(name)}(?![\w/])", flag, text)
        for name in _SUBJECTS.get(command, ()):
            text = re.sub(rf"(?<![\w\-/.\[]){name}(?= (?:{_VERBS})\b)", f"--{name.replace('_', '-')}", text)
        parts[k] = text
    return "".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    from cmal.data import DatasetUnavailableError
    from cmal.distribute import NoAcceleratorError

    # As with `python -m`, modules in the current folder can be named by dotted path (--strategy my_rules:rule).
    # Appended, not first: a file in the folder named like an installed package must not shadow it.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = {"run": _cmd_run, "cluster": _cmd_cluster, "select": _cmd_select, "label": _cmd_label}[args.command]
    try:
        return handler(args)
    except (ValueError, DatasetUnavailableError, NoAcceleratorError, OSError) as err:
        # Bad input (ValueError and its subclasses), datasets not available offline, unwritable paths.
        from cmal.labels import LabelImportError

        # An import's problems are listed item by item; every other error is one line.
        lines = str(err).splitlines() or [type(err).__name__]
        message = "\n".join(lines) if isinstance(err, LabelImportError) else lines[0]
        if not isinstance(err, (_UsageError, LabelImportError)):
            message = _with_flags(args.command, message)
        print(f"cmal {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        folder = (getattr(args, "resume", None) or getattr(args, "out", None)) if args.command == "run" else None
        again = (
            f" Continue with: cmal run --resume {folder}"
            if folder and os.path.exists(os.path.join(folder, "config.json"))
            else ""
        )
        print(f"cmal {args.command}: interrupted; files already written are complete.{again}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
