"""Training monitor: live loss/accuracy per epoch while a round trains, learning curves across rounds for several
strategies, and the stopping signals of every round (agreement of successive models on the stop set, the batch's
mean margin; :mod:`cmal.stopping`).

:class:`TrainingMonitorModel` collects events (``cmal.loop.run(on_epoch=..., on_round=...)`` feeds it);
:class:`TrainingMonitor` redraws two plotly ``FigureWidget`` s as events arrive, so a training cell shows
progress while it runs.

Examples
--------
>>> from cmal_widgets.monitor import TrainingMonitorModel
>>> m = TrainingMonitorModel()
>>> m.on_epoch({"strategy": "margin", "seed": 0, "round": 1, "epoch": 0, "loss": 1.2, "accuracy": 0.6})
>>> m.on_round({"strategy": "margin", "seed": 0, "round": 1, "n_labeled": 300, "accuracy": 0.9})
>>> m.curves()["margin"]
{'n_labeled': [300], 'accuracy_mean': [0.9], 'accuracy_se': [0.0]}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cmal.metrics import mean_and_se

__all__ = ["TrainingMonitor", "TrainingMonitorModel", "learning_curve_figure", "stop_signal_figure"]

#: The per-round stopping signals a record may hold (cmal.session.Session records them every round).
SIGNALS = ("stop_agreement", "batch_mean_margin")


class TrainingMonitorModel:
    """Epoch logs of the round being trained, and every finished round's record."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []
        self.rounds: list[dict[str, Any]] = []
        self.current: tuple[Any, Any, Any] | None = None
        self._listeners: list[Callable[[str], None]] = []

    def observe(self, callback: Callable[[str], None]) -> None:
        """Call ``callback("epoch")`` or ``callback("round")`` on every event."""
        self._listeners.append(callback)

    def _notify(self, what: str) -> None:
        for cb in self._listeners:
            cb(what)

    def on_epoch(self, event: dict[str, Any]) -> None:
        """One epoch finished (``cmal.loop.run``'s ``on_epoch`` event). A new round clears the epoch log."""
        key = (event.get("strategy"), event.get("seed"), event.get("round"))
        if key != self.current:
            self.current = key
            self.epochs = []
        self.epochs.append(dict(event))
        self._notify("epoch")

    def on_round(self, record: dict[str, Any]) -> None:
        """One round finished (``cmal.loop.run``'s ``on_round`` record)."""
        self.rounds.append(dict(record))
        self._notify("round")

    def load_results(self, results: dict[str, Any]) -> None:
        """Fill the learning curves from a finished run's results (``results.json``)."""
        for run in results["runs"]:
            for r in run["rounds"]:
                self.rounds.append({"strategy": run["strategy"], "seed": run["seed"], **r})
        self._notify("round")

    def epoch_series(self) -> dict[str, list[float]]:
        """The current round's logs as series, e.g. ``{"loss": [...], "accuracy": [...]}``."""
        keys = [k for k in (self.epochs[0] if self.epochs else {}) if k not in ("strategy", "seed", "round", "epoch")]
        return {k: [e[k] for e in self.epochs if k in e] for k in keys}

    def curves(self) -> dict[str, dict[str, list[float]]]:
        """Per strategy: labels per round and the mean and standard error of accuracy over seeds."""
        out: dict[str, dict[str, list[float]]] = {}
        for name in dict.fromkeys(r["strategy"] for r in self.rounds):
            recs = [r for r in self.rounds if r["strategy"] == name]
            by_n: dict[int, list[float]] = {}
            for r in recs:
                by_n.setdefault(int(r["n_labeled"]), []).append(float(r["accuracy"]))
            ns = sorted(by_n)
            stats = [mean_and_se(np.array(by_n[n])) for n in ns]
            out[name] = {
                "n_labeled": ns,
                "accuracy_mean": [float(m) for m, _ in stats],
                "accuracy_se": [float(s) for _, s in stats],
            }
        return out

    def stop_signals(self) -> dict[str, dict[str, list[float]]]:
        """Per strategy: labels per round and the mean over seeds of each stopping signal (rounds without the
        signal, such as round 0, are left out)."""
        out: dict[str, dict[str, list[float]]] = {}
        for name in dict.fromkeys(r["strategy"] for r in self.rounds):
            recs = [r for r in self.rounds if r["strategy"] == name and r.get(SIGNALS[0]) is not None]
            ns = sorted({int(r["n_labeled"]) for r in recs})
            series: dict[str, list[float]] = {"n_labeled": [float(n) for n in ns]}
            for key in SIGNALS:
                series[key] = [
                    float(np.mean([r[key] for r in recs if int(r["n_labeled"]) == n and r.get(key) is not None]))
                    for n in ns
                ]
            out[name] = series
        return out

    def stops(self) -> list[dict[str, Any]]:
        """Every round at which a run's stopping rule fired: strategy, seed, round, labels and the reason."""
        return [
            {k: r.get(k) for k in ("strategy", "seed", "round", "n_labeled", "stop_reason")}
            for r in self.rounds
            if r.get("stop_reason")
        ]


def stop_signal_figure(signals: dict[str, dict[str, list[float]]], *, widget: bool = False) -> Any:
    """A plotly figure of the stopping signals: agreement (Cohen's kappa) of successive models on the stop set
    (solid, left axis) and the batch's mean margin (dotted, right axis), per strategy."""

    fig = _labels_figure(
        widget,
        title="stopping signals",
        yaxis=dict(title="agreement with previous model (kappa)", range=[0, 1.02]),
        # Its own scale: a margin strategy's batches have margins near 0, flat on a 0-1 axis.
        yaxis2=dict(title="batch mean margin", overlaying="y", side="right", rangemode="tozero"),
        margin=dict(l=50, r=50, t=40, b=40),
    )
    _draw_signals(fig, signals)
    return fig


