"""Embedding explorer: a 2-D map of the pool, coloured by label, prediction, cluster, margin or status.

:class:`ExplorerModel` is plain Python (what is drawn, in which colours, what is highlighted and selected)
and is what the tests drive. :class:`Explorer` renders it with a plotly ``FigureWidget`` (WebGL
``Scattergl``) and forwards hover and lasso/box events to it.

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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cmal._validation import check_finite_matrix, check_indices, check_labels

__all__ = ["COLOR_BY", "Explorer", "ExplorerModel", "PALETTE", "STATUS_COLORS"]

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
        Above this many points only a seeded random subset is drawn (highlighted points always are).
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
        self._display = self._display_subset()

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
        self._display = self._display_subset()
        self._notify("highlight")

    def select(self, indices: Any) -> np.ndarray:
        """Set the selected pool indices (from a lasso/box event, the fallback button or code)."""
        self.selected = np.unique(check_indices(np.unique(np.asarray(indices, dtype=np.int64)), self.n, "indices"))
        self._notify("selection")
        return self.selected

    def on_plotly_selection(self, point_inds: Any) -> np.ndarray:
        """Handle plotly's ``points.point_inds`` (positions in the drawn subset) and select those points."""
        inds = np.asarray(list(point_inds), dtype=np.int64)
        if inds.size and (inds.min() < 0 or inds.max() >= self._display.size):
            raise ValueError("point_inds refer to points that are not drawn; refresh the explorer.")
        return self.select(self._display[inds])

    # ---------------------------------------------------------- what is drawn
    def _display_subset(self) -> np.ndarray:
        if self.n <= self.max_points:
            return np.arange(self.n)
        rng = np.random.default_rng(self.random_state)
        keep = np.zeros(self.n, dtype=bool)
        keep[rng.choice(self.n, self.max_points, replace=False)] = True
        keep[self.labeled] = keep[self.candidates] = keep[self.batch] = True
        return np.flatnonzero(keep)

    @property
    def display_index(self) -> np.ndarray:
        """Pool indices of the drawn points, shape (n_drawn,)."""
        return self._display

    def status(self) -> np.ndarray:
        """Per pool point: "batch", "candidate", "labeled" or "other" (the first that applies)."""
        s = np.full(self.n, "other", dtype=object)
        s[self.labeled] = "labeled"
        s[self.candidates] = "candidate"
        s[self.batch] = "batch"
        return s.astype(str)

    def colors(self) -> dict[str, Any]:
        """Colours of the drawn points: ``{"color": array, "categorical": bool, "legend": {name: colour}}``."""
        idx = self._display
        if self.color_by == "margin":
            return {"color": self.margins[idx], "categorical": False, "legend": {}}
        if self.color_by == "status":
            status = self.status()[idx]
            return {
                "color": np.array([STATUS_COLORS[s] for s in status]),
                "categorical": True,
                "legend": dict(STATUS_COLORS),
            }
        values = {"label": self.labels, "predicted": self.predicted, "cluster": self.clusters}[self.color_by][idx]
        palette = np.array(PALETTE)
        legend = {str(v): PALETTE[v % len(PALETTE)] for v in np.unique(values)[:20]}
        return {"color": palette[values % len(PALETTE)], "categorical": True, "legend": legend}

    def hover_text(self) -> list[str]:
        """One hover line per drawn point: index, label, prediction, margin, cluster, status."""
        idx = self._display
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


