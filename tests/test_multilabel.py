"""Multi-label targets: MNIST pairs, pooled AP, and a multi-label round end to end."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cmal.metrics import evaluate, mean_ap, pooled_ap


def test_pooled_ap_hand_computed():
    # Flattened: scores .9(+) .8(-) .4(+) .1(-): precision at the two positives 1 and 2/3 -> AP 5/6.
    y = np.array([[1, 0], [0, 1]])
    p = np.array([[0.9, 0.8], [0.1, 0.4]])
    assert pooled_ap(y, p) == pytest.approx(5 / 6)
    # Perfect ranking gives 1 whatever the scale of the scores.
    assert pooled_ap(y, np.array([[0.2, 0.1], [0.05, 0.3]])) == pytest.approx(1.0)


def test_pooled_and_mean_ap_match_scikit_learn(rng):
    y = (rng.uniform(size=(300, 7)) < 0.2).astype(int)
    p = np.clip(y * 0.3 + rng.uniform(size=y.shape) * 0.7, 0, 1)
    assert pooled_ap(y, p) == pytest.approx(average_precision_score(y.ravel(), p.ravel()))
    assert mean_ap(y, p) == pytest.approx(np.mean([average_precision_score(y[:, c], p[:, c]) for c in range(7)]))
    m = evaluate(y, p)
    assert set(m) == {"pooled_ap", "mean_ap", "accuracy"}


@pytest.mark.parametrize(
    "y, p, match",
    [
        (np.zeros((2, 2), int), np.zeros((2, 2)), "no positive"),
        (np.ones((2, 2)), np.zeros((2, 3)), "must both be"),
        (np.full((2, 2), 2), np.zeros((2, 2)), "0/1"),
    ],
)
def test_ap_bad_input(y, p, match):
    with pytest.raises(ValueError, match=match):
        pooled_ap(y, p)


def test_mnist_pairs_dataset():
    from cmal.data import load_dataset

    ds = load_dataset("mnist-pairs", pool_size=500, test_size=100)
    assert ds.multilabel and ds.x_pool.shape == (500, 28, 56, 1) and ds.y_pool.shape == (500, 10)
    assert set(ds.y_pool.sum(axis=1).tolist()) <= {1, 2}  # a pair of equal digits has one label
    assert ds.describe()["multilabel"] is True


@pytest.mark.slow
def test_multilabel_round_end_to_end(tmp_path):
    from cmal.loop import RunConfig, run

    config = RunConfig(
        dataset="mnist-pairs",
        strategies=("cluster-margin", "margin"),
        rounds=1,
        batch_size=40,
        seed_size=100,
        pool_size=600,
        test_size=200,
        min_steps=60,
        epochs=1,
        distribute="cpu",
    )
    results = run(config, tmp_path, progress=False)
    assert results["metric"] == "pooled_ap"
    for r in results["runs"]:
        last = r["rounds"][-1]
        assert last["n_labeled"] == 140 and 0.3 < last["pooled_ap"] <= 1 and "mean_ap" in last
    sel = np.load(tmp_path / "selections" / "margin_seed0.npz")
    assert sel["labels"].shape == (140, 10)
    assert "pooled_ap_mean" in results["summary"][0]
