from __future__ import annotations

import numpy as np
import pytest

from cmal import uncertainty as U


def test_margin_multiclass_is_top1_minus_top2(rng):
    p = rng.dirichlet(np.ones(7), size=100)
    s = np.sort(p, axis=1)
    np.testing.assert_allclose(U.margin(p), s[:, -1] - s[:, -2])


def test_margin_with_ties_is_zero():
    assert U.margin(np.array([[0.4, 0.4, 0.2]]))[0] == pytest.approx(0.0)


def test_multilabel_margin_mean_and_min():
    p = np.array([[0.5, 0.9, 0.0], [1.0, 1.0, 1.0]])
    np.testing.assert_allclose(U.margin(p, multilabel=True), [(0 + 0.8 + 1) / 3, 1.0])
    np.testing.assert_allclose(U.margin(p, multilabel=True, aggregate="min"), [0.0, 1.0])
    with pytest.raises(ValueError, match="aggregate"):
        U.margin(p, multilabel=True, aggregate="max")


def test_least_confidence_and_entropy(rng):
    p = rng.dirichlet(np.ones(4), size=50)
    np.testing.assert_allclose(U.least_confidence(p), 1 - p.max(axis=1))
    np.testing.assert_allclose(U.entropy(p), -(p * np.log(p)).sum(axis=1))
    # Uniform has the maximal entropy log(C); one-hot has zero (0 log 0 = 0, no warning).
    assert U.entropy(np.full((1, 4), 0.25))[0] == pytest.approx(np.log(4))
    assert U.entropy(np.array([[1.0, 0.0, 0.0]]))[0] == 0.0
    assert U.entropy(np.array([[0.5, 0.5]]), multilabel=True)[0] == pytest.approx(np.log(2))


def test_uncertainty_order_puts_most_uncertain_first(rng):
    p = rng.dirichlet(np.ones(3), size=30)
    m = U.margin(p)
    assert np.argmin(U.uncertainty_order(m, "margin")) == np.argmin(m)
    e = U.entropy(p)
    assert np.argmin(U.uncertainty_order(e, "entropy")) == np.argmax(e)
    lc = U.least_confidence(p)
    assert np.argmin(U.uncertainty_order(lc, "least-confidence")) == np.argmax(lc)


@pytest.mark.parametrize(
    "probs, match",
    [
        (np.array([[0.5, np.nan]]), "NaN"),
        (np.array([[0.7, 0.7]]), "sum to 1"),
        (np.array([[1.5, -0.5]]), r"\[0, 1\]"),
        (np.array([0.5, 0.5]), "2-D"),
        (np.ones((3, 1)), "at least 2 columns"),
        (np.array([["a", "b"]]), "numeric"),
    ],
)
def test_bad_probabilities_are_refused(probs, match):
    with pytest.raises(ValueError, match=match):
        U.margin(probs)


def test_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        U.score(np.full((1, 2), 0.5), "variance")
