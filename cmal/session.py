"""An active-learning session a notebook holds: ``select()``, ``label()``, ``train_round()``, or ``run_round()``.

One session is one strategy on one prepared seed stage (:func:`cmal.stage.prepare`): the seed set, seed model,
embeddings and clustering are shared with other strategies' sessions of the same seed. Training runs under the
stage's ``tf.distribute`` strategy, in the foreground or in a background thread (the notebook stays usable,
the training monitor keeps updating, and :meth:`TrainingJob.cancel` stops it cleanly after the current step).

Examples
--------
>>> from cmal.loop import RunConfig, prepare
>>> from cmal.session import Session
>>> config = RunConfig(dataset="digits", batch_size=20, seed_size=30, min_steps=30)   # doctest: +SKIP
>>> session = Session(prepare(config), "cluster-margin", config, out="runs/s")        # doctest: +SKIP
>>> session.run_round()["n_labeled"]                                                  # doctest: +SKIP
50
>>> batch = session.select(); session.label(); job = session.train_round(background=True)  # doctest: +SKIP
>>> job.wait()["round"]                                                               # doctest: +SKIP
2
"""

from __future__ import annotations

import contextlib
import os
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from cmal.metrics import evaluate
from cmal.state import StateError, read_checked, save_npz, write_checked, write_json
from cmal.strategies import PoolState, Strategy, make_strategy

ORACLES = ("simulated", "human")

# Fields a session may differ in from the run directory's config.json: a session is one strategy of one seed
# (the run's round count is enforced by select()), and the dataset is compared by its fingerprint, not its path,
# so data that moved (another folder, another machine) still resumes. Every other field changes what a round means.
_SESSION_FREE_FIELDS = frozenset({"strategies", "rounds", "seeds", "seed", "dataset"})

#: Pool points on which successive models' predictions are compared (the stop set of Bloodgood & Vijay-Shanker,
#: 2009, who used a few thousand unlabeled examples): drawn once per seed from the whole pool, so every strategy of a
#: seed uses the same; points labeled later stay in it (their predictions settle, which raises the agreement a little).
#: A pool smaller than this is its own stop set.
STOP_SET_SIZE = 2000


def stop_set(n_pool: int, seed: int, size: int = STOP_SET_SIZE) -> np.ndarray:
    """The stop set of a seed: ``min(size, n_pool)`` pool indices, sorted (memory-mapped pools read in order)."""
    from cmal.config import derive_seed

    rng = np.random.default_rng(derive_seed(seed, "stop-set"))
    return np.sort(rng.choice(n_pool, min(size, n_pool), replace=False))


def _predicted_classes(probs: np.ndarray, multilabel: bool) -> np.ndarray:
    """Hard predictions as one integer vector: argmax per row, or every 0/1 label decision for multi-label."""
    return (probs >= 0.5).astype(np.int64).ravel() if multilabel else np.argmax(probs, axis=1)


def _config_view(config: Any) -> dict[str, Any] | None:
    """The fields of ``config`` that a run directory's sessions must share (None if it is not a RunConfig)."""
    if not hasattr(config, "to_dict"):
        return None
    resolved = config.resolved() if hasattr(config, "resolved") else config
    return {k: v for k, v in resolved.to_dict().items() if k not in _SESSION_FREE_FIELDS}


__all__ = ["Session", "TrainingJob"]


