"""The explorer's two backends (plotly, jupyter-scatter) over one model, and its plain-figure fallback.

No browser: the views are driven from Python, and what the browser would send (a lasso, a hover) is fed to the
widget as the front end's messages would be.
"""

from __future__ import annotations

import warnings
from importlib import metadata

import numpy as np
import plotly.graph_objects as go
import pytest

from cmal_widgets.explorer import (
    PALETTE,
    SCATTER_FROM,
    STATIC_MAX_POINTS,
    Explorer,
    ExplorerModel,
    choose_backend,
)
from cmal_widgets.explorer_scatter import (
    ARRAY_TRAITS,
    JSCATTER_STATE,
    MAP_TRAITS,
    _compose_esm,
    _rgba,
    scatter_unavailable_reason,
    scatter_widget_class,
)


@pytest.fixture
def model(explorer_model):
    return explorer_model


def _sent(widget) -> list[str]:
    """Record the names of the traits ``widget`` sends to the front end from now on."""
    sent: list[str] = []
    original = widget.send_state

    def send_state(key=None):
        sent.extend([key] if isinstance(key, str) else list(key or widget.keys))
        return original(key)

    widget.send_state = send_state
    return sent


def _browser_sends(widget, **state) -> None:
    """What ipywidgets does with a front end's update: arrays arrive as buffers in jupyter-scatter's format."""
    for name, value in state.items():
        if isinstance(value, np.ndarray):
            state[name] = {"view": memoryview(value), "dtype": str(value.dtype), "shape": list(value.shape)}
    widget.set_state(state)


def _plotly_colors(trace, palette) -> list[str]:
    """The colour plotly draws for each point of the pool trace (palette codes on a stepped colour scale)."""
    k = len(palette)
    scale = trace.marker.colorscale
    assert trace.marker.cmin == 0 and trace.marker.cmax == k
    codes = np.floor(np.asarray(trace.marker.color)).astype(int)
    return [scale[2 * c][1] for c in codes]


# ------------------------------------------------------------------------------------------------ backend choice
def test_auto_picks_plotly_below_the_threshold_and_scatter_from_it(rng):
    assert choose_backend("auto", SCATTER_FROM - 1) == "plotly"
    assert choose_backend("auto", SCATTER_FROM) == "scatter"
    assert choose_backend("plotly", 10**7) == "plotly" and choose_backend("scatter", 10) == "scatter"
    big = ExplorerModel(xy=rng.normal(size=(SCATTER_FROM, 2)), labels=np.arange(SCATTER_FROM) % 7)
    e = Explorer(big)
    assert e.backend == "scatter"
    assert e.plot.points.shape == (SCATTER_FROM, 3)  # every point, no subsample
    small = Explorer(ExplorerModel(xy=rng.normal(size=(50, 2)), labels=np.arange(50) % 3))
    assert small.backend == "plotly" and isinstance(small.plot, go.FigureWidget)


def test_bad_backend_names_the_argument_and_the_choices(model):
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'plotly', 'scatter'\), got 'webgl'"):
        Explorer(model, backend="webgl")