class Explorer:
    """The rendered explorer: a WebGL scatter, a colour dropdown, a hover panel and a selection grid.

    Parameters
    ----------
    model : ExplorerModel
    width, height : int
        Figure size in pixels.

    Attributes
    ----------
    figure : plotly.graph_objects.FigureWidget
    widget : ipywidgets.VBox
        What a notebook displays (``display(explorer)`` works too).
    """

    def __init__(self, model: ExplorerModel, *, width: int = 620, height: int = 480) -> None:
        import ipywidgets as w
        import plotly.graph_objects as go

        self.model = model
        self.figure = go.FigureWidget(
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
        self.grid = w.HTML(layout=w.Layout(max_height="260px", overflow="auto"))
        self.color_dropdown.observe(lambda ch: model.set_color_by(ch["new"]), names="value")
        self.use_selection_button.on_click(lambda _: self.use_plot_selection())
        self.clear_button.on_click(lambda _: model.select([]))
        self.figure.data[0].on_selection(lambda trace, points, selector: model.on_plotly_selection(points.point_inds))
        self.figure.data[0].on_hover(lambda trace, points, state: self._hover(points.point_inds))
        model.observe(self._changed)
        self.widget = w.VBox(
            [
                w.HBox([self.color_dropdown, self.use_selection_button, self.clear_button, self.selection_label]),
                w.HBox([self.figure, self.hover_panel]),
                self.grid,
            ]
        )
        self.refresh()

    def _can_color(self, c: str) -> bool:
        try:
            self.model._check_color_by(c)
        except ValueError:
            return False
        return True

    def _ipython_display_(self) -> None:
        from cmal_widgets.static import show

        show(self)

    def static_parts(self) -> list[Any]:
        """What the map is coloured by and its legend, the map, then the selection grid if any (see
        :mod:`cmal_widgets.static`)."""
        legend = self.model.colors()["legend"]
        keys = "".join(
            f"<span style='margin-right:8px;white-space:nowrap'><span style='color:{c}'>&#9679;</span> {name}</span>"
            for name, c in list(legend.items())[:20]
        )
        more = f" (+{len(legend) - 20} more)" if len(legend) > 20 else ""
        head = (
            f"<p style='font-size:12px;margin:0'>colour by <b>{self.model.color_by}</b>: {keys}{more}"
            "<br><span style='color:#ff7f0e'>&#9675;</span> candidates (k_m) "
            "<span style='color:#d62728'>&#10005;</span> batch</p>"
        )
        parts: list[Any] = [head, self.figure]
        if self.model.selected.size:
            parts.append(
                f"<p style='font-size:12px'>{self.selection_label.value}</p>"
                f"<div style='max-height:260px;overflow:auto'>{self.grid.value}</div>"
            )
        return parts

    def refresh(self) -> None:
        """Redraw every trace from the model."""
        m = self.model
        idx = self._drawn = m.display_index
        colors = m.colors()
        marker = {"color": colors["color"]}
        if not colors["categorical"]:
            marker.update(colorscale="Viridis", showscale=True, colorbar={"title": "margin", "thickness": 10})
        else:
            marker.update(showscale=False)
        with self.figure.batch_update():
            pool = self.figure.data[0]
            pool.x, pool.y = m.xy[idx, 0], m.xy[idx, 1]
            pool.marker.update(marker)
            pool.hovertext = m.hover_text()
            pool.hoverinfo = "text"
            self._draw_highlight()

    def _draw_highlight(self) -> None:
        m = self.model
        for trace, idx in ((self.figure.data[1], m.candidates), (self.figure.data[2], m.batch)):
            trace.x, trace.y = m.xy[idx, 0], m.xy[idx, 1]

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
        elif (
            what == "highlight"
            and np.array_equal(self._drawn, self.model.display_index)
            and self.model.color_by != "status"
        ):
            # Only the two small overlay traces change: re-sending the whole pool trace would cost seconds
            # at 100k points.
            with self.figure.batch_update():
                self._draw_highlight()
        else:
            self.refresh()

    def use_plot_selection(self) -> np.ndarray:
        """Fallback path: select the points the browser reports as selected on the pool trace."""
        sel = self.figure.data[0].selectedpoints
        return self.model.on_plotly_selection([] if sel is None else sel)

    def _hover(self, point_inds: list[int]) -> None:
        if not point_inds:
            return
        i = int(self.model.display_index[point_inds[0]])
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

        captions = [f"#{i}" + (f" y={m.labels[i]}" if m.labels is not None else "") for i in m.selected]
        self.grid.value = thumbnail_grid_html(m.images, m.selected, captions, size=42)
