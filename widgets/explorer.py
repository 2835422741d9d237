"""Embedding explorer: a 2-D map of the pool, coloured by label, prediction, cluster, margin or status.

:class:`ExplorerModel` is plain Python (what is drawn, in which colours, what is highlighted and selected)
and is what the tests drive. :class:`Explorer` renders it with one of two WebGL backends and forwards hover and
lasso/box events to it:

- ``"plotly"``, a plotly ``FigureWidget`` with ``Scattergl`` traces (below 100,000 points, the default there):
  candidates drawn as rings and the batch as crosses over the pool; above ``max_points`` it draws a seeded
  subsample;
- ``"scatter"``, jupyter-scatter (``jscatter``, an anywidget; the default from 100,000 points): every point,
  no subsampling, with the candidates and the batch drawn as rings and crosses on a layer over the points (see
  :mod:`cmal_widgets.explorer_scatter`).

Both draw the same model, in the same colours, and both feed lasso selection and hover back to it.
:meth:`Explorer.figure` returns a plain plotly figure of the current state for front ends without widgets.

plotly's selection callback does not fire in every front end (plotly.py issue #3910), so the explorer also
offers a fallback: the "Use plot selection" button reads the ``selectedpoints`` trait that the browser syncs
back, and ``ExplorerModel.select`` can be called from code.

Examples
--------
>>> import numpy as np
>>> from cmal_widgets.explorer import ExplorerModel
>>> m = ExplorerModel(xy=np.random.default_rng(0).normal(size=(6, 2)), labels=np.array([0, 1, 1, 0, 2, 2]))
>>> m.set_highlight(labeled=[0], candidates=[1, 2, 3], batch=[2])
>>> m.status().tolist()
['labeled', 'candidate', 'batch', 'candidate', 'other', 'other']
>>> m.on_plotly_selection([4, 5]).tolist()
[4, 5]
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cmal._validation import check_finite_matrix, check_indices, check_labels

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "BACKENDS",
    "COLOR_BY",
    "SCATTER_FROM",
    "STATIC_MAX_POINTS",
    "Explorer",
    "ExplorerModel",
    "PALETTE",
    "STATUS_COLORS",
    "STATUS_NAMES",
    "choose_backend",
]

#: What the explorer can colour points by.
COLOR_BY = ("label", "predicted", "cluster", "margin", "status")
#: 20 distinguishable colours (d3 category20-like); clusters beyond 20 reuse them cyclically.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
)
#: Colours of the point statuses (labeled, candidate, batch, other).
STATUS_COLORS = {"labeled": "#2ca02c", "candidate": "#ff7f0e", "batch": "#d62728", "other": "#d9d9d9"}
#: Point statuses by code (:meth:`ExplorerModel.status_codes`); a later one wins (a batch point is also a candidate).
STATUS_NAMES = ("other", "labeled", "candidate", "batch")
#: Explorer backends; "auto" picks "scatter" from :data:`SCATTER_FROM` points on, "plotly" below.
BACKENDS = ("auto", "plotly", "scatter")
#: From this many points on, ``backend="auto"`` draws with jupyter-scatter instead of plotly.
SCATTER_FROM = 100_000
#: Pool points in the static snapshot of a jupyter-scatter explorer (:meth:`Explorer.static_parts`): building a
#: plotly figure of 10^5 points takes a second, and the snapshot is thinned further anyway.
STATIC_MAX_POINTS = 20_000


@dataclass
class ExplorerModel:
    """State of one explorer view.

    Parameters
    ----------
    xy : array (n, 2)
        Projected coordinates (:func:`cmal_widgets.projection.project`).
    labels, predicted, clusters : arrays (n,), optional
        True labels, predicted labels, cluster ids.
    margins : array (n,), optional
    images : array (n, h, w[, c]), optional
        For hover thumbnails and the selection grid.
    max_points : int
        Above this many points the plotly backend and :meth:`Explorer.figure` draw a seeded random subset
        (highlighted points always included); the scatter backend draws every point.
    random_state : int
        Seeds the display subsample.
    """

    xy: np.ndarray
    labels: np.ndarray | None = None
    predicted: np.ndarray | None = None
    clusters: np.ndarray | None = None
    margins: np.ndarray | None = None
    images: np.ndarray | None = None
    color_by: str = "label"
    max_points: int = 100_000
    random_state: int = 0
    labeled: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    candidates: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    batch: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    selected: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    title: str = ""

    def __post_init__(self) -> None:
        self.xy = check_finite_matrix(self.xy, "xy")
        if self.xy.shape[1] != 2:
            raise ValueError(f"xy must have 2 columns (a 2-D projection), got shape {self.xy.shape}.")
        n = self.n
        for name in ("labels", "predicted", "clusters"):
            if getattr(self, name) is not None:
                setattr(self, name, check_labels(getattr(self, name), n, name))
        if self.margins is not None:
            m = np.asarray(self.margins, dtype=np.float64)
            if m.shape != (n,):
                raise ValueError(f"margins must have shape ({n},), got {m.shape}.")
            self.margins = m
        if self.images is not None and len(self.images) != n:
            raise ValueError(f"images has {len(self.images)} rows but xy has {n}.")
        self._listeners: list[Callable[[str], None]] = []
        self._check_color_by(self.color_by)
        self._display: np.ndarray | None = None  # computed when a view asks (the scatter backend never does)

    # ----------------------------------------------------------------- state
    @property
    def n(self) -> int:
        return int(self.xy.shape[0])

    def observe(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(what)`` whenever ``what`` ("color", "highlight", "selection", "data") changes."""
        self._listeners.append(callback)

    def _notify(self, what: str) -> None:
        for cb in self._listeners:
            cb(what)

    def _check_color_by(self, value: str) -> None:
        if value not in COLOR_BY:
            raise ValueError(f"color_by must be one of {COLOR_BY}, got {value!r}.")
        needed = {"label": "labels", "predicted": "predicted", "cluster": "clusters", "margin": "margins"}
        if value in needed and getattr(self, needed[value]) is None:
            raise ValueError(f"color_by={value!r} needs {needed[value]}=...; pass it to the explorer.")

    def set_color_by(self, value: str) -> None:
        self._check_color_by(value)
        self.color_by = value
        self._notify("color")

    def update(self, **arrays: Any) -> None:
        """Replace ``predicted``, ``margins`` or ``clusters`` (e.g. after a round or an epsilon re-cut)."""
        for name, value in arrays.items():
            if name not in ("predicted", "margins", "clusters"):
                raise ValueError(f"update() accepts predicted, margins or clusters, not {name!r}.")
            if name == "margins":
                value = None if value is None else np.asarray(value, dtype=np.float64).reshape(self.n)
            elif value is not None:
                value = check_labels(value, self.n, name)
            setattr(self, name, value)
        self._notify("data")

    def set_highlight(self, *, labeled: Any = None, candidates: Any = None, batch: Any = None) -> None:
        """Set which points are labeled, candidates (the ``k_m`` set) and in the batch."""
        if labeled is not None:
            self.labeled = check_indices(labeled, self.n, "labeled")
        if candidates is not None:
            self.candidates = check_indices(candidates, self.n, "candidates")
        if batch is not None:
            self.batch = check_indices(batch, self.n, "batch")
        self._display = None
        self._notify("highlight")

    def select(self, indices: Any) -> np.ndarray:
        """Set the selected pool indices (from a lasso/box event, the fallback button or code)."""
        self.selected = np.unique(check_indices(np.unique(np.asarray(indices, dtype=np.int64)), self.n, "indices"))
        self._notify("selection")
        return self.selected

    def on_plotly_selection(self, point_inds: Any) -> np.ndarray:
        """Handle plotly's ``points.point_inds`` (positions in the drawn subset) and select those points."""
        inds = np.asarray(list(point_inds), dtype=np.int64)
        drawn = self.display_index
        if inds.size and (inds.min() < 0 or inds.max() >= drawn.size):
            raise ValueError("point_inds refer to points that are not drawn; refresh the explorer.")
        return self.select(drawn[inds])

    # ---------------------------------------------------------- what is drawn
    def display_subset(self, max_points: int | None = None) -> np.ndarray:
        """Pool indices a view of at most ``max_points`` points draws, sorted, shape (k,).

        All points if there are no more than ``max_points`` (default: the model's ``max_points``), else a random subset
        seeded by ``random_state`` plus every labeled, candidate and batch point.
        """
        limit = self.max_points if max_points is None else int(max_points)
        if self.n <= limit:
            return np.arange(self.n)
        rng = np.random.default_rng(self.random_state)
        keep = np.zeros(self.n, dtype=bool)
        keep[rng.choice(self.n, limit, replace=False)] = True
        keep[self.labeled] = keep[self.candidates] = keep[self.batch] = True
        return np.flatnonzero(keep)

    @property
    def display_index(self) -> np.ndarray:
        """Pool indices the plotly backend draws (:meth:`display_subset` of ``max_points``), shape (n_drawn,)."""
        if self._display is None:
            self._display = self.display_subset()
        return self._display

    def status_codes(self) -> np.ndarray:
        """Per pool point, its status as a code into :data:`STATUS_NAMES`, shape (n,), uint8.

        0 other, 1 labeled, 2 candidate, 3 batch; a point in several sets gets the last (batch wins).
        """
        codes = np.zeros(self.n, dtype=np.uint8)
        codes[self.labeled] = 1
        codes[self.candidates] = 2
        codes[self.batch] = 3
        return codes

    def status(self) -> np.ndarray:
        """Per pool point: "batch", "candidate", "labeled" or "other" (the first that applies), shape (n,)."""
        return np.array(STATUS_NAMES)[self.status_codes()]

    def color_values(self, index: np.ndarray | None = None) -> dict[str, Any]:
        """Colours as numbers, for views that draw many points (no per-point strings).

        Parameters
        ----------
        index : array (k,) of int, optional
            Pool indices to colour; all ``n`` points by default.

        Returns
        -------
        dict
            ``"values"``: array (k,): int codes into ``"palette"`` when ``"categorical"``, else float margins;
            ``"categorical"``: bool; ``"palette"``: tuple of colours (empty when not categorical);
            ``"legend"``: ``{name: colour}`` of the categories present (at most 20).

        Examples
        --------
        >>> import numpy as np
        >>> m = ExplorerModel(xy=np.zeros((3, 2)), labels=np.array([0, 21, 1]))
        >>> c = m.color_values()
        >>> c["values"].tolist(), c["palette"][1] == PALETTE[1], c["legend"]["21"] == PALETTE[1]
        ([0, 1, 1], True, True)
        """
        idx = slice(None) if index is None else np.asarray(index)
        if self.color_by == "margin":
            return {"values": self.margins[idx], "categorical": False, "palette": (), "legend": {}}
        if self.color_by == "status":
            return {
                "values": self.status_codes()[idx],
                "categorical": True,
                "palette": tuple(STATUS_COLORS[s] for s in STATUS_NAMES),
                "legend": dict(STATUS_COLORS),
            }
        values = {"label": self.labels, "predicted": self.predicted, "cluster": self.clusters}[self.color_by][idx]
        legend = {str(v): PALETTE[v % len(PALETTE)] for v in np.unique(values)[:20]}
        return {"values": values % len(PALETTE), "categorical": True, "palette": PALETTE, "legend": legend}

    def colors(self) -> dict[str, Any]:
        """Colours of the drawn points: ``{"color": array, "categorical": bool, "legend": {name: colour}}``.

        ``"color"`` holds one colour string per drawn point (or the margins when colouring by margin); views of
        many points use :meth:`color_values` instead.
        """
        c = self.color_values(self.display_index)
        color = np.array(c["palette"])[c["values"]] if c["categorical"] else c["values"]
        return {"color": color, "categorical": c["categorical"], "legend": c["legend"]}

    def hover_text(self, index: np.ndarray | None = None) -> list[str]:
        """One hover line per point of ``index`` (pool indices; default :attr:`display_index`): index, label,
        prediction, cluster, margin, status."""
        idx = self.display_index if index is None else np.asarray(index)
        status = self.status()
        parts = [[f"#{i}" for i in idx]]
        for name, arr in (("label", self.labels), ("pred", self.predicted), ("cluster", self.clusters)):
            if arr is not None:
                parts.append([f"{name} {v}" for v in arr[idx]])
        if self.margins is not None:
            parts.append([f"margin {v:.3f}" for v in self.margins[idx]])
        parts.append(list(status[idx]))
        return [" | ".join(p) for p in zip(*parts)]

    def point_info(self, index: int) -> dict[str, Any]:
        """Everything known about pool point ``index`` (for the hover panel)."""
        index = int(index)
        if not 0 <= index < self.n:
            raise ValueError(f"index must be in [0, {self.n}), got {index}.")
        info: dict[str, Any] = {"index": index, "status": str(self.status()[index])}
        for name in ("labels", "predicted", "clusters"):
            arr = getattr(self, name)
            if arr is not None:
                info[name.rstrip("s") if name != "labels" else "label"] = int(arr[index])
        if self.margins is not None:
            info["margin"] = float(self.margins[index])
        return info


