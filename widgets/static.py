"""Static views: what a page without a live kernel shows where a notebook displays a widget.

A widget needs a running kernel and a front end with a widget manager. The documentation site has neither, so
the docs build sets ``CMAL_WIDGETS_STATIC=1`` in its kernels, and every view then displays a snapshot of itself
instead: its plotly figures as plain (still zoomable) figures and its tables, buttons and status lines as HTML, in
one HTML output. The snapshot is drawn from the same model objects the live widgets draw, and it is redrawn after
every later cell that changes the view (IPython's ``post_run_cell`` event and ``update_display``), so the page
shows what a live notebook shows after "Run All": each view as the last cell that touched it left it.

The figures call ``Plotly`` without carrying plotly.js (4.8 MB per view otherwise): the page must load it, as this
site's notebook pages do. :func:`row` and :func:`column` lay views out side by side or stacked, live and static.

In a live notebook (static mode off) :func:`show` publishes one MIME bundle with three representations: the widget
view (``application/vnd.jupyter.widget-view+json``), a snapshot as ``text/html`` and a line of ``text/plain``. Each
front end draws the richest one it can: JupyterLab, Notebook 7 and Voila draw the live widget; a viewer without a
widget manager (GitHub, nbviewer, ``jupyter nbconvert`` of a notebook saved without widget state) draws the
snapshot instead of the text ``VBox(...)``. That snapshot is the view as it was displayed: updating it after later
cells would make live front ends redraw the widget (and lose its zoom). Its figures draw with the page's plotly.js
if there is one, else load plotly.js once per page from plotly's CDN (never inlined per output); large scatter
traces are thinned to :data:`FALLBACK_MAX_POINTS` points so the saved notebook stays small. Where no script runs
(GitHub), a line in place of each figure says what it would show.

:func:`show` also keeps the stored state of the views' plotly ``FigureWidget`` objects current (see
:func:`sync_figure_state`): Voila builds its widgets from that state after the notebook ran, and without this drew
the explorer without points.

Examples
--------
>>> import os
>>> from cmal_widgets.static import static_views
>>> os.environ.pop("CMAL_WIDGETS_STATIC", None) and None
>>> static_views()
False
>>> os.environ["CMAL_WIDGETS_STATIC"] = "1"
>>> static_views()
True
>>> del os.environ["CMAL_WIDGETS_STATIC"]
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from typing import Any, Protocol

import numpy as np

__all__ = [
    "FALLBACK_MAX_POINTS",
    "STATIC_ENV",
    "Layout",
    "column",
    "fallback_bundle",
    "refresh_snapshots",
    "row",
    "show",
    "snapshot_html",
    "static_views",
    "sync_figure_state",
]

#: The environment variable that turns static snapshots on (``1``, ``true``, ``yes`` or ``on``).
STATIC_ENV = "CMAL_WIDGETS_STATIC"
STATIC_NOTE = (
    "<p style='font-size:12px;color:#555;margin:0 0 4px'><em>A static snapshot of an interactive view, as "
    "the notebook's cells left it; in Jupyter the view is live.</em></p>"
)
FALLBACK_NOTE = (
    "<p style='font-size:12px;color:#555;margin:0 0 4px'><em>A static snapshot of an interactive view, as it was "
    "displayed: this front end shows no widgets. Open the notebook in JupyterLab, Notebook 7 or Voila (or enable "
    'widgets: see cmal\'s guide, "Front ends") for the live view.</em></p>'
)
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
#: A fallback snapshot draws at most this many points per scatter trace (a seeded subsample): a 100k-point map
#: would otherwise add megabytes to the saved notebook for a view that front ends with widgets never show.
FALLBACK_MAX_POINTS = 2000
#: Trace types whose per-point arrays can be thinned (a histogram's values must all stay: they are its counts).
_THINNABLE = {"scatter", "scattergl"}
# Defines window.cmalWithPlotly(callback) once per page: callback(Plotly) runs as soon as plotly.js is there: the
# page's own, else loaded once for all figures of the page from plotly's CDN, through require.js where the page has
# it (nbconvert's templates and the classic Notebook do; a plotly.js build that registers as an AMD module would
# clash with a plain <script> there).
_LOADER = """<script>window.cmalWithPlotly = window.cmalWithPlotly || function (draw) {
  if (window.Plotly) { draw(window.Plotly); return; }
  var url = "%(url)s";
  window.PlotlyConfig = window.PlotlyConfig || {MathJaxConfig: "local"};
  if (typeof window.requirejs === "function" && typeof window.define === "function" && window.define.amd) {
    window.requirejs.config({paths: {cmal_plotly: url.slice(0, -3)}});
    // plotly.js 3+ is no AMD module any more: it sets window.Plotly, and require.js hands over undefined.
    window.requirejs(["cmal_plotly"], function (P) { window.Plotly = window.Plotly || P; draw(window.Plotly); });
    return;
  }
  var tag = document.getElementById("cmal-plotlyjs");
  if (!tag) {
    tag = document.createElement("script");
    tag.id = "cmal-plotlyjs"; tag.src = url; tag.charset = "utf-8";
    document.head.appendChild(tag);
  }
  tag.addEventListener("load", function () { draw(window.Plotly); });
};</script>"""


class View(Protocol):
    widget: Any

    def static_parts(self) -> list[Any]: ...


def static_views() -> bool:
    """True when views should display static snapshots (environment variable ``CMAL_WIDGETS_STATIC=1``)."""
    return os.environ.get(STATIC_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _array(value: Any) -> np.ndarray | None:
    """A per-point array of a trace as numpy (plotly 6+ keeps numeric arrays as base64 ``{"dtype", "bdata"}``)."""
    if isinstance(value, dict) and "bdata" in value and "dtype" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return flat.reshape([int(n) for n in str(shape).split(",")]) if shape else flat
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)):
        return np.asarray(value, dtype=object)
    return None


def _thin(fig: dict[str, Any], max_points: int) -> tuple[dict[str, Any], list[str]]:
    """``fig`` with each scatter trace above ``max_points`` points cut to a seeded subsample of that many; also
    returns a line per thinned trace saying so."""
    traces, notes = [], []
    for trace in fig.get("data", []):
        x = _array(trace.get("x"))
        n = 0 if x is None else len(x)
        if trace.get("type", "scatter") not in _THINNABLE or n <= max_points:
            traces.append(trace)
            continue
        keep = np.sort(np.random.default_rng(0).choice(n, max_points, replace=False))

        def cut(d: dict[str, Any], n: int = n, keep: np.ndarray = keep) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for k, v in d.items():
                if k == "selectedpoints":  # positions in the full trace: meaningless once thinned
                    continue
                if isinstance(v, dict) and not ("bdata" in v and "dtype" in v):
                    out[k] = cut(v)
                    continue
                arr = None if isinstance(v, str) else _array(v)
                out[k] = arr[keep].tolist() if arr is not None and arr.ndim >= 1 and len(arr) == n else v
            return out

        traces.append(cut(trace))
        name = f" of {trace['name']!r}" if trace.get("name") else ""
        notes.append(f"{max_points:,} of the {n:,} points{name} drawn in this snapshot")
    return {**fig, "data": traces}, notes


def _fallback_figure_html(fig: dict[str, Any], key: str) -> str:
    """One figure of a fallback snapshot: drawn through ``cmalWithPlotly`` (see ``_LOADER``), with a line in its
    place for pages where no script runs."""
    import plotly.io as pio

    # What the placeholder names: the figure's title, else (a map) how many points its largest scatter trace has.
    title = fig.get("layout", {}).get("title")
    title = title.get("text") if isinstance(title, dict) else title
    if not title:
        sizes = [
            len(x)
            for t in fig.get("data", [])
            if t.get("type", "scatter") in _THINNABLE and (x := _array(t.get("x"))) is not None
        ]
        title = f"a map of {max(sizes):,} points" if sizes and max(sizes) else ""
    fig, notes = _thin(fig, FALLBACK_MAX_POINTS)
    html = pio.to_html(fig, include_plotlyjs=False, include_mathjax=False, full_html=False, div_id=key, validate=False)
    # plotly's own script calls the global Plotly at once; here it waits for plotly.js, then clears the placeholder.
    head, sep, rest = html.rpartition("<script>")
    body, _, tail = rest.partition("</script>")
    div = re.search(rf'<div id="{re.escape(key)}"[^>]*>', head)
    if not sep or div is None:  # not the layout this code knows: leave plotly's own HTML alone
        return html
    placeholder = (
        "<p class='cmal-figure-placeholder' style='font-size:12px;color:#777'>[interactive figure"
        f"{': ' + str(title) if title else ''}: it draws where scripts run and plotly.js loads]</p>"
    )
    head = head[: div.end()] + placeholder + head[div.end() :]
    note = "".join(f"<p style='font-size:11px;color:#777;margin:0'>{line}</p>" for line in notes)
    script = (
        f"window.cmalWithPlotly(function (Plotly) {{ var el = document.getElementById({json.dumps(key)});"
        f" if (el) {{ el.innerHTML = ''; }} {body} }});"
    )
    return f"{note}{head}<script>{script}</script>{tail}"


def _part_html(part: Any, key: str, fallback: bool = False) -> str:
    if hasattr(part, "to_plotly_json"):  # a plotly Figure or FigureWidget
        import plotly.io as pio

        if fallback:
            return _fallback_figure_html(part.to_dict(), key)
        # A fixed div id per view and part: an unchanged view renders to the same HTML, so nothing is re-sent.
        return pio.to_html(
            part.to_dict(), include_plotlyjs=False, include_mathjax=False, full_html=False, div_id=key, validate=False
        )
    return part if isinstance(part, str) else part._repr_html_()


def _body(view: Any, key: str, fallback: bool = False) -> str:
    if isinstance(view, Layout):
        inner = "".join(f"<div>{_body(v, f'{key}-{i}', fallback)}</div>" for i, v in enumerate(view.views))
        style = "display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start" if view.horizontal else ""
        return f"<div style='{style}'>{inner}</div>"
    return "".join(_part_html(part, f"{key}-{i}", fallback) for i, part in enumerate(view.static_parts()))


def snapshot_html(view: View, key: str = "cmal-view") -> str:
    """The static snapshot of ``view`` as one HTML string (the note, then each part; rows side by side)."""
    return STATIC_NOTE + _body(view, key)


_snapshots: list[list[Any]] = []  # [view, display handle, last HTML sent]


def refresh_snapshots() -> int:
    """Redraw every static snapshot shown so far whose view changed; return how many were updated.

    Registered on IPython's ``post_run_cell`` event by :func:`show`, so it runs after every cell.
    """
    from IPython.display import HTML

    updated = 0
    for entry in _snapshots:
        view, handle, last = entry
        html = snapshot_html(view, handle.display_id)
        if html != last:
            handle.update(HTML(html))
            entry[2] = html
            updated += 1
    return updated


def _after_cell(*_: Any) -> None:
    refresh_snapshots()


def _plotly_cdn_url() -> str:
    from plotly.offline import get_plotlyjs_version

    return f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"


def _describe(view: Any) -> str:
    if isinstance(view, Layout):
        return ("row" if view.horizontal else "column") + " of " + ", ".join(_describe(v) for v in view.views)
    return type(view).__name__


def fallback_bundle(view: View) -> dict[str, Any]:
    """The MIME bundle :func:`show` publishes in a live notebook: the widget view, a snapshot as ``text/html`` for
    front ends without a widget manager, and a line of ``text/plain`` for those without HTML.

    Examples
    --------
    >>> import numpy as np
    >>> from cmal_widgets import Explorer, ExplorerModel
    >>> bundle = fallback_bundle(Explorer(ExplorerModel(xy=np.eye(3, 2), labels=[0, 1, 1])))
    >>> sorted(bundle)
    ['application/vnd.jupyter.widget-view+json', 'text/html', 'text/plain']
    >>> "this front end shows no widgets" in bundle["text/html"]
    True
    """
    data = view.widget._repr_mimebundle_()
    if isinstance(data, tuple):  # (data, metadata) is a valid _repr_mimebundle_ answer too
        data = data[0]
    key = f"cmal-{uuid.uuid4().hex[:12]}"  # unique per display: a view shown twice on one page needs two ids
    body = _body(view, key, fallback=True)
    loader = _LOADER % {"url": _plotly_cdn_url()} if "cmalWithPlotly(function" in body else ""
    return {
        **{k: v for k, v in data.items() if k == WIDGET_VIEW_MIME},
        "text/html": FALLBACK_NOTE + loader + body,
        "text/plain": (
            f"<cmal_widgets {_describe(view)}: an interactive view; this front end shows neither widgets nor HTML. "
            "Open the notebook in JupyterLab, Notebook 7 or Voila.>"
        ),
    }


def _figure_widgets(widget: Any) -> list[Any]:
    """Every plotly ``FigureWidget`` in an ipywidgets tree (boxes and their children)."""
    try:
        from plotly.basewidget import BaseFigureWidget
    except ImportError:  # plotly without ipywidgets support: there are no figure widgets to find
        return []
    found, stack, seen = [], [widget], set()
    while stack:
        w = stack.pop()
        if id(w) in seen:
            continue
        seen.add(id(w))
        if isinstance(w, BaseFigureWidget):
            found.append(w)
        else:
            stack.extend(getattr(w, "children", None) or ())
    return found


def sync_figure_state(widget: Any) -> int:
    """Make the kernel-side state of each plotly ``FigureWidget`` in ``widget`` its current figure; return how many
    figures changed since the last call.

    A ``FigureWidget`` puts its traces and layout in its widget state once, when it is created, and sends every
    later change as a one-off message to the front ends connected at that moment. A front end that builds the
    widget from the kernel's state instead sees the figure as it was created: Voila, which connects after the
    notebook ran, showed the explorer without its points and the controls' histogram empty (as would any front end
    that rebuilds widgets from the kernel's state). Here the stored state catches up without sending anything: live
    views already have those changes, and re-sending the whole figure would redraw it (and cost seconds at 100k
    points).
    """
    from copy import deepcopy

    changed = 0
    for fig in _figure_widgets(widget):
        edits = (fig._last_trace_edit_id, fig._last_layout_edit_id, len(fig._data))
        if getattr(fig, "_cmal_synced_edits", None) == edits:
            continue
        # traitlets keeps trait values in _trait_values: writing there updates what request_state answers without
        # the change notification that would send the figure again.
        fig._trait_values["_widget_data"] = deepcopy(fig._data)
        fig._trait_values["_widget_layout"] = deepcopy(fig._layout_obj._props)
        fig._cmal_synced_edits = edits
        changed += 1
    return changed


_live: list[Any] = []  # widgets of views shown live whose figures sync_figure_state keeps current


def _after_cell_live(*_: Any) -> None:
    for widget in list(_live):
        if getattr(widget, "comm", None) is None:  # closed: nothing will ask for its state again
            _live.remove(widget)
        else:
            sync_figure_state(widget)


def show(view: View, *, fallback: bool = True) -> None:
    """Display ``view``: its widget in a live notebook, its static snapshot when :func:`static_views` is on.

    Parameters
    ----------
    view : a cmal_widgets view, or a :func:`row` / :func:`column` of them
    fallback : bool
        In a live notebook, publish with the widget a static snapshot for front ends without a widget manager
        (see :func:`fallback_bundle`); ``False`` publishes the widget alone (a smaller output, "VBox(...)" as text
        where widgets do not render).
    """
    from IPython import get_ipython
    from IPython.display import HTML, display

    shell = get_ipython()
    if not static_views():
        # The figures' stored state is current when shown and after every later cell (see sync_figure_state).
        sync_figure_state(view.widget)
        if view.widget not in _live:
            _live.append(view.widget)
        if shell is not None and _after_cell_live not in shell.events.callbacks["post_run_cell"]:
            shell.events.register("post_run_cell", _after_cell_live)
        if fallback:
            display(fallback_bundle(view), raw=True)
        else:
            display(view.widget)
        return
    handle = display(HTML(""), display_id=True)
    html = snapshot_html(view, handle.display_id)
    handle.update(HTML(html))
    _snapshots.append([view, handle, html])
    if shell is not None and _after_cell not in shell.events.callbacks["post_run_cell"]:
        shell.events.register("post_run_cell", _after_cell)


class Layout:
    """Views arranged in a row or a column (see :func:`row`, :func:`column`)."""

    def __init__(self, views: tuple[View, ...], *, horizontal: bool) -> None:
        import ipywidgets as w

        if not views:
            raise ValueError("row()/column() need at least one view, e.g. row(left_explorer, right_explorer)")
        for v in views:
            if not hasattr(v, "widget") or not hasattr(v, "static_parts"):
                raise TypeError(
                    f"row()/column() take cmal_widgets views (or other rows/columns), not {type(v).__name__}"
                )
        self.views = views
        self.horizontal = horizontal
        self.widget = (w.HBox if horizontal else w.VBox)([v.widget for v in views])

    def static_parts(self) -> list[Any]:
        return [part for v in self.views for part in v.static_parts()]

    def _ipython_display_(self) -> None:
        show(self)


def row(*views: View) -> Layout:
    """Views side by side: ``display(row(left, right))`` (in static mode side by side where the page is wide
    enough, else one under the other)."""
    return Layout(views, horizontal=True)


def column(*views: View) -> Layout:
    """Views stacked: ``display(column(controls, row(left, right)))``."""
    return Layout(views, horizontal=False)
