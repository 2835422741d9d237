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

import contextlib
import dataclasses
import hashlib
import numbers
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cmal import __version__
from cmal._validation import check_int, check_positive_float
from cmal.metrics import mean_and_se
from cmal.state import StateError, load_npy, read_checked, read_json, save_npy, write_checked, write_json
from cmal.strategies import available_strategies, make_strategy

__all__ = ["RunConfig", "SeedStage", "config_from_dict", "derive_seed", "format_table", "load_saved_model", "load_stage", "prepare", "saved_data_format", "resume", "run", "save_stage",
           "summarize", "train_round_model", "versions"]

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


def _try_strategy(name: str) -> None:
    """Import a dotted-path strategy and let it choose one batch from a small synthetic pool, so a rule with the
    wrong signature or a broken return value fails with a clear message before a run creates its folder, rather
    than after the seed model has trained."""
    strategy = make_strategy(name, random_state=0)   # an import error says itself what is wrong
    from cmal.strategies import PoolState

    rng = np.random.default_rng(0)
    n = 60
    state = PoolState.create(probs=rng.dirichlet(np.ones(3), n), clusters=np.arange(n) % 12, labeled=np.arange(5),
                             embeddings=rng.normal(size=(n, 4)))
    try:
        strategy.select(state, 10)
    except Exception as err:  # noqa: BLE001 - any failure of the user's code is reported the same way
        raise ValueError(f"strategy {name!r} fails on a small test pool (60 points, 12 clusters, k_t = 10): "
                         f"{type(err).__name__}: {err}. Fix it before starting a run.") from None


