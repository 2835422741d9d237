"""Selection controls: ``k_t``, ``k_m``, ``epsilon`` and the strategy, a "Select batch" button, and the
cluster-size histogram, driving one or two explorers (e.g. Margin next to Cluster-Margin).

:class:`SelectionModel` holds the numbers and runs the library's strategies; :class:`SelectionControls`
renders it and pushes each batch to the linked explorers.

Examples
--------
>>> import numpy as np
>>> from cmal.hac import linkage_tree
>>> from cmal_widgets.controls import SelectionModel
>>> rng = np.random.default_rng(0)
>>> tree = linkage_tree(rng.normal(size=(200, 4)))
>>> m = SelectionModel(tree, probs=rng.dirichlet(np.ones(3), 200), k_t=10, n_clusters=20)
>>> m.n_clusters
20
>>> result = m.select_batch("cluster-margin")
>>> result.indices.size, result.candidates.size
(10, 13)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cmal._validation import check_indices, check_int, check_positive_float, check_probabilities
from cmal.strategies import ClusterMargin, ClusterMarginSelection, PoolState, available_strategies, make_strategy
from cmal.strategies.cluster_margin import candidate_count
from cmal.tree import HACTree

__all__ = ["BatchResult", "SelectionControls", "SelectionModel"]


@dataclass(frozen=True)
class BatchResult:
    """One batch and why: ``candidates`` is the ``k_m`` set (Cluster-Margin), the batch itself (Margin), or
    empty (Random); ``plan`` holds every Cluster-Margin step when there is one."""

    strategy: str
    indices: np.ndarray
    candidates: np.ndarray
    plan: ClusterMarginSelection | None
    seconds: float


class SelectionModel:
    """The numbers behind the controls.

    Parameters
    ----------
    tree : HACTree
        The merge tree of the pool's embeddings (computed once; every ``epsilon`` is a re-cut).
    probs : array (n, C)
        Current model's probabilities.
    labeled : array of indices, optional
    k_t : int
        Batch size.
    k_m : int or "auto", optional
        Candidates; default ``ceil(1.25 k_t)``. ``"auto"``: each selection takes the fewest candidates that span
        ``k_t`` clusters (see :class:`~cmal.strategies.cluster_margin.ClusterMargin`); the batch's plan says how many.
    epsilon : float, optional
        HAC threshold; or give ``n_clusters`` to choose it. Default: ``n / 20`` clusters.
    strategy : str
    embeddings : array (n, d), optional
        For strategies that need geometry (CoreSet, BADGE).
    random_state : int
        The same settings give the same batch: each click uses a strategy seeded with this.
    """

    def __init__(
        self,
        tree: HACTree,
        probs: np.ndarray,
        labeled: Any = None,
        *,
        k_t: int = 100,
        k_m: int | str | None = None,
        epsilon: float | None = None,
        n_clusters: int | None = None,
        strategy: str = "cluster-margin",
        random_state: int = 0,
        multilabel: bool = False,
        embeddings: np.ndarray | None = None,
    ) -> None:
        if not isinstance(tree, HACTree):
            raise ValueError(f"tree must be a cmal.tree.HACTree (from linkage_tree), got {type(tree).__name__}.")
        self.tree = tree
        self.probs = check_probabilities(probs, multilabel=multilabel)
        if self.probs.shape[0] != tree.n:
            raise ValueError(f"probs has {self.probs.shape[0]} rows but the tree clusters {tree.n} points.")
        self.multilabel = multilabel
        self.embeddings = embeddings  # needed by CoreSet and BADGE only
        self.labeled = check_indices([] if labeled is None else labeled, tree.n, "labeled")
        self.random_state = check_int(random_state, "random_state", minimum=0)
        self._listeners: list[Callable[[str], None]] = []
        self.k_t = check_int(k_t, "k_t", minimum=1)
        if k_m is None:
            self.k_m: int | str = candidate_count(self.k_t, 1.25)
        else:
            self.k_m = "auto" if k_m == "auto" else check_int(k_m, "k_m", minimum=self.k_t)
        self.strategy = strategy
        if epsilon is None:
            epsilon = tree.epsilon_for_clusters(n_clusters or max(1, round(tree.n / 20)))
        self.set_epsilon(epsilon)
        self.last: BatchResult | None = None

    def observe(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(what)`` on "clusters" (epsilon re-cut) and "batch" (a new selection)."""
        self._listeners.append(callback)

    def _notify(self, what: str) -> None:
        for cb in self._listeners:
            cb(what)

    @property
    def n_clusters(self) -> int:
        return int(self.clusters.max()) + 1

    def set_epsilon(self, epsilon: float) -> np.ndarray:
        """Re-cut the stored tree (milliseconds; no re-clustering). Returns the cluster labels, shape (n,)."""
        self.epsilon = check_positive_float(epsilon, "epsilon")
        self.clusters = self.tree.cut(self.epsilon)
        self._notify("clusters")
        return self.clusters

    def cluster_sizes(self) -> np.ndarray:
        """Size of every cluster, shape (n_clusters,)."""
        return np.bincount(self.clusters)

    def epsilon_range(self) -> tuple[float, float]:
        """A useful slider range: from the lowest positive merge height to the highest."""
        h = self.tree.heights
        positive = h[h > 0]
        lo = float(positive[0]) if positive.size else 1e-6
        hi = float(h[-1]) * 1.01 if h.size else 1.0
        # A graph-HAC tree built up to a threshold (cmal.graph_hac) can only be cut below it.
        return lo, min(hi, float(getattr(self.tree, "max_epsilon", np.inf)))

    def select_batch(self, strategy: str | None = None) -> BatchResult:
        """Run ``strategy`` (default: the chosen one) with the current ``k_t``, ``k_m`` and clusters."""
        import time

        name = strategy or self.strategy
        if self.k_m != "auto" and self.k_m < self.k_t:
            raise ValueError(f"k_m ({self.k_m}) must be >= k_t ({self.k_t}); raise k_m or choose auto.")
        state = PoolState.create(
            probs=self.probs,
            clusters=self.clusters,
            labeled=self.labeled,
            multilabel=self.multilabel,
            embeddings=self.embeddings,
        )
        s = make_strategy(name, k_m=self.k_m, random_state=self.random_state)
        t0 = time.perf_counter()
        plan = s.explain(state, self.k_t) if isinstance(s, ClusterMargin) else None
        indices = plan.indices if plan is not None else s.select(state, self.k_t)
        seconds = time.perf_counter() - t0
        if plan is not None:
            candidates = plan.candidates if name != "cluster-random" else np.empty(0, np.int64)
        elif name == "margin":
            candidates = indices
        else:
            candidates = np.empty(0, np.int64)
        self.last = BatchResult(name, indices, candidates, plan, seconds)
        self._notify("batch")
        return self.last


