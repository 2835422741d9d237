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
    "name,figures", [("explorer", 1), ("controls", 1), ("browser", 0), ("labeling", 0), ("monitor", 2)]
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