@dataclass(frozen=True)
class RunConfig:
    """Settings of one experiment; validated by :meth:`RunConfig.validate` against the loaded pool.

    Attributes
    ----------
    dataset : str
        A name from :func:`cmal.data.available_datasets`, ``"tfds:NAME"``, or a path: an ``.npz`` file, a folder
        holding ``x.npy`` and ``y.npy``, or a folder of images in class sub-folders (:func:`cmal.data.load_dataset`).
    strategies : tuple of str
        Registered strategy names to compare.
    rounds : int
        Active-learning rounds after the seed set.
    batch_size : int
        ``k_t``, labels requested per round.
    candidates : int, "auto" or None
        ``k_m``; default ``ceil(1.25 * k_t)`` (our reading of the paper's CIFAR-scale setting). ``"auto"`` lets Cluster-Margin
        choose it every round: the smallest ``k_m >= k_t`` whose candidates span ``k_t`` clusters, at most
        ``10 k_t`` (see :class:`~cmal.strategies.cluster_margin.ClusterMargin`); each round's record holds the ``k_m`` used.
    seed_size : int
        ``p``, size of the random seed set.
    seeds : int
        Number of repetitions, with seeds ``seed, seed + 1, ...``.
    seed : int
        First seed.
    epsilon, target_clusters : optional
        HAC threshold, or the number of clusters to aim for (at most one of the two). Default: the pool size
        divided by 20.
    model : str or callable
        ``"auto"`` (default: ``small-cnn`` for images, ``mlp`` for feature vectors), a name from
        :func:`cmal.models.available_models`, your builder ``build(input_shape, n_classes) -> keras.Model``, or
        its dotted path ``"package.module:build"`` (see :mod:`cmal.models`). ``config.json`` records a builder
        as ``"module:name"``, which a later resume imports.
    embedding_layer : str or int, optional
        The layer of your model whose output is the embedding, by name or by position in ``model.layers``
        (``-2``: the layer feeding the output); default: the layer named ``"embedding"``.
    image_size : (height, width), optional
        For a dataset that is a folder of images: resize every image to this size (needed when their sizes
        differ).
    epochs, min_steps, train_batch_size, learning_rate :
        Training of every round's model (from scratch; see :func:`cmal.training.fit`).
    pool_size, test_size : optional
        Use only the first rows of the pool / test set (quick runs).
    distribute : {"auto", "tpu", "gpu", "cpu"}
        Where to train (:func:`cmal.distribute.get_strategy`); ``train_batch_size`` is per replica.
    mixed_precision : "auto" or None
        bfloat16 on TPU, float16 on GPU, float32 on CPU when "auto".
    warm_start : bool
        Start each round from the previous round's weights (default: from scratch, the paper's protocol).
    early_stopping : int or None
        Patience in epochs on a 10% validation split of the labeled set.
    checkpoints : bool
        Save every round's model (Keras format) in the run directory.
    hac_method : {"auto", "exact", "graph"}
        Exact HAC or kNN-graph HAC (:func:`cmal.hac.build_tree`); auto picks by pool size.
    knn_k : int
        Neighbours per point of the kNN graph when graph HAC runs.
    """

    dataset: str = "mnist"
    strategies: tuple[str, ...] = ("cluster-margin", "margin", "random")
    rounds: int = 5
    batch_size: int = 200
    candidates: int | str | None = None
    seed_size: int = 100
    seeds: int = 1
    seed: int = 0
    epsilon: float | None = None
    target_clusters: int | None = None
    model: Any = "auto"
    embedding_layer: str | int | None = None
    image_size: tuple[int, int] | None = None
    epochs: int = 10
    min_steps: int = 300
    train_batch_size: int = 32
    learning_rate: float = 1e-3
    pool_size: int | None = None
    test_size: int | None = None
    distribute: str = "auto"
    mixed_precision: str | None = "auto"
    warm_start: bool = False
    early_stopping: int | None = None
    checkpoints: bool = True
    hac_method: str = "auto"
    knn_k: int = 30

    @property
    def k_m(self) -> int | str:
        """The candidate count every Cluster-Margin strategy is built with (an int, or ``"auto"``)."""
        from cmal.strategies.cluster_margin import candidate_count

        return self.candidates if self.candidates is not None else candidate_count(self.batch_size, 1.25)

    def validate(self, n_pool: int | None = None) -> "RunConfig":
        """Check every field (and that the rounds fit in a pool of ``n_pool``); return ``self``."""
        if isinstance(self.strategies, str) or not self.strategies:
            raise ValueError("strategies must be a non-empty list of names, e.g. ('cluster-margin', 'margin').")
        for name in self.strategies:
            if name not in available_strategies():
                if isinstance(name, str) and (":" in name or "." in name):
                    _try_strategy(name)  # a user's code: imported and tried on a tiny pool before any run starts
                    continue
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
        if self.distribute not in ("auto", "tpu", "gpu", "cpu"):
            raise ValueError(f"distribute must be 'auto', 'tpu', 'gpu' or 'cpu', got {self.distribute!r}.")
        train = self.train_config()
        if self.model != "auto":
            from cmal.models import model_builder

            model_builder(self.model)   # a dotted path is imported now: a typo fails before any run starts
        if self.embedding_layer is not None and not (
                (isinstance(self.embedding_layer, str) and self.embedding_layer)
                or (isinstance(self.embedding_layer, numbers.Integral) and not isinstance(self.embedding_layer, bool))):
            raise ValueError(f"embedding_layer must be a layer name or a position in model.layers (e.g. -2), got "
                             f"{self.embedding_layer!r}.")
        if self.image_size is not None:
            if not isinstance(self.image_size, (tuple, list)) or len(self.image_size) != 2:
                raise ValueError(f"image_size must be (height, width), got {self.image_size!r}.")
            for v in self.image_size:
                check_int(v, "image_size", minimum=1)
        if self.early_stopping is not None:
            # Checked here, not at the first training: the seed set is the smallest labeled set a run trains on.
            n_val = int(round(train.validation_fraction * self.seed_size))
            if n_val < 10:
                need = next(p for p in range(1, 10**7) if int(round(train.validation_fraction * p)) >= 10)
                raise ValueError(
                    f"early_stopping holds out {train.validation_fraction:.0%} of the labeled set for validation and "
                    f"needs at least 10 examples there, but seed_size = {self.seed_size} gives {n_val}; raise "
                    f"seed_size to at least {need}, or drop early_stopping.")
        if isinstance(self.candidates, str) and self.candidates != "auto":
            raise ValueError(f"candidates (k_m) must be an integer or 'auto', got {self.candidates!r}.")
        if self.candidates is not None and self.candidates != "auto":
            check_int(self.candidates, "candidates (k_m)", minimum=1)
            if self.candidates < self.batch_size:
                raise ValueError(
                    f"candidates (k_m) is {self.candidates} but batch_size (k_t) is {self.batch_size}; "
                    f"k_m must be >= k_t. Raise candidates to at least {self.batch_size}."
                )
        from cmal.hac import choose_method

        choose_method(1, self.hac_method)  # raises on an unknown method
        check_int(self.knn_k, "knn_k", minimum=1)
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

    def resolved(self) -> "RunConfig":
        """The same configuration with a dataset path made absolute, so a saved run resumes (and its labels
        export images) from any working directory. Dataset names are kept as they are."""
        from cmal.data import is_named_dataset

        name = str(self.dataset)
        if is_named_dataset(name) or not os.path.exists(os.path.expanduser(name)):
            return self   # a name, or a path that does not exist (load_dataset says so, as the user typed it)
        return dataclasses.replace(self, dataset=os.path.abspath(os.path.expanduser(name)))

    def train_config(self) -> Any:
        """The :class:`cmal.training.TrainConfig` of every round."""
        from cmal.training import TrainConfig

        return TrainConfig(batch_size=self.train_batch_size, epochs=self.epochs, min_steps=self.min_steps,
                           learning_rate=self.learning_rate, early_stopping_patience=self.early_stopping,
                           warm_start=self.warm_start, mixed_precision=self.mixed_precision).validate()

    def load_data(self, data_format: int | None = None) -> Any:
        """The :class:`cmal.data.Dataset` this configuration names (``dataset``, ``pool_size``, ``test_size``,
        ``image_size``), read as ``data_format`` (default: today's, ``cmal.data.DATA_FORMAT``)."""
        from cmal.data import DATA_FORMAT, data_format as reading, load_dataset

        with reading(DATA_FORMAT if data_format is None else data_format):
            return load_dataset(self.dataset, pool_size=self.pool_size, test_size=self.test_size,
                                image_size=None if self.image_size is None else tuple(self.image_size))

    def to_dict(self) -> dict[str, Any]:
        from cmal.models import model_label

        d = dataclasses.asdict(self)
        d["strategies"] = list(self.strategies)
        d["model"] = model_label(self.model)
        d["image_size"] = None if self.image_size is None else [int(v) for v in self.image_size]
        d["k_m"] = self.k_m
        return d