def choose_backend(backend: str, n: int) -> str:
    """The backend an explorer of ``n`` points draws with: ``"plotly"`` or ``"scatter"``.

    ``"auto"`` picks ``"scatter"`` (jupyter-scatter, every point) from :data:`SCATTER_FROM` points on and
    ``"plotly"`` below; if jupyter-scatter is not installed it warns and falls back to plotly, which draws a
    subsample of ``max_points``.

    Raises
    ------
    ValueError
        For a name not in :data:`BACKENDS`.
    ImportError
        For ``"scatter"`` when jupyter-scatter (1.x) is not installed.

    Examples
    --------
    >>> choose_backend("auto", 1_000), choose_backend("plotly", 10**6)
    ('plotly', 'plotly')
    """
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {BACKENDS}, got {backend!r}; e.g. Explorer(model, backend='auto') picks "
            f"plotly below {SCATTER_FROM:,} points and jupyter-scatter from there on."
        )
    if backend == "plotly" or (backend == "auto" and n < SCATTER_FROM):
        return "plotly"
    from cmal_widgets.explorer_scatter import scatter_unavailable_reason

    reason = scatter_unavailable_reason()
    if reason is None:
        return "scatter"
    if backend == "scatter":
        raise ImportError(
            f'Explorer(backend="scatter") needs jupyter-scatter 1.x ({reason}): pip install "cmal[widgets]" '
            '(or pip install "jupyter-scatter>=1.0,<2"), or pass backend="plotly".'
        )
    warnings.warn(
        f"{n:,} points and jupyter-scatter is not usable ({reason}): the explorer falls back to plotly, which draws "
        'a subsample; pip install "cmal[widgets]" to draw every point.',
        stacklevel=3,
    )
    return "plotly"


