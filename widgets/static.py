"""Static views: what a page without a live kernel shows where a notebook displays a widget.

A widget needs a running kernel and a front end with a widget manager. The documentation site has neither, so
the docs build sets ``CMAL_WIDGETS_STATIC=1`` in its kernels, and every view then displays a snapshot of itself
taken when the cell ran: its plotly figures as plain (still zoomable, offline) figures and its tables and
status lines as HTML. The snapshot is the view's own state, read from the same model objects the live widgets
draw, so the page shows what a participant running the notebook saw at that cell.

:func:`row` and :func:`column` lay views out side by side or stacked in a live notebook, and in static mode
show each part in turn.

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

__all__ = ["STATIC_ENV", "Layout", "StaticNote", "column", "row", "show", "static_figure", "static_views"]

#: The environment variable that turns static snapshots on (``1``, ``true``, ``yes`` or ``on``).
STATIC_ENV = "CMAL_WIDGETS_STATIC"
STATIC_NOTE = ("<p style='font-size:12px;color:#555'><em>Static snapshot of an interactive view, taken when the "
               "cell ran; in Jupyter its controls are live.</em></p>")


class View(Protocol):
    widget: Any

    def static_parts(self) -> list[Any]: ...


def static_views() -> bool:
    """True when views should display static snapshots (environment variable ``CMAL_WIDGETS_STATIC=1``)."""
    return os.environ.get(STATIC_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


class StaticNote:
    """The one-line note above a static snapshot (an HTML display object)."""

    def _repr_html_(self) -> str:
        return STATIC_NOTE


def static_figure(figure: Any) -> Any:
    """A plain ``plotly.graph_objects.Figure`` copy of ``figure`` (a ``FigureWidget`` or a ``Figure``)."""
    import plotly.graph_objects as go

    return go.Figure(figure.to_dict())


def show(view: View) -> None:
    """Display ``view``: its widget in a live notebook, its static parts when :func:`static_views` is on."""
    from IPython.display import display

    if static_views():
        display(StaticNote(), *view.static_parts())
    else:
        display(view.widget)


class Layout:
    """Views arranged in a row or a column (see :func:`row`, :func:`column`)."""

    def __init__(self, views: tuple[View, ...], *, horizontal: bool) -> None:
        import ipywidgets as w

        if not views:
            raise ValueError("row()/column() need at least one view, e.g. row(left_explorer, right_explorer)")
        for v in views:
            if not hasattr(v, "widget") or not hasattr(v, "static_parts"):
                raise TypeError(f"row()/column() take cmal_widgets views (or other rows/columns), not "
                                f"{type(v).__name__}")
        self.views = views
        self.widget = (w.HBox if horizontal else w.VBox)([v.widget for v in views])

    def static_parts(self) -> list[Any]:
        return [part for v in self.views for part in v.static_parts()]

    def _ipython_display_(self) -> None:
        show(self)


def row(*views: View) -> Layout:
    """Views side by side: ``display(row(left, right))`` (in static mode, one after the other)."""
    return Layout(views, horizontal=True)


def column(*views: View) -> Layout:
    """Views stacked: ``display(column(controls, row(left, right)))``."""
    return Layout(views, horizontal=False)