def _draw_signals(fig: Any, signals: dict[str, dict[str, list[float]]]) -> None:
    import plotly.graph_objects as go

    traces = []
    for i, (name, c) in enumerate(signals.items()):
        color = _COLORS[i % len(_COLORS)]
        traces.append(
            go.Scatter(
                x=c["n_labeled"],
                y=c["stop_agreement"],
                mode="lines+markers",
                name=f"{name} kappa",
                line={"color": color},
            )
        )
        traces.append(
            go.Scatter(
                x=c["n_labeled"],
                y=c["batch_mean_margin"],
                mode="lines+markers",
                name=f"{name} margin",
                line={"color": color, "dash": "dot"},
                yaxis="y2",
            )
        )
    _replace_traces(fig, traces)


def _labels_figure(widget: bool, **layout: Any) -> Any:
    """An empty 520 x 340 plotly figure (a FigureWidget when ``widget``) with "labels" on its x axis."""
    import plotly.graph_objects as go

    return (go.FigureWidget if widget else go.Figure)(
        layout=go.Layout(xaxis_title="labels", width=520, height=340, **layout)
    )


def _replace_traces(fig: Any, traces: list[Any]) -> None:
    fig.data = []
    for t in traces:
        fig.add_trace(t)


_COLORS = ("#d62728", "#1f77b4", "#7f7f7f", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")


def learning_curve_figure(
    curves: dict[str, dict[str, list[float]]], *, widget: bool = False, title: str = "test accuracy vs labels"
) -> Any:
    """A plotly figure of learning curves (mean ± standard error band per strategy)."""

    fig = _labels_figure(widget, title=title, yaxis_title="accuracy", margin=dict(l=50, r=10, t=40, b=40))
    _draw_curves(fig, curves)
    return fig


def _draw_curves(fig: Any, curves: dict[str, dict[str, list[float]]]) -> None:
    import plotly.graph_objects as go

    traces = []
    for i, (name, c) in enumerate(curves.items()):
        color = _COLORS[i % len(_COLORS)]
        x, m, s = np.array(c["n_labeled"]), np.array(c["accuracy_mean"]), np.array(c["accuracy_se"])
        traces.append(
            go.Scatter(
                x=np.concatenate([x, x[::-1]]),
                y=np.concatenate([m + s, (m - s)[::-1]]),
                fill="toself",
                line={"width": 0},
                fillcolor=color,
                opacity=0.2,
                hoverinfo="skip",
                showlegend=False,
            )
        )
        traces.append(go.Scatter(x=x, y=m, mode="lines+markers", name=name, line={"color": color}))
    _replace_traces(fig, traces)


class TrainingMonitor:
    """Live view of a :class:`TrainingMonitorModel`: epoch curves of the current round, learning curves."""

    def __init__(self, model: TrainingMonitorModel | None = None) -> None:
        import ipywidgets as w
        import plotly.graph_objects as go

        self.model = model or TrainingMonitorModel()
        self.epoch_figure = go.FigureWidget(
            layout=go.Layout(
                title="current round", xaxis_title="epoch", width=420, height=340, margin=dict(l=50, r=10, t=40, b=40)
            )
        )
        self.curve_figure = learning_curve_figure({}, widget=True)
        self.signal_figure = stop_signal_figure({}, widget=True)
        self.label = w.Label("waiting for training")
        self.model.observe(self._changed)
        self.widget = w.VBox([self.label, w.HBox([self.epoch_figure, self.curve_figure]), self.signal_figure])

    def _ipython_display_(self) -> None:
        from cmal_widgets.static import show

        show(self)

    def static_parts(self) -> list[Any]:
        """The status line and the three figures (see :mod:`cmal_widgets.static`)."""
        return [
            f"<p style='font-size:13px'>{self.label.value}</p>",
            self.epoch_figure,
            self.curve_figure,
            self.signal_figure,
        ]

    def on_epoch(self, event: dict[str, Any]) -> None:
        self.model.on_epoch(event)

    def on_round(self, record: dict[str, Any]) -> None:
        self.model.on_round(record)

    def _changed(self, what: str) -> None:
        import plotly.graph_objects as go

        if what == "epoch":
            series = self.model.epoch_series()
            strategy, seed, rnd = self.model.current or (None, None, None)
            self.label.value = (
                f"training {strategy or 'seed model'} (seed {seed}), round {rnd}: epoch {len(self.model.epochs)}"
            )
            with self.epoch_figure.batch_update():
                if len(self.epoch_figure.data) != len(series):
                    self.epoch_figure.data = []
                    for k in series:
                        self.epoch_figure.add_trace(go.Scatter(mode="lines+markers", name=k))
                for trace, v in zip(self.epoch_figure.data, series.values()):
                    trace.x, trace.y = list(range(1, len(v) + 1)), v
        else:
            with self.curve_figure.batch_update():
                _draw_curves(self.curve_figure, self.model.curves())
            with self.signal_figure.batch_update():
                _draw_signals(self.signal_figure, self.model.stop_signals())
            if self.model.rounds:
                r = self.model.rounds[-1]
                text = (
                    f"{r['strategy']} seed {r['seed']} round {r['round']}: "
                    f"{r['n_labeled']} labels, accuracy {r['accuracy']:.2%}"
                )
                if r.get("stop_agreement") is not None:
                    text += f", kappa {r['stop_agreement']:.3f}, batch margin {r['batch_mean_margin']:.3f}"
                if r.get("stop_reason"):
                    text += f" | STOP: {r['stop_reason']}"
                self.label.value = text