def _plotly_figure(
    model: ExplorerModel, width: int, height: int, *, widget: bool, index: np.ndarray | None = None
) -> go.Figure:
    """The explorer's plotly figure (a ``FigureWidget`` when ``widget``): the pool points ``index`` (default
    ``model.display_index``), the candidates, the batch."""
    import plotly.graph_objects as go

    fig = (go.FigureWidget if widget else go.Figure)(
        data=[
            go.Scattergl(mode="markers", name="pool", marker={"size": 5, "opacity": 0.8}),
            # WebGL draws open symbols with the marker colour, so rings and crosses are coloured directly.
            go.Scattergl(
                mode="markers",
                name="candidates (k_m)",
                hoverinfo="skip",
                marker={
                    "size": 10,
                    "symbol": "circle-open",
                    "color": STATUS_COLORS["candidate"],
                    "line": {"width": 2, "color": STATUS_COLORS["candidate"]},
                },
            ),
            go.Scattergl(
                mode="markers",
                name="batch",
                hoverinfo="skip",
                marker={
                    "size": 11,
                    "symbol": "x",
                    "color": STATUS_COLORS["batch"],
                    "line": {"width": 1, "color": STATUS_COLORS["batch"]},
                },
            ),
        ],
        layout=go.Layout(
            width=width,
            height=height,
            dragmode="lasso",
            margin=dict(l=10, r=10, t=30, b=10),
            title=model.title or None,
            legend=dict(orientation="h", y=-0.02),
            xaxis=dict(visible=False),
            yaxis=dict(visible=False),
        ),
    )
    _draw_pool(fig, model, index)
    _draw_overlays(fig, model)
    return fig


