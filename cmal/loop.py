"""The active-learning loop: seed set -> train -> embed + HAC once -> rounds of score, select, label, retrain.

For every seed, the seed set, the seed model, its embeddings and the clustering are shared by all
strategies, and the model trained in round ``r`` starts from the same initial weights whatever the
strategy: differences between strategies are paired, as the method's reference measurements require.
One integer seed drives every random step (seed set, weights, shuffling, selections) through
:func:`derive_seed`.

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

import dataclasses
import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cmal import __version__
from cmal._validation import check_int, check_positive_float
from cmal.metrics import accuracy, mean_and_se
from cmal.state import save_npz, write_json
from cmal.strategies import PoolState, available_strategies, make_strategy

__all__ = ["RunConfig", "SeedStage", "derive_seed", "format_table", "prepare", "run", "summarize"]

# When neither epsilon nor target_clusters is given: clusters of 20 pool points on average. Average linkage
# gives a few large clusters and many small ones, so this leaves several candidate clusters per batch.
DEFAULT_MEAN_CLUSTER_SIZE = 20


def derive_seed(seed: int, *keys: Any) -> int:
    """A 32-bit seed derived from ``seed`` and ``keys`` (e.g. a strategy name and a round).

    Stable across processes and platforms (SHA-256, not Python's salted ``hash``), so a run is reproducible
    from its one integer seed, and independent streams never collide by accident.
    """
    text = "/".join([str(int(seed)), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


@dataclass(frozen=True)
class RunConfig:
    """Settings of one experiment; validated by :meth:`validate` against the loaded pool.

    Attributes
    ----------
    dataset : str
        A name from :func:`cmal.data.available_datasets` or an ``.npz`` path.
    strategies : tuple of str
        Registered strategy names to compare.
    rounds : int
        Active-learning rounds after the seed set.
    batch_size : int
        ``k_t``, labels requested per round.
    candidates : int or None
        ``k_m``; default ``ceil(1.25 * k_t)`` (the paper's CIFAR-scale ratio).
    seed_size : int
        ``p``, size of the random seed set.
    seeds : int
        Number of repetitions, with seeds ``seed, seed + 1, ...``.
    seed : int
        First seed.
    epsilon, target_clusters : optional
        HAC threshold, or the number of clusters to aim for (at most one of the two). Default: the pool size
        divided by 20.
    model : str
        A name from :func:`cmal.models.available_models`.
    epochs, min_steps, train_batch_size, learning_rate :
        Training of every round's model (from scratch; see :func:`cmal.training.fit`).
    pool_size, test_size : optional
        Use only the first rows of the pool / test set (quick runs).
    """

    dataset: str = "mnist"
    strategies: tuple[str, ...] = ("cluster-margin", "margin", "random")
    rounds: int = 5
    batch_size: int = 200
    candidates: int | None = None
    seed_size: int = 100
    seeds: int = 1
    seed: int = 0
    epsilon: float | None = None
    target_clusters: int | None = None
    model: str = "small-cnn"
    epochs: int = 10
    min_steps: int = 300
    train_batch_size: int = 32
    learning_rate: float = 1e-3
    pool_size: int | None = None
    test_size: int | None = None

    @property
    def k_m(self) -> int:
        return self.candidates if self.candidates is not None else math.ceil(1.25 * self.batch_size)

    def validate(self, n_pool: int | None = None) -> "RunConfig":
        """Check every field (and that the rounds fit in a pool of ``n_pool``); return ``self``."""
        if isinstance(self.strategies, str) or not self.strategies:
            raise ValueError("strategies must be a non-empty list of names, e.g. ('cluster-margin', 'margin').")
        for name in self.strategies:
            if name not in available_strategies():
                raise ValueError(f"Unknown strategy {name!r}; choose from {', '.join(available_strategies())}.")
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"strategies lists a name twice: {list(self.strategies)}.")
        check_int(self.rounds, "rounds", minimum=1)
        check_int(self.batch_size, "batch_size (k_t)", minimum=1)
        check_int(self.seed_size, "seed_size", minimum=1)
        check_int(self.seeds, "seeds", minimum=1)
        check_int(self.seed, "seed", minimum=0)
        check_int(self.epochs, "epochs", minimum=1)
        check_int(self.min_steps, "min_steps", minimum=0)
        check_int(self.train_batch_size, "train_batch_size", minimum=1)
        check_positive_float(self.learning_rate, "learning_rate")
        if self.candidates is not None:
            check_int(self.candidates, "candidates (k_m)", minimum=1)
            if self.candidates < self.batch_size:
                raise ValueError(
                    f"candidates (k_m) is {self.candidates} but batch_size (k_t) is {self.batch_size}; "
                    f"k_m must be >= k_t. Raise candidates to at least {self.batch_size}."
                )
        if self.epsilon is not None and self.target_clusters is not None:
            raise ValueError("Give epsilon or target_clusters, not both.")
        if self.epsilon is not None:
            check_positive_float(self.epsilon, "epsilon")
        if self.target_clusters is not None:
            check_int(self.target_clusters, "target_clusters", minimum=1)
        if n_pool is not None:
            need = self.seed_size + self.rounds * self.batch_size
            if need > n_pool:
                raise ValueError(
                    f"seed_size + rounds * batch_size = {need} labels, but the pool has {n_pool} examples; "
                    "lower rounds, batch_size or seed_size."
                )
            if self.target_clusters is not None and self.target_clusters > n_pool:
                raise ValueError(f"target_clusters is {self.target_clusters} but the pool has {n_pool} examples.")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["strategies"] = list(self.strategies)
        d["k_m"] = self.k_m
        return d


def _train(config: RunConfig, ds: Any, labeled: np.ndarray, seed: int,
           on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> tuple[Any, float]:
    from cmal.models import build_model
    from cmal.training import epoch_callback, fit

    t0 = time.perf_counter()
    model = build_model(config.model, ds.image_shape, ds.n_classes, random_state=seed)
    fit(model, ds.x_pool[labeled], ds.y_pool[labeled], epochs=config.epochs, batch_size=config.train_batch_size,
        min_steps=config.min_steps, learning_rate=config.learning_rate, random_state=seed,
        callbacks=[epoch_callback(on_epoch)] if on_epoch is not None else None)
    return model, time.perf_counter() - t0


def _cluster(config: RunConfig, embeddings: np.ndarray) -> tuple[Any, np.ndarray, dict[str, Any]]:
    from cmal.hac import linkage_tree

    t0 = time.perf_counter()
    tree = linkage_tree(embeddings)
    if config.epsilon is not None:
        epsilon = float(config.epsilon)
    else:
        target = config.target_clusters or max(1, round(tree.n / DEFAULT_MEAN_CLUSTER_SIZE))
        epsilon = tree.epsilon_for_clusters(target)
    labels = tree.cut(epsilon)
    sizes = np.bincount(labels)
    info = {"epsilon": epsilon, "n_clusters": int(sizes.size), "largest_cluster": int(sizes.max()),
            "singletons": int((sizes == 1).sum()), "hac_seconds": time.perf_counter() - t0,
            "backend": tree.backend}
    return tree, labels, info


@dataclass
class SeedStage:
    """What every strategy of one seed shares: seed set, seed model, embeddings, HAC, first probabilities.

    Attributes
    ----------
    dataset : cmal.data.Dataset
    seed : int
    seed_set : ndarray (p,)
        Pool indices of the random seed set.
    model : keras.Model
        The seed model.
    embeddings : ndarray (n_pool, d)
    tree : cmal.hac.HACTree
        The merge tree; ``clusters`` is its cut at ``cluster_info["epsilon"]``.
    clusters : ndarray (n_pool,)
    cluster_info : dict
    probs : ndarray (n_pool, C)
        Seed model's probabilities on the pool.
    accuracy : float
        Seed model's test accuracy.
    train_seconds : float
    """

    dataset: Any
    seed: int
    seed_set: np.ndarray
    model: Any
    embeddings: np.ndarray
    tree: Any
    clusters: np.ndarray
    cluster_info: dict[str, Any]
    probs: np.ndarray
    accuracy: float
    train_seconds: float


def prepare(config: RunConfig, seed: int | None = None, *, dataset: Any = None, progress: bool = False,
            on_epoch: Callable[[dict[str, Any]], None] | None = None) -> SeedStage:
    """Steps 1-2 of Algorithm 2 for one seed: draw the seed set, train, embed the pool, run HAC once.

    Parameters
    ----------
    config : RunConfig
    seed : int, optional
        Defaults to ``config.seed``.
    dataset : cmal.data.Dataset, optional
        Already loaded data (default: load ``config.dataset``).
    progress : bool
        Progress bar while embedding.
    on_epoch : callable, optional
        Receives the seed model's epoch logs (see :func:`run`).

    Examples
    --------
    >>> stage = prepare(RunConfig(dataset="digits", seed_size=50, min_steps=50))   # doctest: +SKIP
    >>> stage.embeddings.shape, stage.cluster_info["n_clusters"]                    # doctest: +SKIP
    ((1438, 128), 72)
    """
    from cmal.data import load_dataset
    from cmal.embed import embed, predict_proba

    config.validate()
    ds = dataset if dataset is not None else load_dataset(config.dataset, pool_size=config.pool_size,
                                                          test_size=config.test_size)
    config.validate(ds.n_pool)
    seed = config.seed if seed is None else check_int(seed, "seed", minimum=0)
    rng = np.random.default_rng(derive_seed(seed, "seed-set"))
    seed_set = np.sort(rng.choice(ds.n_pool, config.seed_size, replace=False))
    model, train_s = _train(config, ds, seed_set, derive_seed(seed, "train", 0),
                            _epoch_reporter(on_epoch, None, seed, 0))
    acc = accuracy(ds.y_test, predict_proba(model, ds.x_test))
    embeddings = embed(model, ds.x_pool, progress=progress)
    tree, clusters, info = _cluster(config, embeddings)
    return SeedStage(ds, seed, seed_set, model, embeddings, tree, clusters, info,
                     predict_proba(model, ds.x_pool), acc, train_s)


def _epoch_reporter(on_epoch: Callable[[dict[str, Any]], None] | None, strategy: str | None, seed: int,
                    round_: int) -> Callable[[int, dict[str, float]], None] | None:
    if on_epoch is None:
        return None
    return lambda epoch, logs: on_epoch({"strategy": strategy, "seed": seed, "round": round_, "epoch": epoch,
                                         **logs})


def run(
    config: RunConfig,
    out: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    on_round: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the experiment described by ``config``.

    Parameters
    ----------
    config : RunConfig
    out : path, optional
        Run directory; receives ``config.json`` at the start, ``results.json`` after every finished
        strategy (``"complete": false`` until the end) and ``selections/<strategy>_seed<s>.npz`` (labeled
        indices and the round each was labeled in). Every file is written atomically.
    progress : bool
        Show a tqdm progress bar over all rounds.
    on_round : callable, optional
        Called with each round's record (a dict) as soon as it is measured.
    on_epoch : callable, optional
        Called after every training epoch with ``{"strategy", "seed", "round", "epoch", "loss", ...}``
        (strategy ``None`` for the seed model); the widgets' training monitor plugs in here.

    Returns
    -------
    dict
        The content of ``results.json``: ``config``, ``dataset``, ``clustering`` (per seed), ``runs`` (per
        strategy and seed: ``rounds`` with ``n_labeled``, ``accuracy``, ``select_seconds``, ...) and
        ``summary`` (per strategy: mean and standard error of accuracy per round over seeds).
    """
    from tqdm.auto import tqdm

    from cmal.data import load_dataset
    from cmal.embed import predict_proba

    if not isinstance(config, RunConfig):
        raise ValueError(f"config must be a RunConfig, got {type(config).__name__}.")
    config.validate()
    ds = load_dataset(config.dataset, pool_size=config.pool_size, test_size=config.test_size)
    config.validate(ds.n_pool)
    out_dir = Path(out) if out is not None else None
    results: dict[str, Any] = {
        "cmal_version": __version__,
        "config": config.to_dict(),
        "dataset": ds.describe(),
        "clustering": [],
        "runs": [],
        "complete": False,
    }
    if out_dir is not None:
        write_json(out_dir / "config.json", {"cmal_version": __version__, "config": config.to_dict(),
                                             "dataset": ds.describe()})

    total = config.seeds * len(config.strategies) * config.rounds
    with tqdm(total=total, desc="rounds", unit="round", disable=not progress) as bar:
        for seed in range(config.seed, config.seed + config.seeds):
            bar.set_postfix_str(f"seed {seed}: seed model, embeddings, HAC")
            stage = prepare(config, seed, dataset=ds, on_epoch=on_epoch)
            results["clustering"].append({"seed": seed, **stage.cluster_info})
            seed_set, clusters, train_s = stage.seed_set, stage.clusters, stage.train_seconds

            for name in config.strategies:
                strategy = make_strategy(name, k_m=config.k_m, random_state=derive_seed(seed, "select", name))
                labeled, probs = seed_set, stage.probs
                round_of = np.zeros(ds.n_pool, dtype=np.int64) - 1
                round_of[seed_set] = 0
                rounds = [{"round": 0, "n_labeled": int(labeled.size), "accuracy": stage.accuracy,
                           "select_seconds": 0.0, "train_seconds": train_s}]
                for r in range(1, config.rounds + 1):
                    bar.set_postfix_str(f"seed {seed}: {name} round {r}")
                    t0 = time.perf_counter()
                    state = PoolState.create(probs=probs, clusters=clusters, labeled=labeled)
                    batch = strategy.select(state, config.batch_size)
                    select_s = time.perf_counter() - t0
                    # The simulated oracle: the pool's held labels become known for the batch.
                    labeled = np.concatenate([labeled, batch])
                    round_of[batch] = r
                    model, train_s = _train(config, ds, labeled, derive_seed(seed, "train", r),
                                            _epoch_reporter(on_epoch, name, seed, r))
                    acc = accuracy(ds.y_test, predict_proba(model, ds.x_test))
                    record = {"round": r, "n_labeled": int(labeled.size), "accuracy": acc,
                              "select_seconds": select_s, "train_seconds": train_s,
                              "batch_clusters": int(np.unique(clusters[batch]).size)}
                    rounds.append(record)
                    if on_round is not None:
                        on_round({"strategy": name, "seed": seed, **record})
                    if r < config.rounds:
                        probs = predict_proba(model, ds.x_pool)
                    bar.update(1)
                results["runs"].append({"strategy": name, "seed": seed, "rounds": rounds})
                if out_dir is not None:
                    save_npz(out_dir / "selections" / f"{name}_seed{seed}.npz",
                             labeled=labeled, round_of=round_of[labeled])
                    write_json(out_dir / "results.json", {**results, "summary": summarize(results)})
    results["summary"] = summarize(results)
    results["complete"] = True
    if out_dir is not None:
        write_json(out_dir / "results.json", results)
    return results


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per strategy: labels per round and the mean and standard error of accuracy over seeds."""
    summary = []
    for name in dict.fromkeys(r["strategy"] for r in results["runs"]):
        runs = [r for r in results["runs"] if r["strategy"] == name]
        n_rounds = min(len(r["rounds"]) for r in runs)
        acc = np.array([[x["accuracy"] for x in r["rounds"][:n_rounds]] for r in runs])
        mean, se = mean_and_se(acc)
        summary.append({
            "strategy": name,
            "n_seeds": len(runs),
            "n_labeled": [x["n_labeled"] for x in runs[0]["rounds"][:n_rounds]],
            "accuracy_mean": mean.tolist(),
            "accuracy_se": se.tolist(),
            "select_seconds_mean": float(np.mean([x["select_seconds"] for r in runs for x in r["rounds"][1:]])),
        })
    return summary


def format_table(summary: list[dict[str, Any]]) -> str:
    """A plain-text table: one row per strategy, one column per round (mean accuracy in %, ± SE)."""
    if not summary:
        return "(no results)"
    labels = summary[0]["n_labeled"]
    head = ["strategy"] + [f"{n} labels" for n in labels] + ["select s"]
    rows = [head]
    for s in summary:
        cells = [s["strategy"]]
        for m, e in zip(s["accuracy_mean"], s["accuracy_se"]):
            cells.append(f"{100 * m:.2f}" + (f" ±{100 * e:.2f}" if s["n_seeds"] > 1 else ""))
        cells.append(f"{s['select_seconds_mean']:.4f}")
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
