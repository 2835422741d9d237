"""The configuration of a run: :class:`~cmal.config.RunConfig`, validated when it is made, and the one seed that
drives every random step (:func:`~cmal.config.derive_seed`).

Below the seed stage (:mod:`cmal.stage`), the session (:mod:`cmal.session`) and the loop (:mod:`cmal.loop`), which
all read it; it imports none of them.

Examples
--------
>>> from cmal.config import RunConfig, derive_seed
>>> config = RunConfig(dataset="digits", strategies=("cluster-margin", "random"), rounds=2, batch_size=20)
>>> config.rounds, derive_seed(0, "cluster-margin", 1) == derive_seed(0, "cluster-margin", 1)
(2, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import numbers
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cmal._validation import check_int, check_positive_float
from cmal.strategies import available_strategies, make_strategy

if TYPE_CHECKING:
    from cmal.hac import Method

__all__ = ["DEFAULT_MEAN_CLUSTER_SIZE", "RunConfig", "config_from_dict", "derive_seed"]

#: When neither epsilon nor target_clusters is given: clusters of 20 pool points on average. Average linkage
#: gives a few large clusters and many small ones, so this leaves several candidate clusters per batch.
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
    strategy = make_strategy(name, random_state=0)  # an import error says itself what is wrong
    from cmal.strategies import PoolState

    rng = np.random.default_rng(0)
    n = 60
    state = PoolState.create(
        probs=rng.dirichlet(np.ones(3), n),
        clusters=np.arange(n) % 12,
        labeled=np.arange(5),
        embeddings=rng.normal(size=(n, 4)),
    )
    try:
        strategy.select(state, 10)
    except Exception as err:  # noqa: BLE001 - any failure of the user's code is reported the same way
        raise ValueError(
            f"strategy {name!r} fails on a small test pool (60 points, 12 clusters, k_t = 10): "
            f"{type(err).__name__}: {err}. Fix it before starting a run."
        ) from None


def _check_seed_strategy(name: Any) -> None:
    """A seed strategy sees no labels and no model: only label-free embeddings."""
    if name == "random":
        return
    if not isinstance(name, str) or name not in available_strategies():
        raise ValueError(
            f"seed_strategy must be 'random' or a registered strategy that needs only embeddings "
            f"('typiclust', 'probcover', 'coreset'), got {name!r}."
        )
    needs = make_strategy(name, random_state=0).needs
    if not needs <= {"embeddings"}:
        raise ValueError(
            f"seed_strategy {name!r} needs {', '.join(sorted(needs))}, which do not exist before the first labels; "
            "use 'random', 'typiclust' or 'probcover'."
        )


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
        ``k_m``; default ``ceil(1.25 * k_t)`` (our reading of the paper's CIFAR-scale setting). ``"auto"`` lets
        Cluster-Margin choose it every round: the smallest ``k_m >= k_t`` whose candidates span ``k_t`` clusters, at
        most ``10 k_t`` (see :class:`~cmal.strategies.cluster_margin.ClusterMargin`); each round's record holds the
        ``k_m`` used.
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
    seed_strategy : str
        How the seed set is chosen: ``"random"`` (default, the paper's), or a strategy that needs only
        embeddings, run on label-free embeddings of the pool: ``"typiclust"`` or ``"probcover"`` (cold start,
        :mod:`cmal.strategies.cold_start`).
    seed_embedding : {"pca", "autoencoder"}
        The label-free embeddings a non-random ``seed_strategy`` sees (:mod:`cmal.unsupervised`).
    stop : None, str or dict
        A stopping rule checked after every round (:func:`cmal.stopping.make_stop_rule`): ``"kappa"``
        (stabilizing predictions), ``"margin"`` (the batch's mean margin stops changing), or a dict such as
        ``{"rule": "kappa", "threshold": 0.99, "window": 3}``. A strategy whose rule fires stops its rounds there;
        every round's record holds the signals either way (``stop_agreement``, ``batch_mean_margin``).
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
    hac_method: Method = "auto"
    knn_k: int = 30
    seed_strategy: str = "random"
    seed_embedding: str = "pca"
    stop: Any = None

    @property
    def k_m(self) -> int | str:
        """The candidate count every Cluster-Margin strategy is built with (an int, or ``"auto"``)."""
        from cmal.strategies.cluster_margin import candidate_count

        return self.candidates if self.candidates is not None else candidate_count(self.batch_size, 1.25)

    def validate(self, n_pool: int | None = None) -> RunConfig:
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

            model_builder(self.model)  # a dotted path is imported now: a typo fails before any run starts
        if self.embedding_layer is not None and not (
            (isinstance(self.embedding_layer, str) and self.embedding_layer)
            or (isinstance(self.embedding_layer, numbers.Integral) and not isinstance(self.embedding_layer, bool))
        ):
            raise ValueError(
                f"embedding_layer must be a layer name or a position in model.layers (e.g. -2), got "
                f"{self.embedding_layer!r}."
            )
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
                    f"seed_size to at least {need}, or drop early_stopping."
                )
        if isinstance(self.candidates, str) and self.candidates != "auto":
            raise ValueError(f"candidates (k_m) must be an integer or 'auto', got {self.candidates!r}.")
        if self.candidates is not None and self.candidates != "auto":
            k_m = check_int(self.candidates, "candidates (k_m)", minimum=1)
            if k_m < self.batch_size:
                raise ValueError(
                    f"candidates (k_m) is {self.candidates} but batch_size (k_t) is {self.batch_size}; "
                    f"k_m must be >= k_t. Raise candidates to at least {self.batch_size}."
                )
        from cmal.hac import choose_method

        choose_method(1, self.hac_method)  # raises on an unknown method
        check_int(self.knn_k, "knn_k", minimum=1)
        _check_seed_strategy(self.seed_strategy)
        from cmal.unsupervised import EMBEDDINGS

        if self.seed_embedding not in EMBEDDINGS:
            raise ValueError(f"seed_embedding must be one of {', '.join(EMBEDDINGS)}, got {self.seed_embedding!r}.")
        from cmal.stopping import make_stop_rule

        make_stop_rule(self.stop)  # an unknown rule or parameter fails before any run starts
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

    def resolved(self) -> RunConfig:
        """The same configuration with a dataset path made absolute, so a saved run resumes (and its labels
        export images) from any working directory. Dataset names are kept as they are."""
        from cmal.data import is_named_dataset

        name = str(self.dataset)
        if is_named_dataset(name) or not os.path.exists(os.path.expanduser(name)):
            return self  # a name, or a path that does not exist (load_dataset says so, as the user typed it)
        return dataclasses.replace(self, dataset=os.path.abspath(os.path.expanduser(name)))

    def train_config(self) -> Any:
        """The :class:`cmal.training.TrainConfig` of every round."""
        from cmal.training import TrainConfig

        return TrainConfig(
            batch_size=self.train_batch_size,
            epochs=self.epochs,
            min_steps=self.min_steps,
            learning_rate=self.learning_rate,
            early_stopping_patience=self.early_stopping,
            warm_start=self.warm_start,
            mixed_precision=self.mixed_precision,
        ).validate()

    def load_data(self, data_format: int | None = None) -> Any:
        """The :class:`cmal.data.Dataset` this configuration names (``dataset``, ``pool_size``, ``test_size``,
        ``image_size``), read as ``data_format`` (default: today's, ``cmal.data.DATA_FORMAT``)."""
        from cmal.data import DATA_FORMAT, load_dataset
        from cmal.data import data_format as reading

        with reading(DATA_FORMAT if data_format is None else data_format):
            return load_dataset(
                self.dataset,
                pool_size=self.pool_size,
                test_size=self.test_size,
                image_size=None if self.image_size is None else (*self.image_size,),  # a tuple, also from a list
            )

    def to_dict(self) -> dict[str, Any]:
        from cmal.models import model_label

        d = dataclasses.asdict(self)
        d["strategies"] = list(self.strategies)
        d["model"] = model_label(self.model)
        d["image_size"] = None if self.image_size is None else [int(v) for v in self.image_size]
        d["k_m"] = self.k_m
        return d


def config_from_dict(saved: dict[str, Any]) -> RunConfig:
    """The :class:`RunConfig` of a saved ``config.json["config"]`` (unknown or derived keys such as ``k_m`` are
    ignored)."""
    if not isinstance(saved, dict):
        raise ValueError(f"a saved configuration is a JSON object, got {type(saved).__name__}.")
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    # Values straight from JSON (Any): RunConfig.validate checks them when the run starts.
    kwargs: dict[str, Any] = {
        k: (tuple(v) if k in ("strategies", "image_size") and v is not None else v)
        for k, v in saved.items()
        if k in fields
    }
    return RunConfig(**kwargs)


def _saved_config_dict(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved run's configuration as :meth:`RunConfig.to_dict` would write it today (dataset path absolute)."""
    try:
        return config_from_dict(saved.get("config", {})).resolved().to_dict()
    except (TypeError, ValueError):
        return dict(saved.get("config") or {})