# k_m="auto" looks for k_t candidates in k_t different clusters, so it needs clearly more than k_t clusters; with
# fewer it spans all of them and drifts towards Cluster-Random. Measured (the grid of
# benchmarks/label_efficiency.py on seeds 100-102, never the seeds of the final tables): the best cut for "auto" in
# both grid regimes was the finest tried, clusters of about 5 pool items (2 k_t clusters in redundant-large,
# 3.8 k_t in imbalanced), and pool / 20 was among the worst. On fresh seeds, 2 k_t alone lost 1.5 points of AULC
# to Margin in imbalanced where size 5 did not, so the rule is "about 5 per cluster, and at least 2 k_t".
AUTO_MEAN_CLUSTER_SIZE = 5
AUTO_MIN_CLUSTERS_PER_BATCH_ITEM = 2


def auto_cut(stage: "SeedStage", strategy: Any, config: RunConfig) -> np.ndarray:
    """The cluster labels a session of ``strategy`` selects with.

    The stage's cut, except for a Cluster-Margin strategy with ``k_m="auto"`` in a run that set neither
    ``epsilon`` nor ``target_clusters``: then the same tree is cut lower, to the coarsest cut with at least
    ``max(pool / 5, 2 k_t)`` clusters (or the finest the tree has, when ties in merge heights allow no such cut);
    never coarser than the stage's cut.
    """
    k_t = int(config.batch_size)
    n = int(stage.clusters.size)
    wanted = min(max(AUTO_MIN_CLUSTERS_PER_BATCH_ITEM * k_t, round(n / AUTO_MEAN_CLUSTER_SIZE)), n)
    if (getattr(strategy, "k_m", None) != "auto" or config.epsilon is not None or config.target_clusters is not None
            or stage.cluster_info["n_clusters"] >= wanted):
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


