"""Static mode (CMAL_WIDGETS_STATIC=1, set by the docs build): every view displays a snapshot, never a widget.

A page of the documentation site has no kernel, so a widget output would show as the text ``VBox(...)``. These
tests display each view as a kernel would and read the MIME bundles it publishes.
"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from cmal.labels import LabelStore
from cmal.strategies import ClusterMargin, PoolState
from cmal_widgets import (
    ClusterBrowser,
    ClusterBrowserModel,
    Explorer,
    ExplorerModel,
    LabelingModel,
    LabelingWidget,
    SelectionControls,
    SelectionModel,
    TrainingMonitor,
    column,
    row,
)
from cmal_widgets.static import STATIC_ENV, static_views

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _published(view) -> list[dict]:
    import plotly.io as pio

    InteractiveShell.instance()  # display() publishes through the shell, as in a kernel
    renderer, pio.renderers.default = pio.renderers.default, "plotly_mimetype"  # what JupyterLab uses
    try:
        with capture_output() as cap:
            view._ipython_display_()
    finally:
        pio.renderers.default = renderer
    return [o.data for o in cap.outputs]


@pytest.fixture
def views(digits_pool, tmp_path):
    tree = digits_pool["tree"]
    clusters = tree.cut(tree.epsilon_for_clusters(40))
    explorer = Explorer(
        ExplorerModel(xy=digits_pool["xy"], labels=digits_pool["y"], clusters=clusters, images=digits_pool["images"])
    )
    explorer.model.select([3, 5, 8])
    selection = SelectionModel(
        tree,
        digits_pool["probs"],
        labeled=np.arange(100),
        k_t=20,
        k_m=60,
        epsilon=float(tree.epsilon_for_clusters(40)),
        strategy="cluster-margin",
        random_state=0,
    )
    controls = SelectionControls(selection, [explorer])
    controls.select()
    state = PoolState.create(probs=digits_pool["probs"], clusters=clusters, labeled=np.arange(100))
    plan = ClusterMargin(k_m=60, random_state=0).explain(state, 20)
    browser = ClusterBrowser(
        ClusterBrowserModel(clusters, images=digits_pool["images"], labels=digits_pool["y"], plan=plan)
    )
    store = LabelStore.create(tmp_path / "labels.json", batch=[30, 4, 17], classes=[str(d) for d in range(10)])
    labeling = LabelingWidget(LabelingModel(store, images=digits_pool["images"]))
    labeling.model.assign(7)
    monitor = TrainingMonitor()
    monitor.on_epoch({"strategy": "margin", "seed": 0, "round": 1, "epoch": 1, "loss": 0.9, "accuracy": 0.7})
    monitor.on_round({"strategy": "margin", "seed": 0, "round": 0, "n_labeled": 100, "accuracy": 0.8})
    return {"explorer": explorer, "controls": controls, "browser": browser, "labeling": labeling, "monitor": monitor}


def test_live_mode_displays_the_widget(views, monkeypatch):
    monkeypatch.delenv(STATIC_ENV, raising=False)
    assert not static_views()
    for name, view in views.items():
        out = _published(view)
        assert len(out) == 1 and WIDGET_MIME in out[0], name


FIGURE = 'class="plotly-graph-div"'


@pytest.mark.parametrize(
    "name,figures", [("explorer", 1), ("controls", 1), ("browser", 0), ("labeling", 0), ("monitor", 3)]
)
def test_static_mode_shows_one_html_snapshot_never_a_widget(views, monkeypatch, name, figures):
    monkeypatch.setenv(STATIC_ENV, "1")
    out = _published(views[name])
    assert not any(WIDGET_MIME in o for o in out), name
    html = out[-1]["text/html"]  # an empty placeholder, then the snapshot (same display id)
    assert "static snapshot" in html
    assert html.count(FIGURE) == figures
    assert "Plotly.newPlot" in html if figures else "Plotly" not in html
    assert "plotly.js v" not in html  # the page loads plotly.js once; a snapshot does not carry it
    if name == "explorer":  # every point on the map, its legend, and the selection grid
        assert "colour by <b>label</b>" in html and "selected: 3" in html
        data = json.loads(re.search(r"Plotly.newPlot\(\s*\"[^\"]+\",\s*(\[.*?\]),\s*\{", html, re.S).group(1))
        x = data[0]["x"]  # plotly 6 ships arrays as base64 typed arrays
        n = len(np.frombuffer(base64.b64decode(x["bdata"]), x["dtype"])) if isinstance(x, dict) else len(x)
        assert n == views["explorer"].model.n
    if name == "controls":
        assert "cluster-margin" in html and "k_t = 20" in html and "Select batch" in html
    if name == "browser":
        assert html.count("<tr>") > 5
    if name == "labeling":
        assert html.count("<img") == 3 and html.count("<button disabled>") == 10 + 2
    if name == "monitor":
        assert "accuracy 80.00%" in html


def test_a_snapshot_is_redrawn_after_a_later_cell_changes_the_view(views, monkeypatch):
    from cmal_widgets import static

    monkeypatch.setenv(STATIC_ENV, "1")
    monkeypatch.setattr(static, "_snapshots", [])
    explorer = views["explorer"]
    first = _published(explorer)[-1]["text/html"]
    assert "selected: 3" in first
    InteractiveShell.instance()
    with capture_output() as cap:
        assert static.refresh_snapshots() == 0  # nothing changed: nothing is sent again
        explorer.model.select([1, 2, 3, 4, 5])  # a later cell selects more points
        assert static.refresh_snapshots() == 1
    updated = [o.data["text/html"] for o in cap.outputs]
    assert len(updated) == 1 and "selected: 5" in updated[0]


def test_rows_and_columns_nest_and_refuse_other_objects(views, monkeypatch):
    layout = column(views["controls"], row(views["explorer"], views["browser"]))
    monkeypatch.delenv(STATIC_ENV, raising=False)
    assert WIDGET_MIME in _published(layout)[0]
    monkeypatch.setenv(STATIC_ENV, "1")
    html = _published(layout)[-1]["text/html"]
    assert html.count(FIGURE) == 2 and html.count("static snapshot") == 1  # one note per display
    assert "display:flex" in html  # the row side by side
    with pytest.raises(TypeError, match="row\\(\\)/column\\(\\) take cmal_widgets views"):
        row(views["explorer"], "not a view")
    with pytest.raises(ValueError, match="at least one view"):
        column()


# ---------------------------------------------------------------- live mode: the fallback next to the widget
FALLBACK = "this front end shows no widgets"


@pytest.mark.parametrize(
    "name,figures", [("explorer", 1), ("controls", 1), ("browser", 0), ("labeling", 0), ("monitor", 3)]
)
def test_live_mode_publishes_the_widget_with_a_static_fallback(views, monkeypatch, name, figures):
    """One output: the widget for front ends with a widget manager, HTML and text for the others."""
    monkeypatch.delenv(STATIC_ENV, raising=False)
    out = _published(views[name])
    assert len(out) == 1 and set(out[0]) == {WIDGET_MIME, "text/html", "text/plain"}, name
    html = out[0]["text/html"]
    assert FALLBACK in html and "static snapshot" in html
    assert html.count(FIGURE) == figures
    assert "plotly.js v" not in html  # never inlined: the loader fetches it once per page where it is missing
    assert html.count("cmal-figure-placeholder") == figures  # what a page without scripts shows instead
    assert ("cdn.plot.ly/plotly-" in html) == bool(figures)
    assert out[0]["text/plain"].startswith(f"<cmal_widgets {type(views[name]).__name__}")
    assert "VBox(" not in out[0]["text/plain"]


def test_the_fallback_is_small_for_large_maps(monkeypatch):
    """A 20,000-point map keeps 2,000 points in the fallback, says so, and stays well under a megabyte."""
    from cmal_widgets.static import FALLBACK_MAX_POINTS

    monkeypatch.delenv(STATIC_ENV, raising=False)
    rng = np.random.default_rng(0)
    explorer = Explorer(ExplorerModel(xy=rng.normal(size=(20_000, 2)), labels=rng.integers(0, 10, 20_000)))
    explorer.model.set_highlight(candidates=np.arange(30), batch=np.arange(10))
    html = _published(explorer)[0]["text/html"]
    assert f"{FALLBACK_MAX_POINTS:,} of the 20,000 points of 'pool' drawn in this snapshot" in html
    data = json.loads(re.search(r"Plotly.newPlot\(\s*\"[^\"]+\",\s*(\[.*?\]),\s*\{", html, re.S).group(1))
    sizes = []
    for trace in data:
        x = trace["x"]
        sizes.append(len(np.frombuffer(base64.b64decode(x["bdata"]), x["dtype"])) if isinstance(x, dict) else len(x))
    assert sizes == [FALLBACK_MAX_POINTS, 30, 10]  # the highlights are small: kept whole
    assert len(data[0]["hovertext"]) == FALLBACK_MAX_POINTS  # every per-point array thinned alike
    assert len(html) < 400_000


def test_show_without_fallback_publishes_the_widget_alone(views, monkeypatch):
    from cmal_widgets.static import show

    monkeypatch.delenv(STATIC_ENV, raising=False)
    InteractiveShell.instance()
    with capture_output() as cap:
        show(views["labeling"], fallback=False)
    assert len(cap.outputs) == 1 and WIDGET_MIME in cap.outputs[0].data
    assert "text/html" not in cap.outputs[0].data


def test_nbconvert_shows_the_fallback_unless_the_widget_state_was_saved(views, monkeypatch):
    """What GitHub, nbviewer and ``jupyter nbconvert`` do with a saved notebook: without widget state (JupyterLab's
    and Notebook 7's default) the snapshot; with it (``nbconvert --execute`` stores it) the widget."""
    import nbconvert
    import nbformat

    monkeypatch.delenv(STATIC_ENV, raising=False)
    bundle = _published(column(views["controls"], views["explorer"]))[0]
    output = nbformat.v4.new_output("display_data", data=bundle)
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("column(controls, explorer)", outputs=[output])])
    html, _ = nbconvert.HTMLExporter(template_name="lab").from_notebook_node(book)
    assert FALLBACK in html and html.count(FIGURE) == 2
    assert f'type="{WIDGET_MIME}"' not in html and "VBox(" not in html
    model_id = bundle[WIDGET_MIME]["model_id"]
    book.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {"version_major": 2, "version_minor": 0, "state": {model_id: {}}}
    }
    html, _ = nbconvert.HTMLExporter(template_name="lab").from_notebook_node(book)
    assert f'type="{WIDGET_MIME}"' in html and FALLBACK not in html


def test_figure_widget_state_follows_the_figure_for_front_ends_that_connect_late(views, monkeypatch):
    """Voila builds widgets from the kernel's state after the notebook ran: each FigureWidget's stored traces
    must be what the figure now shows, not what it held when created, after display and after later cells."""
    from cmal_widgets import static

    monkeypatch.delenv(STATIC_ENV, raising=False)
    explorer = Explorer(ExplorerModel(xy=np.random.default_rng(1).normal(size=(50, 2)), labels=np.arange(50) % 5))
    (figure,) = static._figure_widgets(explorer.widget)

    def stored_sizes() -> list[int]:
        return [0 if t.get("x") is None else len(t["x"]) for t in figure._trait_values["_widget_data"]]

    _published(explorer)
    assert stored_sizes() == [50, 0, 0]
    explorer.model.set_highlight(candidates=[1, 2, 3], batch=[2])  # a later cell
    static._after_cell_live()
    assert stored_sizes() == [50, 3, 1]
    assert static.sync_figure_state(explorer.widget) == 0  # unchanged since: nothing copied again
    assert figure.get_state()["_widget_data"]  # still serialisable for the front end
