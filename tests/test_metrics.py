from __future__ import annotations

import numpy as np
import pytest

from cmal.metrics import accuracy, aulc, labels_to_reach, mean_and_se


def test_accuracy_from_probs_or_labels():
    y = np.array([0, 1, 2, 2])
    assert accuracy(y, np.array([0, 1, 2, 0])) == 0.75
    assert accuracy(y, np.eye(3)[[0, 1, 2, 1]]) == 0.75
    with pytest.raises(ValueError, match="labels"):
        accuracy(y, np.array([0, 1]))


def test_labels_to_reach_interpolates():
    assert labels_to_reach([100, 200], [0.5, 0.7], 0.6) == pytest.approx(150)
    assert labels_to_reach([100, 200], [0.8, 0.9], 0.6) == 100
    assert np.isnan(labels_to_reach([100, 200], [0.5, 0.55], 0.6))


def test_aulc_and_mean_se():
    assert aulc([0, 10], [0.0, 1.0]) == pytest.approx(0.5)
    mean, se = mean_and_se(np.array([[1.0, 2.0], [3.0, 2.0]]))
    np.testing.assert_allclose(mean, [2.0, 2.0])
    np.testing.assert_allclose(se, [1.0, 0.0])


def test_batch_diagnostics_hand_counted():
    from cmal.metrics import batch_summary

    # Pool of 8: copies of 3 source images (0, 0, 0, 1, 1, 2, 2, 2), clusters and labels by hand.
    sources = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    clusters = np.array([0, 0, 1, 2, 2, 3, 3, 3])
    labels = np.array([7, 7, 7, 1, 1, 4, 4, 4])
    batch = np.array([0, 1, 2, 3, 5])  # three copies of image 0, one of 1, one of 2
    s = batch_summary(batch, clusters=clusters, labels=labels, sources=sources, n_classes=10)
    assert s["distinct_sources"] == 3 and s["distinct_clusters"] == 4 and s["distinct_labels"] == 3
    assert s["class_counts"] == [0, 1, 0, 0, 1, 0, 0, 3, 0, 0] and s["class_min"] == 0
    # Entropy of shares (3/5, 1/5, 1/5) in bits.
    assert s["class_entropy"] == pytest.approx(-(0.6 * np.log2(0.6) + 2 * 0.2 * np.log2(0.2)))
    balanced = batch_summary(np.arange(4), labels=np.array([0, 1, 2, 3]), n_classes=4)
    assert balanced["class_min"] == 1 and balanced["class_entropy"] == pytest.approx(2.0)
    # Multi-label rows count once per class they hold.
    multi = batch_summary(np.array([0, 1]), labels=np.array([[1, 1, 0], [0, 1, 0]]), n_classes=3)
    assert multi["class_counts"] == [1, 2, 0] and multi["class_min"] == 0


def test_macro_recall_weighs_classes_equally():
    from cmal.metrics import evaluate, macro_recall

    y = np.array([0, 0, 0, 0, 1, 1])
    pred = np.array([0, 0, 0, 0, 0, 1])  # class 0 recall 1, class 1 recall 1/2
    assert macro_recall(y, pred) == pytest.approx(0.75) and accuracy(y, pred) == pytest.approx(5 / 6)
    m = evaluate(y, np.eye(2)[pred])
    assert m["macro_recall"] == pytest.approx(0.75) and m["accuracy"] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="labels"):
        macro_recall(y, pred[:3])