def train_round_model(config: RunConfig, ds: Any, labeled: np.ndarray, labels: np.ndarray, seed: int, *,
                      strategy: Any = None, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                      stop_event: Any = None, initial_weights: Any = None) -> tuple[Any, dict[str, Any]]:
    """Build ``config.model`` under ``strategy`` and train it on ``x_pool[labeled]`` with the given labels.

    Returns ``(model, info)``; ``info`` adds ``seconds`` to :func:`cmal.training.fit`'s report.
    """
    from cmal.models import build_model
    from cmal.training import epoch_callback, train_model

    t0 = time.perf_counter()
    model, info = train_model(
        lambda: build_model(config.model, ds.image_shape, ds.n_classes, multilabel=ds.multilabel),
        ds.x_pool[labeled], labels, config.train_config(), strategy=strategy, random_state=seed,
        initial_weights=initial_weights, stop_event=stop_event,
        callbacks=[epoch_callback(on_epoch)] if on_epoch is not None else None)
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
    tree = build_tree(embeddings, method=config.hac_method, k=config.knn_k, max_epsilon=config.epsilon,
                      target_clusters=target)
    epsilon = float(config.epsilon) if target is None else tree.epsilon_for_clusters(target)
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

    def recut(self, *, mean_cluster_size: float | None = None, n_clusters: int | None = None,
              epsilon: float | None = None) -> "SeedStage":
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
        info = {**self.cluster_info, "epsilon": float(epsilon), "n_clusters": int(sizes.size),
                "largest_cluster": int(sizes.max()), "singletons": int((sizes == 1).sum())}
        return dataclasses.replace(self, clusters=clusters, cluster_info=info)


def prepare(config: RunConfig, seed: int | None = None, *, dataset: Any = None, progress: bool = False,
            on_epoch: Callable[[dict[str, Any]], None] | None = None, strategy: Any = None,
            embeddings_out: str | os.PathLike | None = None) -> SeedStage:
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
    rng = np.random.default_rng(derive_seed(seed, "seed-set"))
    seed_set = np.sort(rng.choice(ds.n_pool, config.seed_size, replace=False))
    model, info = train_round_model(config, ds, seed_set, ds.y_pool[seed_set], derive_seed(seed, "train", 0),
                                    strategy=strategy, on_epoch=_epoch_reporter(on_epoch, None, seed, 0))
    metrics = evaluate(ds.y_test, predict_proba(model, ds.x_test, strategy=strategy))
    from cmal.models import EMBEDDING_LAYER

    # Always a named layer: a user's model without one must fail here, not be clustered on its probabilities.
    embeddings = embed(model, ds.x_pool, progress=progress, strategy=strategy, out=embeddings_out,
                       layer=EMBEDDING_LAYER if config.embedding_layer is None else config.embedding_layer)
    tree, clusters, cinfo = _cluster(config, embeddings)
    return SeedStage(ds, seed, seed_set, model, embeddings, tree, clusters, cinfo,
                     predict_proba(model, ds.x_pool, strategy=strategy), metrics, info["seconds"], strategy)


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
    write_checked(folder / "stage.json", {
        "seed": stage.seed, "fingerprint": stage.dataset.fingerprint(), "seed_set": stage.seed_set,
        "clusters": stage.clusters, "cluster_info": stage.cluster_info, "metrics": stage.metrics,
        "train_seconds": stage.train_seconds, "tree": tree_info})


