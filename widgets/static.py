"""Static views: what a page without a live kernel shows where a notebook displays a widget.

A widget needs a running kernel and a front end with a widget manager. The documentation site has neither, so
the docs build sets ``CMAL_WIDGETS_STATIC=1`` in its kernels, and every view then displays a snapshot of itself
instead: its plotly figures as plain (still zoomable) figures and its tables, buttons and status lines as HTML, in
one HTML output. The snapshot is drawn from the same model objects the live widgets draw, and it is redrawn after
every later cell that changes the view (IPython's ``post_run_cell`` event and ``update_display``), so the page
shows what a live notebook shows after "Run All": each view as the last cell that touched it left it.

The figures call ``Plotly`` without carrying plotly.js (4.8 MB per view otherwise): the page must load it, as this
site's notebook pages do. :func:`row` and :func:`column` lay views out side by side or stacked, live and static.

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

import os
from typing import Any, Protocol

__all__ = ["STATIC_ENV", "Layout", "column", "refresh_snapshots", "row", "show", "snapshot_html", "static_views"]

#: The environment variable that turns static snapshots on (``1``, ``true``, ``yes`` or ``on``).
STATIC_ENV = "CMAL_WIDGETS_STATIC"
STATIC_NOTE = (
    "<p style='font-size:12px;color:#555;margin:0 0 4px'><em>A static snapshot of an interactive view, as "
    "the notebook's cells left it; in Jupyter the view is live.</em></p>"
)


class View(Protocol):
    widget: Any

    def static_parts(self) -> list[Any]: ...


def static_views() -> bool:
    """True when views should display static snapshots (environment variable ``CMAL_WIDGETS_STATIC=1``)."""
    return os.environ.get(STATIC_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _part_html(part: Any, key: str) -> str:
    if hasattr(part, "to_plotly_json"):  # a plotly Figure or FigureWidget
        import plotly.io as pio

        # A fixed div id per view and part: an unchanged view renders to the same HTML, so nothing is re-sent.
        return pio.to_html(
            part.to_dict(), include_plotlyjs=False, include_mathjax=False, full_html=False, div_id=key, validate=False
        )
    return part if isinstance(part, str) else part._repr_html_()


def _body(view: Any, key: str) -> str:
    if isinstance(view, Layout):
        inner = "".join(f"<div>{_body(v, f'{key}-{i}')}</div>" for i, v in enumerate(view.views))
        style = "display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start" if view.horizontal else ""
        return f"<div style='{style}'>{inner}</div>"
    return "".join(_part_html(part, f"{key}-{i}") for i, part in enumerate(view.static_parts()))


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


def show(view: View) -> None:
    """Display ``view``: its widget in a live notebook, its static snapshot when :func:`static_views` is on."""
    from IPython import get_ipython
    from IPython.display import HTML, display

    if not static_views():
        display(view.widget)
        return
    handle = display(HTML(""), display_id=True)
    html = snapshot_html(view, handle.display_id)
    handle.update(HTML(html))
    _snapshots.append([view, handle, html])
    shell = get_ipython()
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