class SelectionControls:
    """Sliders for ``k_t``, ``k_m`` and ``epsilon``, a strategy dropdown and "Select batch".

    Each linked explorer shows one strategy's batch (its own strategy when given in ``explorers`` as
    ``(explorer, "margin")`` pairs; the dropdown's strategy otherwise): two explorers side by side show
    what Cluster-Margin changes relative to Margin on the same map.

    Parameters
    ----------
    model : SelectionModel
    explorers : list of Explorer or (Explorer, strategy name)
    """

    def __init__(self, model: SelectionModel, explorers: list[Any] = ()) -> None:
        import ipywidgets as w
        import plotly.graph_objects as go

        self.model = model
        self.links = [(e, None) if not isinstance(e, tuple) else e for e in explorers]
        n_unlabeled = model.tree.n - model.labeled.size
        lo, hi = model.epsilon_range()
        self.k_t = w.IntSlider(
            value=model.k_t,
            min=1,
            max=max(1, min(n_unlabeled, 5 * model.k_t)),
            description="k_t (batch)",
            continuous_update=False,
        )
        auto = model.k_m == "auto"
        self.k_m = w.IntSlider(
            value=candidate_count(model.k_t, 1.25) if auto else model.k_m,
            min=1,
            max=max(1, n_unlabeled),
            description="k_m (cand.)",
            continuous_update=False,
            disabled=auto,
        )
        self.auto_k_m = w.Checkbox(
            value=auto,
            description="auto k_m",
            indent=False,
            tooltip="fewest candidates (k_t to 10 k_t) that span k_t clusters",
        )
        self.epsilon = w.FloatLogSlider(
            value=model.epsilon,
            min=math.log10(lo),
            max=math.log10(hi),
            step=0.01,
            description="epsilon",
            readout_format=".3g",
            continuous_update=False,
        )
        # When every linked explorer is bound to its own strategy, the dropdown would change nothing: it is
        # disabled and says so, rather than looking like it switches strategies.
        all_fixed = bool(self.links) and all(name is not None for _, name in self.links)
        self.strategy = w.Dropdown(
            options=available_strategies(),
            value=model.strategy,
            description="strategy",
            disabled=all_fixed,
            tooltip=(
                "every linked view has its own strategy"
                if all_fixed
                else "the strategy of the views linked without one"
            ),
        )
        self.button = w.Button(description="Select batch", button_style="primary", icon="check")
        self.status = w.Label(value="batch: none yet")
        self.cluster_info = w.Label()
        self.histogram = go.FigureWidget(
            data=[go.Histogram(x=[], nbinsx=40, marker_color="#1f77b4")],
            layout=go.Layout(
                width=340,
                height=220,
                margin=dict(l=40, r=10, t=30, b=40),
                title="cluster sizes",
                xaxis_title="points per cluster",
                yaxis_title="clusters",
            ),
        )
        self.k_t.observe(self._set_k_t, names="value")
        self.k_m.observe(lambda ch: setattr(self.model, "k_m", int(ch["new"])), names="value")
        self.auto_k_m.observe(self._set_auto, names="value")
        self.epsilon.observe(lambda ch: self.model.set_epsilon(ch["new"]), names="value")
        self.strategy.observe(lambda ch: setattr(self.model, "strategy", ch["new"]), names="value")
        self.button.on_click(lambda _: self.select())
        model.observe(self._changed)
        self._show_clusters()
        self.widget = w.HBox(
            [
                w.VBox(
                    [
                        self.strategy,
                        self.k_t,
                        w.HBox([self.k_m, self.auto_k_m]),
                        self.epsilon,
                        self.cluster_info,
                        w.HBox([self.button, self.status]),
                    ]
                ),
                self.histogram,
            ]
        )

    def _ipython_display_(self) -> None:
        from cmal_widgets.static import show

        show(self)

    def static_parts(self) -> list[Any]:
        """The control values, the status line and the cluster-size histogram (see :mod:`cmal_widgets.static`)."""
        k_m = "auto" if self.auto_k_m.value else self.k_m.value
        text = (
            f"strategy <b>{self.strategy.value}</b>, k_t = {self.k_t.value}, k_m = {k_m}, "
            f"epsilon = {self.epsilon.value:.3g} &nbsp;<button disabled>Select batch</button><br>"
            f"{self.cluster_info.value}<br>{self.status.value}"
        )
        return [f"<p style='font-size:13px'>{text}</p>", self.histogram]

    def _set_k_t(self, change: dict[str, Any]) -> None:
        self.model.k_t = int(change["new"])
        if self.k_m.value < self.model.k_t:  # keep k_m >= k_t as the method requires
            self.k_m.value = self.model.k_t
            if self.auto_k_m.value:  # the slider's observer set a number: auto stays on
                self.model.k_m = "auto"

    def _set_auto(self, change: dict[str, Any]) -> None:
        self.k_m.disabled = bool(change["new"])
        self.model.k_m = "auto" if change["new"] else int(self.k_m.value)

    def _changed(self, what: str) -> None:
        if what == "clusters":
            self._show_clusters()
            for explorer, _ in self.links:
                explorer.model.update(clusters=self.model.clusters)

    def _show_clusters(self) -> None:
        sizes = self.model.cluster_sizes()
        self.cluster_info.value = (
            f"{sizes.size} clusters at epsilon={self.model.epsilon:.3g} "
            f"(largest {sizes.max()}, {int((sizes == 1).sum())} singletons)"
        )
        self.histogram.data[0].x = sizes

    def select(self) -> list[BatchResult]:
        """What the button does: one batch per linked explorer (or one for the model), highlighted."""
        results = []
        targets = self.links or [(None, None)]
        try:
            for explorer, name in targets:
                result = self.model.select_batch(name)
                results.append(result)
                if explorer is not None:
                    explorer.model.set_highlight(
                        labeled=self.model.labeled, candidates=result.candidates, batch=result.indices
                    )
        except ValueError as err:  # shown in the UI, not as a traceback in the log
            self.status.value = f"error: {err}"
            return results
        parts = [
            f"{r.strategy}: {r.indices.size} selected"
            + f" from {np.unique(self.model.clusters[r.indices]).size} clusters"
            + (f" (k_m = {r.plan.k_m})" if r.plan is not None and r.strategy != "cluster-random" else "")
            for r in results
        ]
        self.status.value = "batch: " + "; ".join(parts)
        return results