def load_saved_model(path: str | os.PathLike, config: RunConfig | None = None, dataset: Any = None,
                     distribution: Any = None) -> Any:
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

    user_model = config is not None and dataset is not None and not is_builtin(config.model)
    if not user_model or not zipfile.is_zipfile(path):   # nothing to rebuild with, or the file itself is damaged
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
        raise ValueError(f"cannot load {str(path)!r} ({type(first).__name__}: {first}), nor rebuild it with "
                         f"{config.model!r} ({type(err).__name__}: {err})") from first
    finally:
        k.mixed_precision.set_global_policy(previous)
    return model


def load_stage(out: str | os.PathLike, seed: int, dataset: Any, distribution: Any = None, *,
               config: RunConfig | None = None) -> SeedStage | None:
    """The stage saved by :func:`save_stage`, or None when it was never completed (then it is recomputed).
    ``config`` lets a user's model whose file Keras cannot load alone be rebuilt (:func:`load_saved_model`)."""
    from cmal.embed import predict_proba
    from cmal.hac import HACTree

    folder = _stage_dir(Path(out), seed)
    if not (folder / "stage.json").exists() and not (folder / "stage.json.prev").exists():
        return None
    st = read_checked(folder / "stage.json")
    if st["fingerprint"] != dataset.fingerprint():
        raise StateError(f"{str(folder)!r} was saved for another pool (fingerprint {st['fingerprint']} vs "
                         f"{dataset.fingerprint()}); resume with the same data.")
    try:
        model = load_saved_model(folder / "model.keras", config, dataset, distribution)
        embeddings = load_npy(folder / "embeddings.npy", "embeddings")
        linkage = load_npy(folder / "tree.npy", "tree")
    except (ValueError, OSError) as err:
        raise StateError(f"the seed stage in {str(folder)!r} is damaged ({err}); delete that folder to recompute "
                         "it (the seed model is retrained with the same seed).") from None
    info = dict(st["tree"])
    kind = info.pop("kind")
    if kind == "GraphHACTree":
        from cmal.graph_hac import GraphHACTree

        max_eps = info.pop("max_epsilon")
        tree = GraphHACTree(linkage, info.pop("n"), info.pop("metric"), info.pop("backend"),
                            max_epsilon=float("inf") if max_eps is None else max_eps, **info)
    else:
        tree = HACTree(linkage, info["n"], info["metric"], info["backend"])
    probs = predict_proba(model, dataset.x_pool, strategy=distribution)
    return SeedStage(dataset, seed, np.asarray(st["seed_set"], dtype=np.int64), model, embeddings, tree,
                     np.asarray(st["clusters"], dtype=np.int64), st["cluster_info"], probs, st["metrics"],
                     st["train_seconds"], distribution)


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

        if "<lambda>" in label or "<locals>" in label or not (inspect.isfunction(config.model)
                                                              or inspect.isclass(config.model)):
            import warnings

            warnings.warn(f"the model builder {label} is a lambda, a nested function, a partial or a callable "
                          "object: no later process, and no "
                          "resume, can import it again; define it at the top level of a .py module (or of the "
                          "notebook, for a resume in this kernel).", stacklevel=2)
    if resume and out_dir is None:
        raise ValueError("resume=True needs the run directory as out.")
    if out_dir is not None and not resume:
        check_new_run(out_dir)
    with contextlib.ExitStack() as held:
        if resume:
            # A resume's folder exists: hold it first, so a busy folder is refused before data and TensorFlow load.
            held.enter_context(DirectoryLock(out_dir, purpose="cmal run --resume"))
        # A resumed run reads its data as it first did (runs saved before data format 2 did not scale uint8).
        ds = config.load_data(saved_data_format(out_dir) if resume else None)
        config.validate(ds.n_pool)
        distribution = tf_strategy if tf_strategy is not None else get_strategy(config.distribute, verbose=False)
        from cmal.distribute import mixed_precision_policy

        check_model(config.model, ds.image_shape, ds.n_classes, multilabel=ds.multilabel,
                    embedding_layer=config.embedding_layer,
                    policy=mixed_precision_policy(distribution, config.mixed_precision))
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