def _draw_pool(fig: go.Figure, model: ExplorerModel, index: np.ndarray | None = None) -> None:
    idx = model.display_index if index is None else index
    c = model.color_values(idx)
    marker: dict[str, Any]
    if c["categorical"]:
        # Palette codes on a stepped colour scale, not one colour string a point: plotly checks strings one by one
        # (seconds at 10^5 points), numeric arrays at once. Code i is drawn exactly in palette[i].
        k = len(c["palette"])
        scale = [[s, color] for i, color in enumerate(c["palette"]) for s in (i / k, (i + 1) / k)]
        marker = {"color": c["values"] + 0.5, "colorscale": scale, "cmin": 0, "cmax": k, "showscale": False}
    else:
        marker = {
            "color": c["values"],
            "colorscale": "Viridis",
            "cmin": None,
            "cmax": None,
            "showscale": True,
            "colorbar": {"title": "margin", "thickness": 10},
        }
    pool = fig.data[0]
    pool.x, pool.y = model.xy[idx, 0], model.xy[idx, 1]
    pool.marker.update(marker)
    pool.hovertext = np.asarray(model.hover_text(idx))  # a numpy array: checked at once, not string by string
    pool.hoverinfo = "text"


def _draw_overlays(fig: go.Figure, model: ExplorerModel) -> None:
    for trace, idx in ((fig.data[1], model.candidates), (fig.data[2], model.batch)):
        trace.x, trace.y = model.xy[idx, 0], model.xy[idx, 1]