def test_missing_jupyter_scatter_says_how_to_install_it(model, monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    assert scatter_unavailable_reason() == "jupyter-scatter is not installed"
    with pytest.raises(ImportError, match=r'backend="scatter".*pip install "cmal\[widgets\]"'):
        Explorer(model, backend="scatter")
    # "auto" at scale falls back to plotly (which subsamples) and says why.
    with pytest.warns(UserWarning, match="falls back to plotly"):
        assert choose_backend("auto", 10**6) == "plotly"


def test_the_front_end_is_jupyter_scatters_bundle_plus_the_explorers_layer():
    esm = scatter_widget_class()._esm
    assert esm.count("export default { render: cmalRender }") == 1
    assert "export {" not in esm[-20_000:].split("cmalRender")[-1]  # jupyter-scatter's own export is gone
    layer = esm[esm.index("// ---- cmal_widgets") : esm.index("export default { render: cmalRender }")]
    assert "https://" not in layer and "import(" not in layer  # nothing fetched at run time
    with pytest.raises(RuntimeError, match=r"jupyter-scatter>=1.0,<2"):
        _compose_esm("var x = 1;")


def test_widget_traits_match_jupyter_scatters():
    """The widget runs jupyter-scatter's front end without its Python package: its traits must be the ones that
    front end reads (names of the installed jupyter-scatter 1.x)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from jscatter.widget import JupyterScatter
    theirs = {name for name in JupyterScatter.class_traits(sync=True) if not name.startswith("_")}
    ours = {name for name in scatter_widget_class().class_traits(sync=True) if not name.startswith("_")}
    extra = {"cmal_color", "cmal_candidates", "cmal_batch", "cmal_marks_style"}
    widget_base = {"layout", "tabbable", "tooltip"}  # ipywidgets' DOMWidget, on both sides
    assert ours - extra == theirs
    assert set(JSCATTER_STATE) | set(ARRAY_TRAITS) | set(MAP_TRAITS) == (theirs | extra) - widget_base


# ------------------------------------------------------------------------------------- one model, two backends
def test_colours_are_the_same_in_both_backends(model):
    plotly, scatter = Explorer(model, backend="plotly"), Explorer(model, backend="scatter")
    for color_by in ("label", "cluster", "status"):
        model.set_highlight(labeled=[0, 1], candidates=[2, 3, 4], batch=[4])
        model.set_color_by(color_by)
        expected = model.colors()["color"].tolist()
        assert _plotly_colors(plotly.plot.data[0], PALETTE if color_by != "status" else range(4)) == expected
        w = scatter.plot
        codes = w.points[:, 2] if w.cmal_color is None else w.cmal_color
        drawn = [w.color[int(c)] for c in codes]
        assert drawn == [_rgba(c) for c in expected], color_by
        assert w.color_scale == "categorical"
    model.set_color_by("margin")
    np.testing.assert_allclose(plotly.plot.data[0].marker.color, model.margins)
    lo, hi = model.margins.min(), model.margins.max()
    np.testing.assert_allclose(scatter.plot.cmal_color, (model.margins - lo) / (hi - lo), atol=1e-6)
    assert scatter.plot.color_scale == "linear" and scatter.plot.color_domain == [lo, hi]
    assert len(scatter.plot.color) == 256 and plotly.plot.data[0].marker.colorscale[0][1] == "#440154"
    assert scatter.legend.value == plotly._legend_html()  # jupyter-scatter has no legend: the explorer's line


def test_scatter_highlights_send_indices_not_points(model):
    e = Explorer(model, backend="scatter")
    points = e.plot.points
    sent = _sent(e.plot)
    model.set_highlight(labeled=[0], candidates=[5, 6, 7], batch=[6])
    assert e.plot.cmal_candidates.tolist() == [5, 6, 7] and e.plot.cmal_batch.tolist() == [6]
    assert e.plot.cmal_candidates.dtype == np.uint32
    assert set(sent) == {"cmal_candidates", "cmal_batch"}  # no coordinates, no colours
    assert e.plot.points is points
    sent.clear()
    model.set_color_by("cluster")  # a new colouring: one float32 a point, and the palette
    assert "points" not in sent and "cmal_color" in sent
    assert e.plot.cmal_color.dtype == np.float32 and e.plot.cmal_color.shape == (model.n,)


def test_scatter_lasso_selects_in_the_model_and_code_selects_in_the_plot(model):
    e = Explorer(model, backend="scatter")
    events = []
    model.observe(events.append)
    _browser_sends(e.plot, selection=np.array([9, 3, 5], dtype=np.uint32))  # a lasso, in the browser's order
    assert model.selected.tolist() == [3, 5, 9] and events == ["selection"]
    assert e.selection_label.value == "selected: 3" and e.grid.value.count("<img") == 3
    sent = _sent(e.plot)
    model.select([3, 5, 9])  # the same set from code: nothing goes back to the browser
    assert "selection" not in sent
    model.select([1, 2])  # ... a new one is outlined in the plot
    assert e.plot.selection.tolist() == [1, 2] and "selection" in sent
    assert e.use_plot_selection().tolist() == [1, 2]
    e.clear_button.click()
    assert model.selected.size == 0 and e.plot.selection.size == 0


def test_scatter_hover_fills_the_panel(model):
    e = Explorer(model, backend="scatter")
    _browser_sends(e.plot, hovering=7)
    html = e.hover_panel.value
    assert "<img" in html and f"<b>label</b> {model.labels[7]}" in html and "<b>index</b> 7" in html
    _browser_sends(e.plot, hovering=None)  # the pointer left: the last point stays
    assert e.hover_panel.value == html


def test_scatter_keeps_the_maps_shape_in_view_coordinates(rng):
    xy = np.column_stack([rng.uniform(0, 10, 1000), rng.uniform(0, 2, 1000)])
    w = Explorer(ExplorerModel(xy=xy, labels=np.zeros(1000, int)), backend="scatter").plot
    x, y = w.points[:, 0], w.points[:, 1]
    assert x.min() == pytest.approx(-1, abs=1e-6) and x.max() == pytest.approx(1, abs=1e-6)
    assert (y.max() - y.min()) == pytest.approx((x.max() - x.min()) * np.ptp(xy[:, 1]) / np.ptp(xy[:, 0]), rel=1e-5)
    assert w.x_scale_domain[1] - w.x_scale_domain[0] == pytest.approx(w.y_scale_domain[1] - w.y_scale_domain[0])


# --------------------------------------------------------------------------------------- the plain-figure fallback
@pytest.mark.parametrize("backend", ["plotly", "scatter"])
def test_figure_is_a_plain_plotly_figure_of_the_current_state(model, backend):
    e = Explorer(model, backend=backend)
    model.set_highlight(candidates=[1, 2, 3], batch=[2])
    fig = e.figure()
    assert type(fig) is go.Figure
    assert [t.type for t in fig.data] == ["scattergl"] * 3
    assert [t.name for t in fig.data] == ["pool", "candidates (k_m)", "batch"]
    assert [len(t.x) for t in fig.data] == [model.n, 3, 1]
    assert fig.data[2].x[0] == pytest.approx(model.xy[2, 0])
    assert len(fig.data[0].hovertext) == model.n and fig.layout.dragmode == "lasso"
    assert fig.to_dict()  # serialisable, e.g. by nbconvert


def test_figure_and_static_snapshot_of_a_large_scatter_map_subsample(rng):
    n = 150_000
    m = ExplorerModel(xy=rng.normal(size=(n, 2)), labels=np.arange(n) % 10)
    e = Explorer(m)
    m.set_highlight(candidates=np.arange(n - 50, n), batch=[n - 1])
    assert e.backend == "scatter"
    # The plotly backend's seeded subsample, every highlighted point kept (some may be in the random part).
    assert m.max_points <= len(e.figure().data[0].x) <= m.max_points + 50
    pool = e.figure(max_points=1_000).data[0]
    assert 1_000 <= len(pool.x) <= 1_050 and pool.x[-1] == pytest.approx(m.xy[-1, 0])
    assert set(np.arange(n - 50, n)) <= set(m.display_subset(1_000).tolist())
    head, fig = e.static_parts()
    assert isinstance(fig, go.Figure) and STATIC_MAX_POINTS <= len(fig.data[0].x) <= STATIC_MAX_POINTS + 50
    assert f"subsample of {STATIC_MAX_POINTS:,} of the {n:,} points" in head
