"""One seed's shared stage: the seed set, the seed model, its embeddings and predictions, and the HAC tree, made once
(:func:`~cmal.stage.prepare`) and shared by every strategy of that seed; saved and loaded with the run
(:func:`~cmal.stage.save_stage`, :func:`~cmal.stage.load_stage`); and the training of one round's model
(:func:`~cmal.stage.train_round_model`).

Sessions (:mod:`cmal.session`) run rounds on a stage; the loop (:mod:`cmal.loop`) drives sessions. This module
imports neither.

Examples
--------
>>> from cmal.config import RunConfig
>>> from cmal.stage import target_clusters
>>> target_clusters(RunConfig(dataset="digits"), 1000)      # no epsilon given: clusters of 20 points on average
50
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmal import __version__
from cmal._validation import check_int, check_positive_float
from cmal.config import DEFAULT_MEAN_CLUSTER_SIZE, RunConfig, derive_seed
from cmal.state import StateError, load_npy, read_checked, save_npy, write_checked

__all__ = [
    "SeedStage",
    "auto_cut",
    "choose_seed_set",
    "load_saved_model",
    "load_stage",
    "prepare",
    "save_stage",
    "target_clusters",
    "train_round_model",
    "versions",
]

# k_m="auto" looks for k_t candidates in k_t different clusters, so it needs clearly more than k_t clusters; with
# fewer it spans all of them and drifts towards Cluster-Random. Measured (the grid of
# benchmarks/label_efficiency.py on seeds 100-102, never the seeds of the final tables): the best cut for "auto" in
# both grid regimes was the finest tried, clusters of about 5 pool items (2 k_t clusters in redundant-large,
# 3.8 k_t in imbalanced), and pool / 20 was among the worst. On fresh seeds, 2 k_t alone lost 1.5 points of AULC
# to Margin in imbalanced where size 5 did not, so the rule is "about 5 per cluster, and at least 2 k_t".
AUTO_MEAN_CLUSTER_SIZE = 5
AUTO_MIN_CLUSTERS_PER_BATCH_ITEM = 2


def auto_cut(stage: SeedStage, strategy: Any, config: RunConfig) -> np.ndarray:
    """The cluster labels a session of ``strategy`` selects with.

    The stage's cut, except for a Cluster-Margin strategy with ``k_m="auto"`` in a run that set neither
    ``epsilon`` nor ``target_clusters``: then the same tree is cut lower, to the coarsest cut with at least
    ``max(pool / 5, 2 k_t)`` clusters (or the finest the tree has, when ties in merge heights allow no such cut);
    never coarser than the stage's cut.
    """
    k_t = int(config.batch_size)
    n = int(stage.clusters.size)
    wanted = min(max(AUTO_MIN_CLUSTERS_PER_BATCH_ITEM * k_t, round(n / AUTO_MEAN_CLUSTER_SIZE)), n)
    if (
        getattr(strategy, "k_m", None) != "auto"
        or config.epsilon is not None
        or config.target_clusters is not None
        or stage.cluster_info["n_clusters"] >= wanted
    ):
        return stage.clusters
    # A cut keeps >= wanted clusters iff it performs at most n - wanted merges, i.e. stays below the height of
    # merge number n - wanted (heights are sorted). Cut halfway below it: ties in heights never cross the cut.
    h = np.asarray(stage.tree.heights, dtype=float)
    top = h[n - wanted]
    below = h[h < top]
    if top > 0:
        epsilon = ((below.max() if below.size else 0.0) + top) / 2
    else:  # zero-height merges (identical points) cannot be undone: the finest cut there is
        positive = h[h > 0]
        epsilon = positive[0] / 2 if positive.size else 1.0
    return stage.recut(epsilon=epsilon).clusters


def choose_seed_set(config: RunConfig, x_pool: Any, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The seed set of one seed: ``config.seed_size`` pool indices, sorted, and what chose them.

    ``config.seed_strategy="random"`` draws them uniformly (the paper's protocol; the same draw as before cold
    start existed). Any other seed strategy runs on label-free embeddings of ``x_pool``
    (``config.seed_embedding``, :func:`cmal.unsupervised.unsupervised_embeddings`) with an empty labeled set.

    Returns
    -------
    seed_set : ndarray of shape (seed_size,), int64
    info : dict
        ``seed_strategy``, ``seed_embedding`` (None for random), ``seconds``.
    """
    t0 = time.perf_counter()
    if config.seed_strategy == "random":
        rng = np.random.default_rng(derive_seed(seed, "seed-set"))
        chosen = rng.choice(len(x_pool), config.seed_size, replace=False)
        embedding = None
    else:
        from cmal.strategies import PoolState, make_strategy
        from cmal.unsupervised import unsupervised_embeddings

        embedding = config.seed_embedding
        emb = unsupervised_embeddings(x_pool, embedding, random_state=derive_seed(seed, "seed-embedding"))
        strategy = make_strategy(config.seed_strategy, random_state=derive_seed(seed, "seed-set"))
        chosen = strategy.select(PoolState.create(embeddings=emb), config.seed_size)
    info = {
        "seed_strategy": config.seed_strategy,
        "seed_embedding": embedding,
        "seconds": time.perf_counter() - t0,
    }
    return np.sort(np.asarray(chosen, dtype=np.int64)), info