def _run(config: RunConfig, ds: Any, out_dir: Path | None, distribution: Any, progress: bool,
         on_round: Callable[[dict[str, Any]], None] | None, on_epoch: Callable[[dict[str, Any]], None] | None,
         oracle: str, resume: bool, heartbeat: float) -> dict[str, Any]:
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
        "model": model_label(resolve_model(config.model, ds.image_shape)),   # what "auto" built
        "clustering": [],
        "runs": [],
        "complete": False,
    }
    if out_dir is not None and not resume:
        from cmal.models import import_root

        # Where the user's model builder lives, so that a resume from another folder can import it again.
        root = import_root(config.model)
        from cmal.data import DATA_FORMAT

        write_json(out_dir / "config.json", {**{k: results[k] for k in ("cmal_version", "config", "dataset", "devices",
                                                                        "model")},
                                             "versions": versions(), "oracle": oracle, "data_format": DATA_FORMAT,
                                             **({"model_import_root": root} if root else {})})

    total = config.seeds * len(config.strategies) * config.rounds
    with tqdm(total=total, desc="rounds", unit="round", disable=not progress) as bar:
        for seed in range(config.seed, config.seed + config.seeds):
            bar.set_postfix_str(f"seed {seed}: seed model, embeddings, HAC")
            stage = load_stage(out_dir, seed, ds, distribution, config=config) if resume else None
            if stage is None:
                stage = prepare(config, seed, dataset=ds, on_epoch=on_epoch, strategy=distribution)
                if out_dir is not None:
                    save_stage(out_dir, stage)
            results["clustering"].append({"seed": seed, **stage.cluster_info})
            for name in config.strategies:
                session = Session(stage, name, config, out=out_dir, on_epoch=on_epoch, on_round=on_round,
                                  oracle=oracle, resume=resume)
                try:
                    bar.update(session.round)
                    for r in range(session.round + 1, config.rounds + 1):
                        bar.set_postfix_str(f"seed {seed}: {name} round {r}")
                        # A waiting human-oracle round says what it waits for (on stderr, above the bar).
                        session.run_round(report=lambda text: tqdm.write(text, file=sys.stderr),
                                          heartbeat=heartbeat)
                        bar.update(1)
                finally:
                    session.close()
                results["runs"].append({"strategy": name, "seed": seed, "rounds": session.records,
                                        "n_clusters": int(session.clusters.max()) + 1})
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
    if {k: v for k, v in then_config.items() if k != "dataset"} != {k: v for k, v in now_config.items() if k != "dataset"}:
        changed = sorted(k for k, v in now_config.items() if k != "dataset" and then_config.get(k) != v)
        raise StateError(f"{str(out)!r} was run with another configuration (differs in: {', '.join(changed)}); "
                         "resume it with its own config (cmal.loop.resume / cmal run --resume).")
    if saved.get("dataset", {}).get("fingerprint") != ds.fingerprint():
        raise StateError(f"{str(out)!r} was run on other data (fingerprint {saved.get('dataset', {}).get('fingerprint')}"
                         f" vs {ds.fingerprint()} for {config.dataset!r}); resume it with the data it started with "
                         "(the same file, pool_size and test_size).")
    if then_config.get("dataset") != now_config["dataset"]:
        # The same data at a new path (checked by the fingerprint): remember where it is now.
        write_json(out / "config.json", {**saved, "config": {**saved["config"], "dataset": now_config["dataset"]}})
    now, then = versions(), saved.get("versions", {})
    differ = {k: (then.get(k), v) for k, v in now.items() if then.get(k) not in (None, v)}
    if differ:
        warnings.warn(f"resuming {str(out)!r} with other versions ({differ}); rounds trained from now on may "
                      "differ from an uninterrupted run.", stacklevel=3)


