from __future__ import annotations

import numpy as np
import pytest

from cmal_widgets.controls import SelectionControls, SelectionModel
from cmal_widgets.explorer import Explorer, ExplorerModel


@pytest.fixture
def sel(digits_pool):
    return SelectionModel(
        digits_pool["tree"], digits_pool["probs"], labeled=np.arange(100), k_t=20, n_clusters=40, random_state=0
    )


def test_epsilon_recut_is_the_tree_cut(sel, digits_pool):
    tree = digits_pool["tree"]
    assert sel.n_clusters == 40
    events = []
    sel.observe(events.append)
    eps = tree.epsilon_for_clusters(100)
    labels = sel.set_epsilon(eps)
    np.testing.assert_array_equal(labels, tree.cut(eps))
    assert sel.n_clusters == 100 and sel.cluster_sizes().sum() == 600 and events == ["clusters"]
    lo, hi = sel.epsilon_range()
    assert 0 < lo < hi


def test_select_batch_per_strategy(sel):
    cm = sel.select_batch("cluster-margin")
    assert cm.indices.size == 20 and cm.candidates.size == 25 and cm.plan is not None
    assert set(cm.indices) <= set(cm.candidates) and not np.isin(cm.indices, np.arange(100)).any()
    m = sel.select_batch("margin")
    np.testing.assert_array_equal(np.sort(m.candidates), np.sort(m.indices))
    assert sel.select_batch("random").candidates.size == 0
    # Same settings, same batch (each click seeds the strategy with random_state).
    np.testing.assert_array_equal(sel.select_batch("cluster-margin").indices, cm.indices)
    with pytest.raises(ValueError, match="Unknown strategy"):
        sel.select_batch("nope")
    # A rule given by dotted path works here as in the CLI and RunConfig: a Cluster-Margin with that rule.
    dotted = sel.select_batch("cmal.strategies.rules:descending")
    assert dotted.indices.size == 20 and dotted.plan is not None and set(dotted.indices) <= set(dotted.candidates)


def test_bad_model_input(digits_pool):
    with pytest.raises(ValueError, match="HACTree"):
        SelectionModel(None, digits_pool["probs"])
    with pytest.raises(ValueError, match="rows but the tree"):
        SelectionModel(digits_pool["tree"], digits_pool["probs"][:10])
    with pytest.raises(ValueError, match="k_m"):
        SelectionModel(digits_pool["tree"], digits_pool["probs"], k_t=10, k_m=5)


def test_controls_drive_two_explorers_side_by_side(sel, digits_pool):
    left = Explorer(ExplorerModel(xy=digits_pool["xy"], labels=digits_pool["y"]))
    right = Explorer(ExplorerModel(xy=digits_pool["xy"], labels=digits_pool["y"]))
    c = SelectionControls(sel, [(left, "margin"), (right, "cluster-margin")])
    # Both views have their own strategy, so the dropdown could change nothing: it is disabled.
    assert c.strategy.disabled and not SelectionControls(sel, [left, (right, "margin")]).strategy.disabled
    c.button.click()
    assert left.model.batch.size == 20 and right.model.batch.size == 20
    assert right.model.candidates.size == 25
    assert c.status.value.startswith("batch: margin: 20 selected")
    # Cluster-Margin spreads its batch over at least as many clusters as Margin.
    clusters = sel.clusters
    assert np.unique(clusters[right.model.batch]).size >= np.unique(clusters[left.model.batch]).size
    # Sliders update the model; the epsilon slider re-cuts and re-colours linked explorers.
    c.k_t.value = 30
    assert sel.k_t == 30 and sel.k_m == 30 and c.k_m.value == 30
    old = sel.n_clusters
    c.epsilon.value = sel.epsilon * 3
    assert sel.n_clusters < old and str(sel.n_clusters) in c.cluster_info.value
    np.testing.assert_array_equal(right.model.clusters, sel.clusters)
    assert len(c.histogram.data[0].x) == sel.n_clusters
    c.strategy.value = "random"
    assert sel.strategy == "random"


def test_errors_show_in_the_status_label(sel):
    c = SelectionControls(sel)
    sel.k_m = 1
    c.button.click()
    assert c.status.value.startswith("error: k_m")


def test_graph_hac_tree_in_the_controls():
    """A kNN-graph tree built up to a number of clusters works with the epsilon slider within its range."""
    from cmal.graph_hac import graph_linkage_tree
    from cmal_widgets import SelectionModel

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    tree = graph_linkage_tree(x, k=15, target_clusters=30)
    probs = rng.dirichlet(np.ones(3), 300)
    model = SelectionModel(tree, probs, labeled=np.arange(10), k_t=10, n_clusters=30)
    assert model.n_clusters == 30
    lo, hi = model.epsilon_range()
    assert hi <= tree.max_epsilon
    model.set_epsilon(hi)
    assert model.select_batch("cluster-margin").indices.size == 10


def test_auto_k_m_checkbox(sel):
    c = SelectionControls(sel)
    c.auto_k_m.value = True
    assert sel.k_m == "auto" and c.k_m.disabled
    result = c.select()[0]
    assert result.plan.k_m >= 20 and result.plan.k_m_reason.startswith("auto")
    assert f"(k_m = {result.plan.k_m})" in c.status.value
    # Raising k_t above the slider keeps auto on (the slider follows, the model stays "auto").
    c.k_t.value = 40
    assert sel.k_m == "auto" and c.k_m.value == 40
    c.auto_k_m.value = False
    assert sel.k_m == 40 and not c.k_m.disabled
    assert SelectionModel(sel.tree, sel.probs, k_t=10, k_m="auto").k_m == "auto"