def train_round_model(
    config: RunConfig,
    ds: Any,
    labeled: np.ndarray,
    labels: np.ndarray,
    seed: int,
    *,
    strategy: Any = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    stop_event: Any = None,
    initial_weights: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """Build ``config.model`` under ``strategy`` and train it on ``x_pool[labeled]`` with the given labels.

    Returns ``(model, info)``; ``info`` adds ``seconds`` to :func:`cmal.training.fit`'s report.
    """
    from cmal.models import build_model
    from cmal.training import epoch_callback, train_model

    t0 = time.perf_counter()
    model, info = train_model(
        lambda: build_model(config.model, ds.image_shape, ds.n_classes, multilabel=ds.multilabel),
        ds.x_pool[labeled],
        labels,
        config.train_config(),
        strategy=strategy,
        random_state=seed,
        initial_weights=initial_weights,
        stop_event=stop_event,
        callbacks=[epoch_callback(on_epoch)] if on_epoch is not None else None,
    )
    info["seconds"] = time.perf_counter() - t0
    return model, info


def target_clusters(config: RunConfig, n_pool: int) -> int | None:
    """The number of clusters a run cuts at: None when ``config.epsilon`` fixes the cut, else
    ``config.target_clusters`` or pool / ``DEFAULT_MEAN_CLUSTER_SIZE``."""
    if config.epsilon is not None:
        return None
    return config.target_clusters or max(1, round(n_pool / DEFAULT_MEAN_CLUSTER_SIZE))


def _cluster(config: RunConfig, embeddings: np.ndarray) -> tuple[Any, np.ndarray, dict[str, Any]]:
    from cmal.hac import build_tree

    t0 = time.perf_counter()
    target = target_clusters(config, len(embeddings))
    tree = build_tree(
        embeddings, method=config.hac_method, k=config.knn_k, max_epsilon=config.epsilon, target_clusters=target
    )
    if target is None:
        assert config.epsilon is not None  # target_clusters() gives None only when epsilon fixes the cut
        epsilon = float(config.epsilon)
    else:
        epsilon = tree.epsilon_for_clusters(target)
    labels = tree.cut(epsilon)
    sizes = np.bincount(labels)
    info = {
        "epsilon": epsilon,
        "n_clusters": int(sizes.size),
        "largest_cluster": int(sizes.max()),
        "singletons": int((sizes == 1).sum()),
        "hac_seconds": time.perf_counter() - t0,
        "backend": tree.backend,
    }
    return tree, labels, info


@dataclass
class SeedStage:
    """What every strategy of one seed shares: seed set, seed model, embeddings, HAC, first probabilities.

    Attributes
    ----------
    dataset : cmal.data.Dataset
    seed : int
    seed_set : ndarray (p,)
        Pool indices of the seed set (random, or chosen by ``config.seed_strategy``: see
        :func:`choose_seed_set`).
    model : keras.Model
        The seed model.
    embeddings : ndarray (n_pool, d)
    tree : cmal.tree.HACTree
        The merge tree; ``clusters`` is its cut at ``cluster_info["epsilon"]``.
    clusters : ndarray (n_pool,)
    cluster_info : dict
        The cut (``epsilon``, ``n_clusters``, ...) and who chose the seed set (``seed_strategy``,
        ``seed_embedding``, ``seed_select_seconds``).
    probs : ndarray (n_pool, C)
        Seed model's probabilities on the pool.
    metrics : dict
        Seed model's test metrics (``accuracy`` and ``macro_recall``; ``pooled_ap``, ``mean_ap`` and
        ``accuracy`` for multi-label).
    train_seconds : float
    distribution : tf.distribute.Strategy or None
        Where the models of this stage train and predict.
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
    metrics: dict[str, float]
    train_seconds: float
    distribution: Any = None

    @property
    def accuracy(self) -> float:
        return float(self.metrics["accuracy"])

    def recut(
        self, *, mean_cluster_size: float | None = None, n_clusters: int | None = None, epsilon: float | None = None
    ) -> SeedStage:
        """The same stage with the HAC tree cut elsewhere (milliseconds: the tree is not recomputed).

        Give one of ``mean_cluster_size`` (pool size / that many clusters), ``n_clusters`` or ``epsilon``.
        Sessions on the returned stage share the seed set, seed model and embeddings with this one, so
        comparisons across granularities stay paired.

        Examples
        --------
        >>> coarse = stage.recut(mean_cluster_size=100)          # doctest: +SKIP
        >>> coarse.cluster_info["n_clusters"]                     # doctest: +SKIP
        80
        """
        given = [v is not None for v in (mean_cluster_size, n_clusters, epsilon)]
        if sum(given) != 1:
            raise ValueError("recut needs exactly one of mean_cluster_size, n_clusters or epsilon.")
        n = int(self.clusters.size)
        if mean_cluster_size is not None:
            size = check_positive_float(mean_cluster_size, "mean_cluster_size")
            n_clusters = max(1, min(n, round(n / size)))
        if n_clusters is not None:
            epsilon = self.tree.epsilon_for_clusters(check_int(n_clusters, "n_clusters", minimum=1, maximum=n))
        epsilon = check_positive_float(epsilon, "epsilon")
        clusters = self.tree.cut(epsilon)
        sizes = np.bincount(clusters)
        info = {
            **self.cluster_info,
            "epsilon": float(epsilon),
            "n_clusters": int(sizes.size),
            "largest_cluster": int(sizes.max()),
            "singletons": int((sizes == 1).sum()),
        }
        return dataclasses.replace(self, clusters=clusters, cluster_info=info)


def prepare(
    config: RunConfig,
    seed: int | None = None,
    *,
    dataset: Any = None,
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    strategy: Any = None,
    embeddings_out: str | os.PathLike | None = None,
) -> SeedStage:
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
        Receives the seed model's epoch logs (see :func:`cmal.loop.run`).
    strategy : tf.distribute.Strategy, optional
        Default: ``get_strategy(config.distribute)``.
    embeddings_out : path ending in .npy, optional
        Write the pool's embeddings to this memory-mapped file (for pools larger than memory).

    Examples
    --------
    >>> stage = prepare(RunConfig(dataset="digits", seed_size=50, min_steps=50))   # doctest: +SKIP
    >>> stage.embeddings.shape, stage.cluster_info["n_clusters"]                    # doctest: +SKIP
    ((1438, 128), 72)
    """
    from cmal.distribute import get_strategy
    from cmal.embed import embed, predict_proba
    from cmal.metrics import evaluate

    config.validate()
    ds = dataset if dataset is not None else config.load_data()
    config.validate(ds.n_pool)
    if strategy is None:
        strategy = get_strategy(config.distribute, verbose=progress)
    seed = config.seed if seed is None else check_int(seed, "seed", minimum=0)
    seed_set, seed_info = choose_seed_set(config, ds.x_pool, seed)
    model, info = train_round_model(
        config,
        ds,
        seed_set,
        ds.y_pool[seed_set],
        derive_seed(seed, "train", 0),
        strategy=strategy,
        on_epoch=_epoch_reporter(on_epoch, None, seed, 0),
    )
    metrics = evaluate(ds.y_test, predict_proba(model, ds.x_test, strategy=strategy))
    from cmal.models import EMBEDDING_LAYER

    # Always a named layer: a user's model without one must fail here, not be clustered on its probabilities.
    embeddings = embed(
        model,
        ds.x_pool,
        progress=progress,
        strategy=strategy,
        out=embeddings_out,
        layer=EMBEDDING_LAYER if config.embedding_layer is None else config.embedding_layer,
    )
    tree, clusters, cinfo = _cluster(config, embeddings)
    # Who chose the seed set travels with the stage (saved, cached, and in results["clustering"]).
    cinfo.update(
        seed_strategy=seed_info["seed_strategy"],
        seed_embedding=seed_info["seed_embedding"],
        seed_select_seconds=seed_info["seconds"],
    )
    if not ds.multilabel:  # how many classes the seed set holds: what a cold-start strategy should raise
        cinfo["seed_classes"] = int(np.unique(ds.y_pool[seed_set]).size)
    return SeedStage(
        ds,
        seed,
        seed_set,
        model,
        embeddings,
        tree,
        clusters,
        cinfo,
        predict_proba(model, ds.x_pool, strategy=strategy),
        metrics,
        info["seconds"],
        strategy,
    )


def _stage_dir(out: Path, seed: int) -> Path:
    return out / "stages" / f"seed{seed}"


def save_stage(out: str | os.PathLike, stage: SeedStage) -> None:
    """Write a seed stage to ``stages/seed<s>/``: the seed model, embeddings, merge tree, then (the commit
    point) ``stage.json`` with the seed set, clusters and metrics."""
    folder = _stage_dir(Path(out), stage.seed)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".model.tmp.keras"
    stage.model.save(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, folder / "model.keras")
    save_npy(folder / "embeddings.npy", stage.embeddings)
    tree = stage.tree
    save_npy(folder / "tree.npy", tree.linkage)
    tree_info = {"kind": type(tree).__name__, "n": tree.n, "metric": tree.metric, "backend": tree.backend}
    for name in ("n_components", "max_epsilon", "k", "graph_linkage"):
        if hasattr(tree, name):
            tree_info[name] = getattr(tree, name)
    write_checked(
        folder / "stage.json",
        {
            "seed": stage.seed,
            "fingerprint": stage.dataset.fingerprint(),
            "seed_set": stage.seed_set,
            "clusters": stage.clusters,
            "cluster_info": stage.cluster_info,
            "metrics": stage.metrics,
            "train_seconds": stage.train_seconds,
            "tree": tree_info,
        },
    )


def load_saved_model(
    path: str | os.PathLike, config: RunConfig | None = None, dataset: Any = None, distribution: Any = None
) -> Any:
    """A model saved in Keras format. A user's model with custom layers may not load by itself (Keras needs
    their classes registered); then, given the run's ``config`` and ``dataset``, the model is rebuilt with its
    builder, under the run's precision policy and ``distribution``'s scope as it was trained, and the saved
    weights are loaded into it. A damaged file raises ValueError."""
    import zipfile

    from cmal._tf import keras, tensorflow

    try:
        return keras().models.load_model(path)
    except Exception as err:  # noqa: BLE001 - Keras raises many types for a file it cannot read
        first = err
    from cmal.models import is_builtin

    # Nothing to rebuild with (no configuration or dataset, or a built-in model), or the file itself is damaged.
    if config is None or dataset is None or is_builtin(config.model) or not zipfile.is_zipfile(path):
        raise ValueError(f"cannot load {str(path)!r}: {type(first).__name__}: {first}") from first
    from cmal.distribute import mixed_precision_policy
    from cmal.models import build_model

    strategy = distribution or tensorflow().distribute.get_strategy()
    k = keras()
    previous = k.mixed_precision.global_policy().name
    k.mixed_precision.set_global_policy(mixed_precision_policy(strategy, config.mixed_precision))
    try:
        with strategy.scope():
            model = build_model(config.model, dataset.image_shape, dataset.n_classes, multilabel=dataset.multilabel)
            model.load_weights(path)
    except Exception as err:  # noqa: BLE001 - a rebuild that fails leaves the file unreadable
        raise ValueError(
            f"cannot load {str(path)!r} ({type(first).__name__}: {first}), nor rebuild it with "
            f"{config.model!r} ({type(err).__name__}: {err})"
        ) from first
    finally:
        k.mixed_precision.set_global_policy(previous)
    return model


def load_stage(
    out: str | os.PathLike, seed: int, dataset: Any, distribution: Any = None, *, config: RunConfig | None = None
) -> SeedStage | None:
    """The stage saved by :func:`save_stage`, or None when it was never completed (then it is recomputed).
    ``config`` lets a user's model whose file Keras cannot load alone be rebuilt (:func:`load_saved_model`)."""
    from cmal.embed import predict_proba
    from cmal.tree import HACTree

    folder = _stage_dir(Path(out), seed)
    if not (folder / "stage.json").exists() and not (folder / "stage.json.prev").exists():
        return None
    st = read_checked(folder / "stage.json")
    if st["fingerprint"] != dataset.fingerprint():
        raise StateError(
            f"{str(folder)!r} was saved for another pool (fingerprint {st['fingerprint']} vs "
            f"{dataset.fingerprint()}); resume with the same data."
        )
    try:
        model = load_saved_model(folder / "model.keras", config, dataset, distribution)
        embeddings = load_npy(folder / "embeddings.npy", "embeddings")
        linkage = load_npy(folder / "tree.npy", "tree")
    except (ValueError, OSError) as err:
        raise StateError(
            f"the seed stage in {str(folder)!r} is damaged ({err}); delete that folder to recompute "
            "it (the seed model is retrained with the same seed)."
        ) from None
    info = dict(st["tree"])
    kind = info.pop("kind")
    if kind == "GraphHACTree":
        from cmal.graph_hac import GraphHACTree

        max_eps = info.pop("max_epsilon")
        tree: HACTree = GraphHACTree(
            linkage,
            info.pop("n"),
            info.pop("metric"),
            info.pop("backend"),
            max_epsilon=float("inf") if max_eps is None else max_eps,
            **info,
        )
    else:
        tree = HACTree(linkage, info["n"], info["metric"], info["backend"])
    probs = predict_proba(model, dataset.x_pool, strategy=distribution)
    return SeedStage(
        dataset,
        seed,
        np.asarray(st["seed_set"], dtype=np.int64),
        model,
        embeddings,
        tree,
        np.asarray(st["clusters"], dtype=np.int64),
        st["cluster_info"],
        probs,
        st["metrics"],
        st["train_seconds"],
        distribution,
    )


def versions() -> dict[str, str]:
    """Versions of what a run's numbers depend on (recorded in ``config.json``, compared on resume)."""
    import platform

    out = {"cmal": __version__, "numpy": np.__version__, "python": platform.python_version()}
    try:
        from cmal._tf import tensorflow

        tf = tensorflow()
        out["tensorflow"] = tf.__version__
        from cmal._tf import keras

        out["keras"] = keras().__version__
    except ImportError:  # pragma: no cover - tensorflow is a dependency
        pass
    return out


def _epoch_reporter(
    on_epoch: Callable[[dict[str, Any]], None] | None, strategy: str | None, seed: int, round_: int
) -> Callable[[int, dict[str, float]], None] | None:
    if on_epoch is None:
        return None
    return lambda epoch, logs: on_epoch({"strategy": strategy, "seed": seed, "round": round_, "epoch": epoch, **logs})