class TrainingJob:
    """A round training in a background thread."""

    def __init__(self, target: Callable[[threading.Event], dict[str, Any] | None]) -> None:
        self._stop = threading.Event()
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None

        def work() -> None:
            try:
                self.result = target(self._stop)
            except BaseException as err:  # reported by wait(), not lost in the thread
                self.error = err

        self._thread = threading.Thread(target=work, name="cmal-training", daemon=True)
        self._thread.start()

    def done(self) -> bool:
        return not self._thread.is_alive()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def cancel(self) -> None:
        """Stop training after the current step. The round is then not recorded and the session is as before
        :meth:`Session.label`: the batch is pending again (the answers given are kept for the next ``label()``).
        A job that has already finished is left as it is: its round is recorded."""
        if not self.done():
            self._stop.set()

    def wait(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Block until training ends; return the round's record (None if cancelled). Re-raises errors."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("training is still running")
        if self.error is not None:
            raise self.error
        return self.result


class Session:
    """Rounds of select -> label -> train -> evaluate for one strategy.

    Parameters
    ----------
    stage : cmal.stage.SeedStage
        The seed set, seed model, clustering and first probabilities (shared by every strategy of a seed).
    strategy : str or Strategy
        A registered name (built with ``config.k_m`` and a seed derived from the stage's seed) or an instance.
    config : cmal.config.RunConfig
        ``batch_size`` (k_t) and training settings.
    out : path, optional
        Run directory: ``selections/<name>_seed<s>.npz`` and ``models/<name>_seed<s>/round_XXX.keras``
        (when ``config.checkpoints``), written atomically after every round. Refused (``StateError``, nothing
        written) when it holds a run of another configuration, strategy list or data (its ``config.json``), or
        this session's saved state without ``resume=True``. While the session is open this process is the
        folder's one writer (:class:`cmal.locks.DirectoryLock`; another process is refused): :meth:`close`, a
        ``with`` block or the end of the kernel releases it.
    on_epoch, on_round : callables, optional
        Training-monitor hooks (see :func:`cmal.loop.run`).
    oracle : {"simulated", "human"}
        Who labels: the dataset's held labels, or people through :attr:`label_store` (the labeling widget,
        or files imported with ``cmal label import``); :meth:`label` then takes the stored answers and
        :meth:`wait_for_labels` blocks until the batch is complete.
    resume : bool
        Continue from the state saved in ``out`` (``sessions/<key>.state.json``) if there is one (saved with
        the same configuration, else ``StateError``): labeled set,
        labels and their rounds, records, the strategy's random-generator state, the pending batch and the
        round's model checkpoint. The continued session makes the same choices an uninterrupted one would.
    clusters : int array (n_pool,), optional
        The cut this session selects with (default: the stage's, or for ``k_m="auto"`` the finer cut of
        :func:`cmal.stage.auto_cut` when the run set no ``epsilon``/``target_clusters``). ``clusters``
        holds the one in use.
    """

    def __init__(
        self,
        stage: Any,
        strategy: str | Strategy,
        config: Any,
        *,
        out: str | os.PathLike | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        on_round: Callable[[dict[str, Any]], None] | None = None,
        oracle: str = "simulated",
        resume: bool = False,
        clusters: Any = None,
    ) -> None:
        from cmal.config import derive_seed
        from cmal.stage import auto_cut

        self.stage, self.config = stage, config
        self.dataset = stage.dataset
        if isinstance(strategy, str):
            self.name = strategy
            strategy = make_strategy(strategy, k_m=config.k_m, random_state=derive_seed(stage.seed, "select", strategy))
        elif isinstance(strategy, Strategy):
            self.name = strategy.name
        else:
            raise ValueError(f"strategy must be a registered name or a Strategy, got {type(strategy).__name__}.")
        self.strategy = strategy
        if clusters is not None:
            from cmal._validation import check_labels

            self.clusters = check_labels(clusters, self.dataset.n_pool, "clusters")
        else:
            self.clusters = auto_cut(stage, strategy, config)
        self.out = Path(out) if out is not None else None
        self.on_epoch, self.on_round = on_epoch, on_round
        n = self.dataset.n_pool
        self.labeled = stage.seed_set.copy()
        self.round_of = np.full(n, -1, dtype=np.int64)
        self.round_of[self.labeled] = 0
        # Labels as the oracle gave them (never read from the pool's hidden labels for unlabeled points).
        self.labels = np.zeros_like(self.dataset.y_pool)
        self.labels[self.labeled] = self.dataset.y_pool[self.labeled]
        self.model, self.probs = stage.model, stage.probs
        self.round = 0
        self.pending: np.ndarray | None = None
        self.pending_labeled = False
        self.job: TrainingJob | None = None
        self._last_select_seconds = 0.0
        self.records: list[dict[str, Any]] = [
            {
                "round": 0,
                "n_labeled": int(self.labeled.size),
                **stage.metrics,
                "select_seconds": 0.0,
                "train_seconds": stage.train_seconds,
            }
        ]
        from cmal.stopping import make_stop_rule

        self.stop_rule = make_stop_rule(getattr(config, "stop", None))
        self._stop_set = stop_set(n, stage.seed)
        self._stop_pred: np.ndarray | None = None  # the current model's predictions on the stop set, once computed
        if oracle not in ORACLES:
            raise ValueError(f"oracle must be one of {ORACLES}, got {oracle!r}.")
        if oracle == "human" and self.out is None:
            raise ValueError("oracle='human' needs out= (the run directory where labels are saved as they are given).")
        self.oracle = oracle
        self._store: Any = None
        self._given: tuple[np.ndarray, np.ndarray] | None = None  # labels of a batch whose training was cancelled
        self._version: int | None = None  # the state file's version this session last read or wrote
        self._run_rounds: int | None = None  # the rounds of the run whose folder this is, if any
        self._lock: Any = None
        if self.out is not None:
            self._claim(resume)
            try:
                if resume and (
                    self.state_path.exists() or self.state_path.with_name(self.state_path.name + ".prev").exists()
                ):
                    self._restore()
            except BaseException:
                self.close()  # a refused session must not keep the folder (a notebook keeps its traceback)
                raise

    def _claim(self, resume: bool) -> None:
        """Refuse a run directory that holds another run or this session unasked; then hold it as its writer."""
        import weakref

        from cmal.locks import DirectoryLock
        from cmal.state import read_json

        out = self._run_dir
        config_file = out / "config.json"
        if config_file.exists():
            saved = read_json(config_file)
            mine = _config_view(self.config)
            from cmal.config import _saved_config_dict

            theirs = {k: v for k, v in _saved_config_dict(saved).items() if k not in _SESSION_FREE_FIELDS}
            if mine is not None and mine != theirs:
                changed = ", ".join(
                    f"{k} {theirs.get(k)!r} there, {mine.get(k)!r} here"
                    for k in sorted(mine)
                    if theirs.get(k) != mine.get(k)
                )
                raise StateError(
                    f"{str(out)!r} holds a run with another configuration ({changed}); a session "
                    "there would mix incomparable rounds into its results. Use another out=, or this "
                    "run's configuration (cmal.config.config_from_dict(json.load(open(DIR/'config.json'))"
                    "['config']))."
                )
            rounds = (saved.get("config") or {}).get("rounds")
            self._run_rounds = int(rounds) if isinstance(rounds, int) else None
            strategies = (saved.get("config") or {}).get("strategies") or []
            if strategies and self.name not in strategies:
                raise StateError(
                    f"{str(out)!r} holds a run of {', '.join(map(str, strategies))}; a session of "
                    f"{self.name!r} there would not be part of its results. Use another out=."
                )
            fingerprint = (saved.get("dataset") or {}).get("fingerprint")
            if fingerprint not in (None, self.dataset.fingerprint()):
                raise StateError(
                    f"{str(out)!r} holds a run on other data (fingerprint {fingerprint} vs "
                    f"{self.dataset.fingerprint()}); use another out=."
                )
        prev = self.state_path.with_name(self.state_path.name + ".prev")
        if not resume and (self.state_path.exists() or prev.exists()):
            try:
                at = f" at round {int(read_checked(self.state_path)['round'])}"
            except (StateError, KeyError, TypeError, ValueError):
                at = ""
            raise StateError(
                f"{str(out)!r} already holds session {self.key!r}{at}; pass resume=True to "
                "continue it, or choose another out= (nothing was overwritten)."
            )
        lock = DirectoryLock(out, purpose=f"Session {self.key}").acquire()
        self._lock = lock
        # Released by close(), or when the session is garbage-collected (a notebook kernel restarting).
        self._release = weakref.finalize(self, lock.release)

    def close(self) -> None:
        """Stop being the run directory's writer (another process may then resume or run in it).

        The session's saved files stay; a closed session may still be read but not advanced."""
        if self.job is not None and not self.job.done():
            raise RuntimeError("A round is training in the background; wait() for it or cancel() it first.")
        if self._lock is not None:
            self._release()
            self._lock = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.job is not None and not self.job.done():  # leaving the block (or an error in it) stops training
            self.job.cancel()
            with contextlib.suppress(BaseException):
                self.job.wait()
        self.close()

    @property
    def key(self) -> str:
        """File-name stem of this session's files (a dotted-path name's ':' and '/' become '_')."""
        safe = self.name.replace(":", "_").replace("/", "_")
        return f"{safe}_seed{self.stage.seed}"

    @property
    def _run_dir(self) -> Path:
        """``out``, for the steps that need the run directory."""
        if self.out is None:
            raise ValueError("this session has no run directory (out=None).")
        return self.out

    @property
    def state_path(self) -> Path:
        """This session's resumable state file (``sessions/<key>.state.json`` in the run directory)."""
        return self._run_dir / "sessions" / f"{self.key}.state.json"

    @property
    def label_store(self) -> Any:
        """The :class:`cmal.labels.LabelStore` of the pending batch (``oracle="human"``), else None."""
        if self.oracle != "human" or self.pending is None or self.pending_labeled:
            return None
        if self._store is None or not np.array_equal(self._store.batch, self.pending):
            from cmal.labels import LabelStore

            path = self._run_dir / "labels" / f"{self.key}.json"  # oracle="human" always has one
            store = None
            if path.exists():
                try:
                    store = LabelStore.open(path)
                except StateError:
                    store = None
            if store is None or not np.array_equal(store.batch, self.pending):
                store = LabelStore.create(
                    path,
                    batch=self.pending,
                    classes=self.dataset.class_names,
                    clusters=self.clusters[self.pending],
                    round=self.round + 1,
                )
            self._store = store
        return self._store

    def waiting_message(self) -> str:
        """What a waiting human-oracle round waits for, and the commands that label its batch from files."""
        store = self.label_store
        if store is None:
            return "no batch is waiting for labels."
        need = store.remaining().size
        run = shlex.quote(str(self.out))
        return (
            f"waiting for labels: {self.name} seed {self.stage.seed}, round {store.round}: {need} of "
            f"{store.batch.size} items need a class (label store {store.path}).\n"
            "  Label them in a notebook (cmal_widgets.LabelingWidget), or export the batch, fill in its label "
            "column and import it:\n"
            f"    cmal label export --run {run} --session {shlex.quote(self.key)} --out {shlex.quote(self.key)}.csv\n"
            f"    cmal label import --run {run} --session {shlex.quote(self.key)} {shlex.quote(self.key)}.csv"
        )

    def wait_for_labels(
        self,
        timeout: float | None = None,
        poll: float = 0.5,
        *,
        report: Callable[[str], None] | None = None,
        heartbeat: float = 60.0,
    ) -> np.ndarray:
        """Block until every item of the pending batch has a class in the label store; return the labels.

        Labels may arrive from this process (the widget) or another one (``cmal label import``); the store
        file is re-read every ``poll`` seconds. ``TimeoutError`` after ``timeout`` seconds. With ``report``
        (e.g. ``print``), a batch that still needs labels is announced once with :meth:`waiting_message`,
        then a "still waiting" line every ``heartbeat`` seconds.
        """
        store = self.label_store
        if store is None:
            raise ValueError("No batch is waiting for human labels (oracle='human' and select() first).")
        t0 = time.monotonic()
        beat = t0
        if report is not None and not store.reload().complete:
            report(self.waiting_message())
        while not store.reload().complete:
            now = time.monotonic()
            if timeout is not None and now - t0 > timeout:
                c = store.counts()
                raise TimeoutError(
                    f"{c['open'] + c['skip'] + c['unsure']} of {store.batch.size} items still need a label."
                )
            if report is not None and now - beat >= heartbeat:
                beat = now
                c = store.counts()
                report(
                    f"still waiting for {self.key} round {store.round}: {c['labeled']}/{store.batch.size} "
                    f"labeled ({(now - t0) / 60:.1f} min)"
                )
            time.sleep(poll)
        return store.labels()

    # ------------------------------------------------------------------ steps
    def select(self) -> np.ndarray:
        """Choose the next batch of ``k_t`` pool indices (kept as ``pending`` until labeled).

        With a run directory the batch and the strategy's generator state are saved at once, so a restart
        labels the same batch."""
        self._idle()
        if self.pending is not None and not self.pending_labeled:
            return self.pending
        if self.pending_labeled:
            assert self.pending is not None  # a labeled batch is still the pending one until trained on
            # A second batch now would be chosen by the old model and join the labeled one in a single round,
            # so the round's label count (and every learning curve) would no longer line up.
            raise ValueError(
                f"The batch of {self.pending.size} is labeled but not trained on yet; call "
                "train_round() (or run_round()) before selecting the next batch."
            )
        if self._run_rounds is not None and self.round >= self._run_rounds:
            raise ValueError(
                f"{self.key} has done the {self._run_rounds} rounds of the run in {str(self.out)!r}; "
                "another round would give this strategy more rounds than the others in its results. "
                "Continue in another out= (e.g. a copy of the folder)."
            )
        self._check_writable()  # before the strategy's generator moves: a refused select changes nothing
        if self.probs is None:
            from cmal.embed import predict_proba

            self.probs = predict_proba(self.model, self.dataset.x_pool, strategy=self.stage.distribution)
        t0 = time.perf_counter()
        needs_geometry = "embeddings" in self.strategy.needs
        state = PoolState.create(
            probs=self.probs,
            clusters=self.clusters,
            labeled=self.labeled,
            multilabel=self.dataset.multilabel,
            embeddings=self.stage.embeddings if needs_geometry else None,
        )
        self.pending = self.strategy.select(state, self.config.batch_size)
        self.pending_labeled = False
        self._last_select_seconds = time.perf_counter() - t0
        self._save_state()
        return self.pending

    def label(self, labels: Any = None) -> np.ndarray:
        """Label the pending batch: ``labels`` from a person (one per batch item, in batch order), or the
        simulated oracle (the dataset's held labels) when omitted. Returns the labels applied."""
        self._idle()
        if self.pending is None or self.pending_labeled:
            raise ValueError("No batch is waiting for labels; call select() first.")
        batch = self.pending
        if labels is None and self._given is not None and np.array_equal(self._given[0], batch):
            labels = self._given[1]  # answers given before a cancelled training
        elif labels is None and self.oracle == "human":
            labels = self.label_store.reload().labels()
        elif labels is None:
            labels = self.dataset.y_pool[batch]
        labels = np.asarray(labels)
        expected = (batch.size, *self.dataset.y_pool.shape[1:])
        if labels.shape != expected:
            raise ValueError(f"labels must have shape {expected} (one per batch item), got {labels.shape}.")
        if self.dataset.multilabel:
            if not np.isin(labels, (0, 1)).all():
                raise ValueError("multi-label labels must be 0/1 rows, one column per class.")
        elif not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= self.dataset.n_classes:
            raise ValueError(f"labels must be class ids in [0, {self.dataset.n_classes}), got {labels.tolist()[:5]}...")
        self.labels[batch] = labels
        self.labeled = np.concatenate([self.labeled, batch])
        self.round_of[batch] = self.round + 1
        self.pending_labeled = True
        self._given = None
        return labels

    @overload
    def train_round(self, *, background: Literal[False] = False) -> dict[str, Any] | None: ...
    @overload
    def train_round(self, *, background: Literal[True]) -> TrainingJob: ...
    @overload
    def train_round(self, *, background: bool) -> dict[str, Any] | TrainingJob | None: ...
    def train_round(self, *, background: bool = False) -> dict[str, Any] | TrainingJob | None:
        """Retrain on everything labeled, evaluate, record the round and write the run directory.

        With ``background=True`` returns a :class:`TrainingJob` at once (``wait()``, ``cancel()``); otherwise
        the round's record. A cancelled round is not recorded, the previous model stays and the batch is pending
        again, not labeled (``label()`` with no argument re-applies the answers given).
        """
        self._idle()
        if not self.pending_labeled:
            raise ValueError("The batch is not labeled yet; call label() after select() (or use run_round()).")
        self._check_writable()
        if background:
            self.job = TrainingJob(self._train)
            return self.job
        return self._train(threading.Event())

    def run_round(
        self, *, timeout: float | None = None, report: Callable[[str], None] | None = None, heartbeat: float = 60.0
    ) -> dict[str, Any] | None:
        """``select()``, ``label()`` (the simulated oracle, or with ``oracle="human"`` after waiting for the
        batch's labels), ``train_round()``; returns the record. A batch already labeled is trained on as it is,
        not joined by a second one. ``report`` and ``heartbeat`` as for :meth:`wait_for_labels`."""
        if not self.pending_labeled:
            batch = self.select()  # the pending batch
            if self.oracle == "human" and not (self._given is not None and np.array_equal(self._given[0], batch)):
                self.wait_for_labels(timeout, report=report, heartbeat=heartbeat)
            self.label()
        return self.train_round()

    def batch_diagnostics(self, batch: np.ndarray) -> dict[str, Any]:
        """How redundant and balanced a labeled batch is, as stored in each round's record.

        Returns ``batch_clusters`` (distinct clusters), ``batch_sources`` (distinct original images, for pools
        built from copies), ``batch_class_counts`` / ``batch_class_min`` / ``batch_class_entropy`` (bits) of the
        labels given, and ``k_m`` (the candidate count used, for Cluster-Margin strategies).
        """
        from cmal.metrics import batch_summary

        s = batch_summary(
            batch,
            clusters=self.clusters,
            labels=self.labels,
            sources=self.dataset.sources,
            n_classes=self.dataset.n_classes,
        )
        out = {
            "batch_clusters": s["distinct_clusters"],
            "batch_class_counts": s["class_counts"],
            "batch_class_min": s["class_min"],
            "batch_class_entropy": s["class_entropy"],
        }
        if "distinct_sources" in s:
            out["batch_sources"] = s["distinct_sources"]
        k_m = getattr(self.strategy, "last_k_m", None)  # Cluster-Margin strategies only
        if k_m is not None:
            out["k_m"] = int(k_m)
        return out

    # --------------------------------------------------------------- helpers
    def _idle(self) -> None:
        if self.job is not None and not self.job.done():
            raise RuntimeError("A round is training in the background; wait() for it or cancel() it first.")

    def _train(self, stop: threading.Event) -> dict[str, Any] | None:
        from cmal.config import derive_seed
        from cmal.embed import predict_proba
        from cmal.stage import train_round_model

        r = self.round + 1
        model, info = train_round_model(
            self.config,
            self.dataset,
            self.labeled,
            self.labels[self.labeled],
            derive_seed(self.stage.seed, "train", r),
            strategy=self.stage.distribution,
            on_epoch=self._epoch_reporter(r),
            stop_event=stop,
            initial_weights=self.model.get_weights(),
        )
        if info["cancelled"]:
            self._unlabel()
            return None
        batch = self.pending
        assert batch is not None  # train_round() trains only on a labeled pending batch
        metrics = evaluate(
            self.dataset.y_test, predict_proba(model, self.dataset.x_test, strategy=self.stage.distribution)
        )
        signals, stop_pred = self._stop_signals(model, batch)
        record = {
            "round": r,
            "n_labeled": int(self.labeled.size),
            **metrics,
            "select_seconds": self._last_select_seconds,
            "train_seconds": info["seconds"],
            **self.batch_diagnostics(batch),
            "global_batch_size": info["global_batch_size"],
            "replicas": info["replicas"],
            "epochs": info["epochs"],
            **signals,
        }
        if self.stop_rule is not None and self.stopped is None:
            decision = self.stop_rule.check([*self.records, record])
            if decision.stop:
                record["stop_reason"] = decision.reason  # saved with the round: a resumed run stops here too
        self._check_writable()  # before this object moves on: another writer since the round began refuses it
        self.model, self.round = model, r
        self._stop_pred = stop_pred
        self.probs = None  # predicted when the next select() needs them: the last round never pays for it
        self.pending, self.pending_labeled = None, False
        self.records.append(record)
        self._save(model)
        if self.on_round is not None:
            self.on_round({"strategy": self.name, "seed": self.stage.seed, **record})
        return record

    @property
    def stopped(self) -> dict[str, Any] | None:
        """``{"round", "reason"}`` once the run's stopping rule (``config.stop``) has fired, else None.

        :func:`cmal.loop.run` ends this strategy's rounds there; a notebook may go on calling :meth:`run_round`."""
        for rec in self.records:
            if rec.get("stop_reason"):
                return {"round": int(rec["round"]), "reason": rec["stop_reason"]}
        return None

    def _stop_signals(self, model: Any, batch: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
        """The round's stopping signals (:func:`cmal.stopping.stop_signals`): agreement of the new model with the
        previous one on the stop set, and the batch's mean margin under the model that selected it. Returns the
        signals and the new model's stop-set predictions."""
        from cmal.embed import predict_proba
        from cmal.stopping import stop_signals
        from cmal.uncertainty import margin

        multilabel, where = self.dataset.multilabel, self.stage.distribution
        x_stop = self.dataset.x_pool[self._stop_set]
        if self._stop_pred is None:  # the first round of this object (or after a resume): the previous model's
            self._stop_pred = _predicted_classes(predict_proba(self.model, x_stop, strategy=where), multilabel)
        new = _predicted_classes(predict_proba(model, x_stop, strategy=where), multilabel)
        probs = (
            self.probs[batch]
            if self.probs is not None
            else predict_proba(self.model, self.dataset.x_pool[batch], strategy=where)
        )
        return stop_signals(self._stop_pred, new, margin(probs, multilabel=multilabel)), new

    def _unlabel(self) -> None:
        """Undo :meth:`label` after a cancelled training: the round is exactly as before it started (the batch
        pending, not labeled); the answers are kept for the next :meth:`label` with no argument."""
        batch = self.pending
        assert batch is not None  # called while the labeled batch is still pending
        # A person's answers stay in the label store (where they may still be corrected); given in a call, or by
        # the simulated oracle, they are kept here.
        self._given = None if self.oracle == "human" else (batch.copy(), self.labels[batch].copy())
        self.labeled = self.labeled[: -batch.size]
        self.round_of[batch] = -1
        self.labels[batch] = 0
        self.pending_labeled = False

    def _epoch_reporter(self, r: int) -> Callable[[int, dict[str, float]], None] | None:
        if self.on_epoch is None:
            return None

        def report(epoch: int, logs: dict[str, float]) -> None:
            on_epoch = self.on_epoch  # looked up at each epoch: a callback replaced during a round takes over at once
            if on_epoch is not None:
                on_epoch({"strategy": self.name, "seed": self.stage.seed, "round": r, "epoch": epoch, **logs})

        return report

    def _save_state(self) -> None:
        """Write the resumable state (the commit point of every step): atomic, checksummed, previous kept."""
        if self.out is None:
            return
        self._check_writable()
        version = (self._version or 0) + 1
        write_checked(
            self.state_path,
            {
                "version": version,
                "strategy": self.name,
                "seed": self.stage.seed,
                "fingerprint": self.dataset.fingerprint(),
                "round": self.round,
                "labeled": self.labeled,
                "labels": self.labels[self.labeled],
                "round_of": self.round_of[self.labeled],
                "records": self.records,
                "rng": self.strategy._rng.bit_generator.state,
                "pending": None if self.pending is None or self.pending_labeled else self.pending,
                "oracle": self.oracle,
                "last_k_m": getattr(self.strategy, "last_k_m", None),
                "clusters_sha256": self._clusters_digest(),
                "config": _config_view(self.config),
            },
        )
        self._version = version

    def _check_writable(self) -> None:
        """Refuse to advance a closed session, or one whose files were written by another Session object since it
        last read or wrote them (a notebook cell run twice): writing would rewind them, and their ``.prev``.

        Optimistic concurrency: every state write carries a version one above the one it replaces."""
        if self.out is None:
            return
        if self._lock is None:
            raise StateError(
                f"this session was closed; create a new Session(..., out={str(self.out)!r}, "
                "resume=True) to continue it."
            )
        prev = self.state_path.with_name(self.state_path.name + ".prev")
        if not self.state_path.exists() and not prev.exists():
            on_disk, saved_round = None, None
        else:
            try:
                saved = read_checked(self.state_path)
            except StateError:
                return  # unreadable: ours is the better state
            on_disk, saved_round = saved.get("version"), saved.get("round")
        if on_disk != self._version:
            raise StateError(
                f"{str(self.state_path)!r} was written by another Session object since this one last "
                f"read it (it is at round {saved_round}, this session at round {self.round}). Use "
                "that one, or create Session(..., resume=True) again; nothing was overwritten."
            )

    def _clusters_digest(self) -> str:
        """A short SHA-256 of the cut in use (computed once: at 10^6 points it is 8 MB to hash)."""
        if getattr(self, "_digest", None) is None:
            import hashlib

            raw = np.ascontiguousarray(self.clusters, dtype=np.int64).tobytes()
            self._digest = hashlib.sha256(raw).hexdigest()[:16]
        return self._digest

    def _restore(self) -> None:
        st = read_checked(self.state_path)
        if st.get("strategy") != self.name or st.get("seed") != self.stage.seed:
            raise StateError(f"{str(self.state_path)!r} belongs to {st.get('strategy')!r} seed {st.get('seed')}.")
        if st.get("fingerprint") != self.dataset.fingerprint():
            raise StateError(
                f"{str(self.state_path)!r} was saved for another pool (data fingerprint "
                f"{st.get('fingerprint')} vs {self.dataset.fingerprint()}); resume with the same data."
            )
        if st.get("clusters_sha256") not in (None, self._clusters_digest()):
            raise StateError(
                f"{str(self.state_path)!r} was saved selecting with another cut of the clusters than "
                f"this session's ({self.clusters.max() + 1} clusters now); resume with the same "
                "clusters= (or the same run configuration)."
            )
        mine = _config_view(self.config)
        theirs = st.get("config")
        if isinstance(theirs, dict):
            # Through RunConfig and back: fields added since the state was written take their defaults, so a
            # session saved by an older cmal still compares equal to its own configuration.
            from cmal.config import config_from_dict

            try:
                theirs = {k: v for k, v in config_from_dict(theirs).to_dict().items() if k not in _SESSION_FREE_FIELDS}
            except (TypeError, ValueError):
                theirs = {k: v for k, v in theirs.items() if k not in _SESSION_FREE_FIELDS}
        if mine is not None and theirs is not None and mine != theirs:
            changed = ", ".join(
                f"{k} {theirs.get(k, '(absent)')!r} saved, {mine.get(k, '(absent)')!r} now"
                for k in sorted(set(mine) | set(theirs))
                if k not in theirs or k not in mine or theirs[k] != mine[k]
            )
            raise StateError(
                f"{str(self.state_path)!r} was saved with another configuration ({changed}); resume it "
                "with the configuration it was started with, or use another out=."
            )
        labeled = np.asarray(st["labeled"], dtype=np.int64)
        self._version = st.get("version")
        self.labeled = labeled
        self.labels = np.zeros_like(self.dataset.y_pool)
        self.labels[labeled] = np.asarray(st["labels"], dtype=self.labels.dtype)
        self.round_of[:] = -1
        self.round_of[labeled] = np.asarray(st["round_of"], dtype=np.int64)
        self.round = int(st["round"])
        self.records = list(st["records"])
        self.strategy._rng.bit_generator.state = st["rng"]
        self.pending = None if st["pending"] is None else np.asarray(st["pending"], dtype=np.int64)
        self.pending_labeled = False
        if st.get("last_k_m") is not None and hasattr(self.strategy, "last_k_m"):
            self.strategy.last_k_m = int(st["last_k_m"])  # the pending batch's k_m, for its round's record
        if self.round > 0:
            self.model = self._load_round_model(self.round)
            self.probs = None

    def _load_round_model(self, r: int) -> Any:
        """The checkpoint of round ``r``; a missing or damaged file is rebuilt by retraining that round (same
        labels, same seed: the same weights on the same device), unless rounds warm-start."""
        from cmal.config import derive_seed
        from cmal.stage import load_saved_model, train_round_model

        path = self._run_dir / "models" / self.key / f"round_{r:03d}.keras"
        try:
            return load_saved_model(path, self.config, self.dataset, self.stage.distribution)
        except Exception as err:  # noqa: BLE001 - any unreadable checkpoint is handled the same way
            if getattr(self.config, "warm_start", False):
                raise StateError(
                    f"checkpoint {str(path)!r} is unusable ({err}); warm-started rounds cannot be "
                    "rebuilt from labels alone."
                ) from None
        model, _ = train_round_model(
            self.config,
            self.dataset,
            self.labeled,
            self.labels[self.labeled],
            derive_seed(self.stage.seed, "train", r),
            strategy=self.stage.distribution,
        )
        return model

    def _save(self, model: Any) -> None:
        if self.out is None:
            return
        self._check_writable()  # before any file of the round: a refused writer rewinds none of them
        save_npz(
            self.out / "selections" / f"{self.key}.npz",
            labeled=self.labeled,
            round_of=self.round_of[self.labeled],
            labels=self.labels[self.labeled],
        )
        write_json(
            self.out / "sessions" / f"{self.key}.json",
            {"strategy": self.name, "seed": self.stage.seed, "round": self.round, "rounds": self.records},
        )
        if getattr(self.config, "checkpoints", False):
            folder = self.out / "models" / self.key
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".round_{self.round:03d}.tmp.keras"
            model.save(tmp)
            with open(tmp, "rb") as f:  # the checkpoint is on disk before the state that refers to it
                os.fsync(f.fileno())
            os.replace(tmp, folder / f"round_{self.round:03d}.keras")
        self._save_state()
