from __future__ import annotations

import numpy as np
import pytest

from cmal.strategies import ClusterMargin, PoolState
from cmal_widgets.browser import ClusterBrowser, ClusterBrowserModel
from cmal_widgets.monitor import TrainingMonitor, TrainingMonitorModel, learning_curve_figure


@pytest.fixture
def plan_and_clusters(digits_pool):
    tree = digits_pool["tree"]
    clusters = tree.cut(tree.epsilon_for_clusters(40))
    state = PoolState.create(probs=digits_pool["probs"], clusters=clusters, labeled=np.arange(100))
    return ClusterMargin(k_m=60, random_state=0).explain(state, 30), clusters


def test_rows_follow_the_round_robin_order(plan_and_clusters, digits_pool):
    plan, clusters = plan_and_clusters
    m = ClusterBrowserModel(clusters, images=digits_pool["images"], labels=digits_pool["y"], plan=plan)
    rows = m.rows()
    assert [r["cluster"] for r in rows] == plan.cluster_order.tolist()
    assert [r["candidates"] for r in rows] == sorted(r["candidates"] for r in rows)
    assert sum(r["picked"] for r in rows) == 30
    assert sorted(i for r in rows for i in r["batch"]) == sorted(plan.indices.tolist())
    seq = m.pick_sequence()
    assert [s["index"] for s in seq] == plan.indices.tolist() and seq[0]["pass"] == 0
    html = m.html(limit=5)
    assert html.count("<tr>") == 6 and "outline:2px solid" in html


def test_rows_without_plan_sorted_by_size(plan_and_clusters, digits_pool):
    _, clusters = plan_and_clusters
    m = ClusterBrowserModel(clusters, labels=digits_pool["y"])
    asc = [r["size"] for r in m.rows()]
    assert asc == sorted(asc) and len(asc) == 40
    desc = [r["size"] for r in m.rows(order="descending")]
    assert desc == sorted(asc, reverse=True)
    assert all(0 < r["purity"] <= 1 for r in m.rows())
    with pytest.raises(ValueError, match="cluster must be in"):
        m.members(99)


def test_browser_widget_toggles(plan_and_clusters, digits_pool):
    plan, clusters = plan_and_clusters
    b = ClusterBrowser(ClusterBrowserModel(clusters, images=digits_pool["images"]), limit=5)
    assert b.table.value.count("<tr>") == 6
    b.order.value = "descending"
    first_size = int(b.table.value.split("<td>")[3].split("<")[0])
    assert first_size == np.bincount(clusters).max()
    b.show_plan(plan)
    assert b.order.disabled and "picked" in b.table.value


def test_monitor_collects_epochs_and_rounds():
    m = TrainingMonitorModel()
    for epoch in range(3):
        m.on_epoch({"strategy": "margin", "seed": 0, "round": 1, "epoch": epoch, "loss": 1.0 / (epoch + 1)})
    assert m.epoch_series() == {"loss": [1.0, 0.5, 1 / 3]}
    m.on_epoch({"strategy": "margin", "seed": 0, "round": 2, "epoch": 0, "loss": 0.4})
    assert m.epoch_series() == {"loss": [0.4]}  # a new round starts a new epoch log
    for seed, acc in ((0, 0.8), (1, 0.9)):
        m.on_round({"strategy": "margin", "seed": seed, "round": 1, "n_labeled": 200, "accuracy": acc})
    c = m.curves()["margin"]
    assert c["n_labeled"] == [200] and c["accuracy_mean"] == [pytest.approx(0.85)]
    assert c["accuracy_se"] == [pytest.approx(0.05)]


def test_monitor_widget_and_learning_curves():
    mon = TrainingMonitor()
    mon.on_epoch({"strategy": None, "seed": 0, "round": 0, "epoch": 0, "loss": 2.0, "accuracy": 0.3})
    mon.on_epoch({"strategy": None, "seed": 0, "round": 0, "epoch": 1, "loss": 1.0, "accuracy": 0.6})
    assert [t.name for t in mon.epoch_figure.data] == ["loss", "accuracy"]
    assert list(mon.epoch_figure.data[0].y) == [2.0, 1.0] and "seed model" in mon.label.value
    results = {
        "runs": [
            {
                "strategy": s,
                "seed": 0,
                "rounds": [
                    {"round": 0, "n_labeled": 100, "accuracy": 0.5},
                    {"round": 1, "n_labeled": 200, "accuracy": a},
                ],
            }
            for s, a in (("cluster-margin", 0.9), ("random", 0.7))
        ]
    }
    mon.model.load_results(results)
    names = [t.name for t in mon.curve_figure.data if t.showlegend is not False]
    assert names == ["cluster-margin", "random"]
    fig = learning_curve_figure(mon.model.curves())
    assert len(fig.data) == 4 and list(fig.data[1].y) == [0.5, 0.9]


def test_monitor_draws_the_stopping_signals_and_says_when_a_rule_fired():
    mon = TrainingMonitor()
    rounds = [{"strategy": "cluster-margin", "seed": s, "round": 0, "n_labeled": 20, "accuracy": 0.5} for s in (0, 1)]
    for s, (k1, k2) in enumerate(((0.8, 0.95), (0.6, 0.99))):
        rounds += [
            {
                "strategy": "cluster-margin",
                "seed": s,
                "round": 1,
                "n_labeled": 40,
                "accuracy": 0.7,
                "stop_agreement": k1,
                "batch_mean_margin": 0.2,
            },
            {
                "strategy": "cluster-margin",
                "seed": s,
                "round": 2,
                "n_labeled": 60,
                "accuracy": 0.8,
                "stop_agreement": k2,
                "batch_mean_margin": 0.1,
                **({"stop_reason": "kappa held"} if s else {}),
            },
        ]
    for r in rounds:
        mon.on_round(r)
    sig = mon.model.stop_signals()["cluster-margin"]
    # Round 0 has no signal and is left out; the others are means over the two seeds.
    assert sig["n_labeled"] == [40.0, 60.0]
    assert sig["stop_agreement"] == [pytest.approx(0.7), pytest.approx(0.97)]
    assert sig["batch_mean_margin"] == [pytest.approx(0.2), pytest.approx(0.1)]
    assert [t.name for t in mon.signal_figure.data] == ["cluster-margin kappa", "cluster-margin margin"]
    assert list(mon.signal_figure.data[0].y) == [pytest.approx(0.7), pytest.approx(0.97)]
    assert "kappa 0.990" in mon.label.value and "STOP: kappa held" in mon.label.value
    assert mon.model.stops() == [
        {"strategy": "cluster-margin", "seed": 1, "round": 2, "n_labeled": 60, "stop_reason": "kappa held"}
    ]
    assert len(mon.static_parts()) == 4