def resume(run_dir: str | os.PathLike, *, progress: bool = True,
           on_round: Callable[[dict[str, Any]], None] | None = None,
           on_epoch: Callable[[dict[str, Any]], None] | None = None, tf_strategy: Any = None,
           heartbeat: float = 60.0, dataset: str | os.PathLike | None = None) -> dict[str, Any]:
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
            where = (f"was saved as a relative path and does not exist from here ({os.getcwd()}): resume from the "
                     "folder the run was started in, or pass its path" if not os.path.isabs(name) else
                     "does not exist; if it moved, pass its new path")
            raise ValueError(f"the run's dataset file {name!r} {where}: cmal run --resume DIR --dataset PATH "
                             "(Python: resume(DIR, dataset=...)); the data is checked against the run's "
                             "fingerprint.")
    except (TypeError, ValueError) as err:
        if isinstance(err, StateError) or has_work(work) or "dataset file" in str(err):
            raise StateError(f"{str(run_dir)!r} cannot be resumed: {err}") from None
        raise StateError(f"{str(run_dir)!r} cannot be resumed: its saved configuration is invalid ({err}). It holds "
                         "no saved work: run the corrected command again with the same output directory, which "
                         "reuses it.") from None
    return run(config, run_dir, progress=progress, on_round=on_round, on_epoch=on_epoch,
               oracle=saved.get("oracle", "simulated"), resume=True, tf_strategy=tf_strategy, heartbeat=heartbeat)


def saved_data_format(run_dir: str | os.PathLike) -> int:
    """The data format a saved run loaded its data with (``cmal.data.DATA_FORMAT``; 1 for runs saved before
    cmal recorded it)."""
    try:
        value = read_json(Path(run_dir) / "config.json").get("data_format", 1)
    except (OSError, ValueError, StateError, AttributeError):
        return 1
    return value if value in (1, 2) else 1


def config_from_dict(saved: dict[str, Any]) -> RunConfig:
    """The :class:`RunConfig` of a saved ``config.json["config"]`` (unknown or derived keys such as ``k_m`` are
    ignored)."""
    if not isinstance(saved, dict):
        raise ValueError(f"a saved configuration is a JSON object, got {type(saved).__name__}.")
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: (tuple(v) if k in ("strategies", "image_size") and v is not None else v)
                        for k, v in saved.items() if k in fields})


def _saved_config_dict(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved run's configuration as :meth:`RunConfig.to_dict` would write it today (dataset path absolute)."""
    try:
        return config_from_dict(saved.get("config", {})).resolved().to_dict()
    except (TypeError, ValueError):
        return dict(saved.get("config") or {})


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
        summary.append({
            "strategy": name,
            "metric": metric,
            "n_seeds": len(runs),
            "n_labeled": [x["n_labeled"] for x in runs[0]["rounds"][:n_rounds]],
            f"{metric}_mean": mean.tolist(),
            f"{metric}_se": se.tolist(),
            "select_seconds_mean": float(np.mean([x["select_seconds"] for r in runs for x in r["rounds"][1:]])),
        })
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
    head = (["strategy"] + ([f"{n} labels" for n in labels] if same else [f"round {r}" for r in range(n_cols)])
            + ["select s"])
    rows = [head]
    for s in summary:
        cells = [s["strategy"]]
        for m, e, n in zip(s[f"{metric}_mean"], s[f"{metric}_se"], s["n_labeled"]):
            cells.append(f"{100 * m:.2f}" + (f" ±{100 * e:.2f}" if s["n_seeds"] > 1 else "")
                         + ("" if same else f" @{n}"))
        cells += [""] * (n_cols - len(s["n_labeled"]))
        cells.append(f"{s['select_seconds_mean']:.4f}")
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
