from __future__ import annotations

import numpy as np
import pytest

from cmal_widgets.explorer import PALETTE, STATUS_COLORS, Explorer, ExplorerModel


@pytest.fixture
def model(explorer_model):
    return explorer_model


def test_colours_per_mode(model):
    c = model.colors()
    assert c["categorical"] and c["color"][0] == PALETTE[model.labels[0]]
    assert set(c["legend"]) == {str(i) for i in range(10)}
    model.set_color_by("margin")
    c = model.colors()
    assert not c["categorical"]
    np.testing.assert_allclose(c["color"], model.margins)
    model.set_color_by("cluster")
    assert model.colors()["color"][5] == PALETTE[model.clusters[5] % len(PALETTE)]
    model.set_highlight(labeled=[0], candidates=[1, 2], batch=[2])
    model.set_color_by("status")
    assert model.colors()["color"][:4].tolist() == [
        STATUS_COLORS[s] for s in ("labeled", "candidate", "batch", "other")
    ]


def test_color_by_needs_its_data(digits_pool):
    m = ExplorerModel(xy=digits_pool["xy"], labels=digits_pool["y"])
    with pytest.raises(ValueError, match="needs margins"):
        m.set_color_by("margin")
    with pytest.raises(ValueError, match="color_by must be one of"):
        m.set_color_by("size")


def test_selection_events_map_to_pool_indices(model):
    events = []
    model.observe(events.append)
    assert model.on_plotly_selection([3, 1, 3]).tolist() == [1, 3]
    assert events == ["selection"]
    with pytest.raises(ValueError, match="not drawn"):
        model.on_plotly_selection([10_000])


def test_subsampling_keeps_highlighted_points(rng):
    m = ExplorerModel(xy=rng.normal(size=(5000, 2)), max_points=1000, labels=np.zeros(5000, int))
    m.set_highlight(batch=[4999, 4998], candidates=np.arange(4990, 5000))
    assert 1000 <= m.display_index.size <= 1010
    assert {4998, 4999} <= set(m.display_index.tolist())
    # Selection in a subsampled view refers to drawn positions.
    pos = np.searchsorted(m.display_index, 4999)
    assert m.on_plotly_selection([pos]).tolist() == [4999]


def test_hover_text_and_point_info(model):
    text = model.hover_text()
    assert len(text) == model.n and text[0].startswith("#0 | label ")
    info = model.point_info(7)
    assert info["label"] == model.labels[7] and "margin" in info and info["status"] == "other"
    with pytest.raises(ValueError, match="index"):
        model.point_info(-1)


def test_bad_model_input(rng):
    with pytest.raises(ValueError, match="2 columns"):
        ExplorerModel(xy=rng.normal(size=(5, 3)))
    with pytest.raises(ValueError, match="labels has 4 entries"):
        ExplorerModel(xy=rng.normal(size=(5, 2)), labels=np.zeros(4, int))


def test_rendered_explorer_follows_the_model(model):
    e = Explorer(model)
    pool, cand, batch = e.plot.data
    assert pool.type == "scattergl" and len(pool.x) == model.n
    model.set_highlight(candidates=[1, 2, 3], batch=[2])
    assert len(cand.x) == 3 and len(batch.x) == 1 and batch.x[0] == pytest.approx(model.xy[2, 0])
    e.color_dropdown.value = "margin"
    assert model.color_by == "margin" and pool.marker.showscale
    # ...and the other way: a notebook colouring through the model moves the view's dropdown too.
    model.set_color_by("label")
    assert e.color_dropdown.value == "label" and model.color_by == "label"
    model.set_color_by("margin")
    assert e.color_dropdown.value == "margin"
    # Simulated lasso: plotly calls the trace's selection handlers with a Points object.
    from plotly.callbacks import Points

    pool._dispatch_on_selection(Points(point_inds=[0, 5, 9], trace_name="pool", trace_index=0), None)
    assert model.selected.tolist() == [0, 5, 9] and e.selection_label.value == "selected: 3"
    assert e.grid.value.count("<img") == 3
    # Fallback path: the selection trait synced from the browser, read by a button.
    pool.selectedpoints = [2, 4]
    e.use_selection_button.click()
    assert model.selected.tolist() == [2, 4]
    e.clear_button.click()
    assert model.selected.size == 0
    e._hover([3])
    assert "<img" in e.hover_panel.value and "<b>label</b>" in e.hover_panel.value