class Explorer:
    """The rendered explorer: a WebGL scatter, a colour dropdown, a hover panel and a selection grid.

    Parameters
    ----------
    model : ExplorerModel
    backend : {"auto", "plotly", "scatter"}
        What draws the map (see :func:`choose_backend`): ``"plotly"`` (``Scattergl``; subsamples above
        ``model.max_points``), ``"scatter"`` (jupyter-scatter: every point, for 10^5 to 10^7 points) or
        ``"auto"``: plotly below :data:`SCATTER_FROM` (100,000) points, jupyter-scatter from there on.
    width, height : int
        Plot size in pixels.

    Attributes
    ----------
    backend : str
        ``"plotly"`` or ``"scatter"``: the backend in use.
    plot : plotly.graph_objects.FigureWidget or anywidget.AnyWidget
        The plot widget. For a plain figure (no widget) call :meth:`figure`.
    widget : ipywidgets.VBox
        What a notebook displays (``display(explorer)`` works too).

    Notes
    -----
    Both backends colour by the same :meth:`ExplorerModel.color_values`, send lasso selections to
    :meth:`ExplorerModel.select` and fill the hover panel (thumbnail and details) from
    :meth:`ExplorerModel.point_info`, and both draw candidates as rings and the batch as crosses (with
    jupyter-scatter on a 2-D canvas layer that follows pan and zoom). jupyter-scatter shows no hover text at the
    pointer: hovering fills the panel beside the plot.

    Examples
    --------
    >>> import numpy as np
    >>> from cmal_widgets.explorer import Explorer, ExplorerModel
    >>> rng = np.random.default_rng(0)
    >>> model = ExplorerModel(xy=rng.normal(size=(500, 2)), labels=rng.integers(0, 10, 500))
    >>> explorer = Explorer(model)  # 500 points: plotly
    >>> explorer.backend
    'plotly'
    >>> model.set_highlight(candidates=[1, 2, 3], batch=[2])
    >>> [len(t.x) for t in explorer.figure().data]  # a plain go.Figure: pool, candidates, batch
    [500, 3, 1]
    """

    def __init__(self, model: ExplorerModel, *, backend: str = "auto", width: int = 620, height: int = 480) -> None:
        import ipywidgets as w

        self.backend = choose_backend(backend, model.n)
        self.model = model
        self.width, self.height = width, height
        self._scatter: Any = None
        if self.backend == "plotly":
            self._drawn = model.display_index  # which points the pool trace holds (a subsample above max_points)
            self.plot = _plotly_figure(model, width, height, widget=True)
            self.plot.data[0].on_selection(lambda trace, points, selector: model.on_plotly_selection(points.point_inds))
            self.plot.data[0].on_hover(lambda trace, points, state: self._hover(points.point_inds))
        else:
            from cmal_widgets.explorer_scatter import ScatterPlot

            self._scatter = ScatterPlot(model, width=width, height=height)
            self.plot = self._scatter.widget
            self._scatter.on_lasso(model.select)
            self._scatter.on_hover(self.show_point)
        options = [c for c in COLOR_BY if self._can_color(c)]
        self.color_dropdown = w.Dropdown(
            options=options, value=model.color_by, description="colour by", layout=w.Layout(width="220px")
        )
        self.use_selection_button = w.Button(
            description="Use plot selection",
            tooltip=(
                "Fallback when lasso/box events do not reach Python (plotly.py #3910): reads the selection the "
                "browser synced back"
            ),
        )
        self.clear_button = w.Button(description="Clear selection")
        self.hover_panel = w.HTML(layout=w.Layout(min_height="70px"))
        self.selection_label = w.Label("selected: 0")
        self.legend = w.HTML(self._legend_html())  # jupyter-scatter draws no legend: shown above its plot
        self.grid = w.HTML(layout=w.Layout(max_height="260px", overflow="auto"))
        self.color_dropdown.observe(lambda ch: model.set_color_by(ch["new"]), names="value")
        self.use_selection_button.on_click(lambda _: self.use_plot_selection())
        self.clear_button.on_click(lambda _: model.select([]))
        model.observe(self._changed)
        buttons = [self.color_dropdown, self.use_selection_button, self.clear_button, self.selection_label]
        if self.backend == "scatter":
            # jupyter-scatter syncs its selection as a trait, which reaches Python in every front end: no
            # fallback button needed. Its plot has no legend of its own, hence the line above it.
            buttons.remove(self.use_selection_button)
        self.widget = w.VBox(
            [w.HBox(buttons)]
            + ([self.legend] if self.backend == "scatter" else [])
            + [w.HBox([self.plot, self.hover_panel]), self.grid]
        )

    def _can_color(self, c: str) -> bool:
        try:
            self.model._check_color_by(c)
        except ValueError:
            return False
        return True

    def _ipython_display_(self) -> None:
        from cmal_widgets.static import show

        show(self)

    def figure(self, max_points: int | None = None) -> go.Figure:
        """The current state as a plain ``plotly.graph_objects.Figure`` (not a widget), for front ends without
        widgets (GitHub, nbconvert, VS Code without the widget renderer): ``explorer.figure().show()``.

        Three ``Scattergl`` traces, whatever the backend: the pool coloured as the explorer is, the candidates
        (rings) and the batch (crosses). Above ``max_points`` pool points (default ``model.max_points``, 100,000)
        the pool trace holds a seeded subsample plus every highlighted point (:meth:`ExplorerModel.display_subset`),
        as the plotly backend draws.

        Parameters
        ----------
        max_points : int, optional
            At most this many pool points (plus highlighted ones) in the figure.

        Returns
        -------
        plotly.graph_objects.Figure
        """
        index = None if max_points is None else self.model.display_subset(max_points)
        return _plotly_figure(self.model, self.width, self.height, widget=False, index=index)

    def _legend_html(self) -> str:
        legend = self.model.color_values()["legend"]
        keys = "".join(
            f"<span style='margin-right:8px;white-space:nowrap'><span style='color:{c}'>&#9679;</span> {name}</span>"
            for name, c in list(legend.items())[:20]
        )
        more = f" (+{len(legend) - 20} more)" if len(legend) > 20 else ""
        return (
            f"<p style='font-size:12px;margin:0'>colour by <b>{self.model.color_by}</b>: {keys}{more}"
            "<br><span style='color:#ff7f0e'>&#9675;</span> candidates (k_m) "
            "<span style='color:#d62728'>&#10005;</span> batch</p>"
        )

    def static_parts(self) -> list[Any]:
        """What the map is coloured by and its legend, the map, then the selection grid if any (see
        :mod:`cmal_widgets.static`). The map is a plotly figure for both backends: for the scatter backend
        :meth:`figure` of a seeded subsample of :data:`STATIC_MAX_POINTS` points (the legend line says so)."""
        head = self._legend_html()
        if self.backend == "plotly":
            fig: Any = self.plot
        else:
            fig = self.figure(max_points=STATIC_MAX_POINTS)
            if self.model.n > STATIC_MAX_POINTS:
                head += (
                    f"<p style='font-size:12px;margin:0'>map: a seeded subsample of {STATIC_MAX_POINTS:,} of the "
                    f"{self.model.n:,} points, plus every highlighted one</p>"
                )
        parts: list[Any] = [head, fig]
        if self.model.selected.size:
            parts.append(
                f"<p style='font-size:12px'>{self.selection_label.value}</p>"
                f"<div style='max-height:260px;overflow:auto'>{self.grid.value}</div>"
            )
        return parts

    def refresh(self) -> None:
        """Redraw the plot from the model (colours, highlights and, for jupyter-scatter, the selection)."""
        m = self.model
        if self._scatter is not None:
            self._scatter.set_colors()
            self._scatter.set_highlight()
            self._scatter.set_selection(m.selected)
            self.legend.value = self._legend_html()
            return
        self._drawn = m.display_index
        with self.plot.batch_update():
            _draw_pool(self.plot, m)
            _draw_overlays(self.plot, m)

    def _sync_dropdown(self) -> None:
        # The model is the source of truth: a notebook's ``model.set_color_by(...)`` or an ``update()`` that adds
        # margins must show in the view's dropdown too, not only in the plot.
        options = tuple(c for c in COLOR_BY if self._can_color(c))
        if tuple(self.color_dropdown.options) != options:
            self.color_dropdown.options = options
        if self.color_dropdown.value != self.model.color_by:
            self.color_dropdown.value = self.model.color_by

    def _changed(self, what: str) -> None:
        if what in ("color", "data"):
            self._sync_dropdown()
        if what == "selection":
            self._show_selection()
            if self._scatter is not None:
                self._scatter.set_selection(self.model.selected)
        elif self._scatter is not None:
            # Each change sends only what it changes: the highlighted indices, or the colours (4 bytes a point),
            # never the coordinates again.
            if what == "highlight":
                self._scatter.set_highlight()
            if what != "highlight" or self.model.color_by == "status":
                self._scatter.set_colors()
                self.legend.value = self._legend_html()
        elif (
            what == "highlight"
            and np.array_equal(self._drawn, self.model.display_index)
            and self.model.color_by != "status"
        ):
            # Only the two small overlay traces change: re-sending the whole pool trace would cost seconds
            # at 100k points.
            with self.plot.batch_update():
                _draw_overlays(self.plot, self.model)
        else:
            self.refresh()

    def use_plot_selection(self) -> np.ndarray:
        """Select the points the browser reports as selected (the fallback for lost plotly lasso events)."""
        if self._scatter is not None:
            return self.model.select(self._scatter.selected())
        sel = self.plot.data[0].selectedpoints
        return self.model.on_plotly_selection([] if sel is None else sel)

    def _hover(self, point_inds: list[int]) -> None:
        # plotly reports positions in the drawn (possibly subsampled) pool trace.
        if point_inds:
            self.show_point(int(self.model.display_index[point_inds[0]]))

    def show_point(self, index: int | None) -> None:
        """Fill the hover panel with pool point ``index``: its thumbnail (if the model has images) and details.

        ``None`` (the pointer left the points) keeps the last point shown.
        """
        if index is None:
            return
        i = int(index)
        info = self.model.point_info(i)
        html = "<br>".join(
            f"<b>{k}</b> {v:.3f}" if isinstance(v, float) else f"<b>{k}</b> {v}" for k, v in info.items()
        )
        if self.model.images is not None:
            from cmal_widgets.thumbnails import thumbnail_uri

            html = f'<img src="{thumbnail_uri(self.model.images[i], size=84)}" width="84"/><br>{html}'
        self.hover_panel.value = html

    def _show_selection(self) -> None:
        m = self.model
        self.selection_label.value = f"selected: {m.selected.size}"
        if m.images is None:
            self.grid.value = ", ".join(map(str, m.selected[:500]))
            return
        from cmal_widgets.thumbnails import thumbnail_grid_html

        shown = m.selected[:200]  # a lasso over a million points may hold 10^5 of them: the grid shows the first 200
        captions = [f"#{i}" + (f" y={m.labels[i]}" if m.labels is not None else "") for i in shown]
        self.grid.value = thumbnail_grid_html(m.images, shown, captions, size=42, max_items=200)
