"""Static mode (CMAL_WIDGETS_STATIC=1, set by the docs build): every view displays a snapshot, never a widget.

A page of the documentation site has no kernel, so a widget output would show as the text ``VBox(...)``. These
tests display each view as a kernel would and read the MIME bundles it publishes.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from cmal.labels import LabelStore
from cmal.strategies import ClusterMargin, PoolState
from cmal_widgets import (ClusterBrowser, ClusterBrowserModel, Explorer, ExplorerModel, LabelingModel,
                          LabelingWidget, SelectionControls, SelectionModel, TrainingMonitor, column, row)
from cmal_widgets.static import STATIC_ENV, static_views

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _published(view) -> list[dict]:
    import plotly.io as pio

    InteractiveShell.instance()          # display() publishes through the shell, as in a kernel
    renderer, pio.renderers.default = pio.renderers.default, "plotly_mimetype"   # what JupyterLab uses
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
    explorer = Explorer(ExplorerModel(xy=digits_pool["xy"], labels=digits_pool["y"], clusters=clusters,
                                      images=digits_pool["images"]))
    explorer.model.select([3, 5, 8])
    selection = SelectionModel(tree, digits_pool["probs"], labeled=np.arange(100), k_t=20, k_m=60,
                               epsilon=float(tree.epsilon_for_clusters(40)), strategy="cluster-margin",
                               random_state=0)
    controls = SelectionControls(selection, [explorer])
    controls.select()
    state = PoolState.create(probs=digits_pool["probs"], clusters=clusters, labeled=np.arange(100))
    plan = ClusterMargin(k_m=60, random_state=0).explain(state, 20)
    browser = ClusterBrowser(ClusterBrowserModel(clusters, images=digits_pool["images"], labels=digits_pool["y"],
                                                 plan=plan))
    store = LabelStore.create(tmp_path / "labels.json", batch=[30, 4, 17], classes=[str(d) for d in range(10)])
    labeling = LabelingWidget(LabelingModel(store, images=digits_pool["images"]))
    labeling.model.assign(7)
    monitor = TrainingMonitor()
    monitor.on_epoch({"strategy": "margin", "seed": 0, "round": 1, "epoch": 1, "loss": 0.9, "accuracy": 0.7})
    monitor.on_round({"strategy": "margin", "seed": 0, "round": 0, "n_labeled": 100, "accuracy": 0.8})
    return {"explorer": explorer, "controls": controls, "browser": browser, "labeling": labeling,
            "monitor": monitor}


def test_live_mode_displays_the_widget(views, monkeypatch):
    monkeypatch.delenv(STATIC_ENV, raising=False)
    assert not static_views()
    for name, view in views.items():
        out = _published(view)
        assert len(out) == 1 and WIDGET_MIME in out[0], name


@pytest.mark.parametrize("name,figures", [("explorer", 1), ("controls", 1), ("browser", 0), ("labeling", 0),
                                          ("monitor", 2)])
def test_static_mode_shows_figures_and_html_never_a_widget(views, monkeypatch, name, figures):
    monkeypatch.setenv(STATIC_ENV, "1")
    out = _published(views[name])
    assert not any(WIDGET_MIME in o for o in out), name
    assert "Static snapshot" in out[0]["text/html"]
    plotly = [o for o in out if "application/vnd.plotly.v1+json" in o]
    assert len(plotly) == figures, [list(o) for o in out]
    html = " ".join(o.get("text/html", "") for o in out)
    if name == "explorer":                     # the map holds every point, and the selection grid follows
        pool = plotly[0]["application/vnd.plotly.v1+json"]["data"][0]
        x = pool["x"]   # plotly 6 ships arrays as base64 typed arrays
        n = len(np.frombuffer(base64.b64decode(x["bdata"]), x["dtype"])) if isinstance(x, dict) else len(x)
        assert n == views["explorer"].model.n and "selected: 3" in html
    if name == "controls":
        assert "cluster-margin" in html and "k_t = 20" in html
    if name == "browser":
        assert html.count("<tr>") > 5
    if name == "labeling":
        assert html.count("<img") == 3 and "1 of 3" in html.replace("1/3", "1 of 3")
    if name == "monitor":
        assert "accuracy 80.00%" in html


def test_rows_and_columns_nest_and_refuse_other_objects(views, monkeypatch):
    layout = column(views["controls"], row(views["explorer"], views["browser"]))
    monkeypatch.delenv(STATIC_ENV, raising=False)
    assert WIDGET_MIME in _published(layout)[0]
    monkeypatch.setenv(STATIC_ENV, "1")
    out = _published(layout)
    assert sum("application/vnd.plotly.v1+json" in o for o in out) == 2
    assert sum("Static snapshot" in o.get("text/html", "") for o in out) == 1   # one note per display
    with pytest.raises(TypeError, match="row\\(\\)/column\\(\\) take cmal_widgets views"):
        row(views["explorer"], "not a view")
    with pytest.raises(ValueError, match="at least one view"):
        column()
