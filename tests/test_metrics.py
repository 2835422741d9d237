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
