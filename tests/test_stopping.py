"""cmal.stopping: Cohen's kappa against scikit-learn, the stop rules on hand-built records, specs, plateaus."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmal.stopping import (
    DEFAULT_CANDIDATES,
    MarginChange,
    StabilizingPredictions,
    StopDecision,
    StopRule,
    available_stop_rules,
    calibrate,
    cohen_kappa,
    make_stop_rule,
    plateau_round,
    replay,
    stop_rule_spec,
    stop_signals,
)


def kappa_records(*kappas):
    """Records of rounds 0, 1, ...: round 0 without a signal, then the given stop-set agreements."""
    return [{"round": 0, "n_labeled": 100, "accuracy": 0.5}] + [
        {"round": r, "n_labeled": 100 * (r + 1), "stop_agreement": k} for r, k in enumerate(kappas, start=1)
    ]


def margin_records(*margins):
    return [{"round": 0, "n_labeled": 100}] + [
        {"round": r, "n_labeled": 100 * (r + 1), "batch_mean_margin": m} for r, m in enumerate(margins, start=1)
    ]


def first_stop(records, rule):
    """The first prefix at which ``rule.check`` stops, by brute force (what replay must agree with)."""
    for i in range(1, len(records) + 1):
        if rule.check(records[:i]).stop:
            return records[i - 1]["round"]
    return None


# ----------------------------------------------------------------------------------------------------- Cohen's kappa
def sklearn_kappa(a, b):
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one shared label: sklearn warns and returns NaN
        return cohen_kappa_score(a, b)


def test_kappa_hand_computed():
    # Confusion matrix by hand: 6 of 8 agree (p_o = 3/4); histograms a = (2, 2, 4), b = (2, 3, 3) so
    # p_e = (4 + 6 + 12) / 64 = 22/64, kappa = (48 - 22) / (64 - 22) = 13/21.
    a = [0, 0, 1, 1, 2, 2, 2, 2]
    b = [0, 1, 1, 1, 2, 2, 0, 2]
    assert cohen_kappa(a, b) == pytest.approx(13 / 21, abs=1e-15)
    assert cohen_kappa(a, b, n_classes=3) == pytest.approx(13 / 21, abs=1e-15)
    assert cohen_kappa(a, b, n_classes=10) == pytest.approx(13 / 21, abs=1e-15)  # unused classes change nothing
    # The textbook 2x2 table (yes/yes 20, yes/no 5, no/yes 10, no/no 15): p_o = 0.7, p_e = 0.5, kappa = 0.4.
    a = np.array([1] * 25 + [0] * 25)
    b = np.array([1] * 20 + [0] * 5 + [1] * 10 + [0] * 15)
    assert cohen_kappa(a, b) == pytest.approx(0.4, abs=1e-15)
    assert cohen_kappa(a, b) == pytest.approx(sklearn_kappa(a, b), abs=1e-12)


def test_kappa_agreement_everywhere_is_one():
    assert cohen_kappa([3, 1, 2], [3, 1, 2]) == 1.0
    assert cohen_kappa([2, 2, 2], [2, 2, 2]) == 1.0  # p_e = 1: the formula is 0/0, defined as 1
    assert math.isnan(sklearn_kappa([2, 2, 2], [2, 2, 2]))  # (scikit-learn leaves it undefined)
    assert cohen_kappa([5], [5]) == 1.0
    assert cohen_kappa([0.0, 1.0, 1.0], [0, 1, 1]) == 1.0  # whole-valued floats are labels
    assert cohen_kappa([True, False], [1, 0]) == 1.0


def test_kappa_predictions_of_two_models():
    # Two "models" on a stop set of 10: the second flips two predictions of class 1 to class 2.
    prev = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    new = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    # p_o = 8/10; histograms (3, 4, 3) and (3, 2, 5): p_e = (9 + 8 + 15) / 100 = 0.32; kappa = 0.48 / 0.68.
    assert cohen_kappa(prev, new) == pytest.approx(0.48 / 0.68, abs=1e-15)
    assert cohen_kappa(prev, new) == pytest.approx(sklearn_kappa(prev, new), abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 60).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(-2, 5), min_size=n, max_size=n), st.lists(st.integers(-2, 5), min_size=n, max_size=n)
        )
    )
)
def test_kappa_matches_sklearn(pair):
    a, b = (np.array(x) for x in pair)
    ours = cohen_kappa(a, b)
    assert -1.0 <= ours <= 1.0
    assert ours == cohen_kappa(b, a)  # symmetric
    theirs = sklearn_kappa(a, b)
    if np.array_equal(a, b):
        assert ours == 1.0
        if not math.isnan(theirs):
            assert theirs == pytest.approx(1.0)
    else:
        assert ours == pytest.approx(theirs, abs=1e-12)
    if a.min() >= 0 and b.min() >= 0:
        assert cohen_kappa(a, b, n_classes=6) == pytest.approx(ours, abs=1e-15)


def test_kappa_properties_on_large_random_labels(rng):
    a = rng.integers(0, 10, size=20_000)
    b = rng.integers(0, 10, size=20_000)
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa(b, a), abs=1e-15)
    assert abs(cohen_kappa(a, b)) < 0.02  # independent: about 0 (standard error ~0.0024 here)
    assert cohen_kappa(a, a) == 1.0
    # Systematic disagreement: every point moved to the next class. p_o = 0, p_e ~ 1/10, kappa ~ -1/9.
    shifted = (a + 1) % 10
    assert cohen_kappa(a, shifted) == pytest.approx(-1 / 9, abs=0.01)
    assert cohen_kappa(a, shifted) == pytest.approx(sklearn_kappa(a, shifted), abs=1e-12)
    assert cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0]) == -1.0
    # Relabeling the classes consistently in both vectors changes nothing.
    perm = rng.permutation(10)
    mixed = np.where(rng.random(a.size) < 0.7, a, b)
    assert cohen_kappa(perm[a], perm[mixed]) == pytest.approx(cohen_kappa(a, mixed), abs=1e-12)


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [
        ([0, 1, 2], [0, 1], {}, "same points: got 3 and 2"),
        ([], [], {}, "empty"),
        ([0.5, 1.0], [0, 1], {}, "integer class labels, got 0.5"),
        ([0, 1], [0.0, np.nan], {}, "integer class labels"),
        (["x", "y"], [0, 1], {}, "integer class labels, got dtype"),
        ([[0.2, 0.8], [0.6, 0.4]], [1, 0], {}, r"1-D.*argmax"),
        ([0, 1, 3], [0, 1, 2], {"n_classes": 3}, r"label 3, outside \[0, 3\)"),
        ([0, -1], [0, 1], {"n_classes": 3}, "label -1"),
        ([0, 1], [0, 1], {"n_classes": 0}, "n_classes must be >= 1"),
    ],
)
def test_kappa_refuses_bad_input(a, b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cohen_kappa(a, b, **kwargs)


# ------------------------------------------------------------------------------------------ stabilizing predictions
def test_stabilizing_predictions_stops_exactly_after_window_rounds():
    rule = StabilizingPredictions()  # kappa 0.99, window 3
    records = kappa_records(0.80, 0.95, 0.991, 0.995, 0.999, 1.0)
    for i in range(1, 6):  # rounds 0..4: at most 2 rounds at >= 0.99 so far
        decision = rule.check(records[:i])
        assert decision == StopDecision(False, None, decision.reason) and decision.reason.startswith("Keep labeling")
    decision = rule.check(records[:6])
    assert decision.stop and decision.round == 5
    assert "round 5" in decision.reason and "0.99" in decision.reason and "3 consecutive rounds" in decision.reason
    assert "0.9910, 0.9950, 0.9990" in decision.reason and "rounds 3-5" in decision.reason
    assert rule.check(records).stop  # still stable after round 6
    assert replay(records, rule) == rule.check(records[:6])


def test_stabilizing_predictions_reasons_name_the_numbers():
    rule = StabilizingPredictions(threshold=0.99, window=3)
    assert "round 0 has no previous model" in rule.check(kappa_records()).reason  # round 0 only
    assert "no stop-set agreement (none is recorded for it)" in rule.check(kappa_records(None)).reason
    low = rule.check(kappa_records(0.97)).reason
    assert "kappa = 0.9700, below 0.99" in low and "3 consecutive rounds" in low
    partial = rule.check(kappa_records(0.5, 0.992, 0.993)).reason
    assert "for 2 of the 3 consecutive rounds needed (0.9920, 0.9930)" in partial
    assert rule.check([]) == StopDecision(False, None, "No rounds recorded yet: nothing to decide.")


def test_a_missing_agreement_breaks_the_streak():
    rule = StabilizingPredictions(window=3)
    unbroken = kappa_records(1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    assert replay(unbroken, rule).round == 3
    broken = kappa_records(1.0, 1.0, None, 1.0, 1.0, 1.0)
    assert replay(broken, rule).round == 6
    assert not rule.check(broken[:6]).stop  # rounds 4, 5 only since the gap
    nan = kappa_records(1.0, 1.0, float("nan"), 1.0, 1.0, 1.0)  # NaN counts as missing
    assert replay(nan, rule).round == 6
    absent = kappa_records(1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    del absent[3]["stop_agreement"]  # an absent key is a missing signal too
    assert replay(absent, rule).round == 6
    below = kappa_records(1.0, 1.0, 0.5, 1.0, 1.0)
    assert replay(below, rule).stop is False
    assert first_stop(below, rule) is None


def test_stabilizing_predictions_threshold_and_window_edges():
    # A kappa exactly at the threshold counts; just below does not.
    assert StabilizingPredictions(threshold=0.99, window=1).check(kappa_records(0.99)).stop
    assert not StabilizingPredictions(threshold=0.99, window=1).check(kappa_records(0.9899)).stop
    # The threshold as scikit-learn or a sum of floats might compute it (0.99 - 1 ulp) still counts.
    assert StabilizingPredictions(threshold=0.99, window=1).check(kappa_records(np.nextafter(0.99, 0))).stop
    # window=1 stops at the first round that reaches it; threshold=1 needs identical predictions.
    assert replay(kappa_records(0.5, 0.995, 0.2), StabilizingPredictions(window=1)).round == 2
    assert replay(kappa_records(0.999, 0.9999, 1.0), StabilizingPredictions(threshold=1.0, window=1)).round == 3
    # Exactly `window` qualifying rounds are enough, one fewer is not.
    assert replay(kappa_records(0.5, 1, 1, 1, 1, 0.5), StabilizingPredictions(window=4)).round == 5
    assert not replay(kappa_records(0.5, 1, 1, 1, 0.5, 1), StabilizingPredictions(window=4)).stop
    # The window may be longer than the run: no stop.
    assert not StabilizingPredictions(window=10).check(kappa_records(1, 1, 1)).stop


def test_check_looks_at_the_latest_rounds_and_replay_at_the_first_stop():
    rule = StabilizingPredictions(window=2)
    records = kappa_records(1.0, 1.0, 0.5, 0.6)  # stable at rounds 1-2, then the model changed again
    assert not rule.check(records).stop
    assert replay(records, rule).round == 2
    # Rounds are read from the records: a run resumed or cut at round 10 reports round numbers, not positions.
    late = [{"round": r, "stop_agreement": 1.0} for r in (10, 11, 12)]
    assert replay(late, rule) == rule.check(late[:2])
    assert replay(late, rule).round == 11
    # Records without "round" are numbered by position.
    assert rule.check([{"stop_agreement": 1.0}, {"stop_agreement": 1.0}]).round == 1


# --------------------------------------------------------------------------------------------------- margin change
def test_margin_change_stops_exactly_after_window_changes():
    rule = MarginChange()  # threshold 0.01, window 2
    records = margin_records(0.30, 0.20, 0.205, 0.2075, 0.21)  # changes 0.1, 0.005, 0.0025, 0.0025
    for i in range(1, 5):
        assert not rule.check(records[:i]).stop
    decision = rule.check(records[:5])
    assert decision.stop and decision.round == 4
    assert "0.01" in decision.reason and "2 consecutive rounds" in decision.reason and "rounds 2-4" in decision.reason
    assert "margins 0.2000, 0.2050, 0.2075" in decision.reason and "changes 0.0050, 0.0025" in decision.reason
    assert replay(records, rule) == decision
    assert first_stop(records, rule) == 4


def test_margin_change_uses_the_absolute_change():
    rule = MarginChange(threshold=0.01, window=2)
    assert replay(margin_records(0.5, 0.495, 0.4999), rule).round == 3  # down 0.005, up 0.0049
    assert not replay(margin_records(0.5, 0.48, 0.5), rule).stop  # down 0.02, up 0.02


def test_a_missing_margin_breaks_the_streak():
    rule = MarginChange(threshold=0.01, window=2)
    assert replay(margin_records(0.2, 0.2, 0.2, 0.2, 0.2, 0.2), rule).round == 3
    broken = margin_records(0.2, 0.2, None, 0.2, 0.2, 0.2)
    # Changes 1->2 small, 2->3 and 3->4 unknown, 4->5 and 5->6 small: the streak restarts at round 4.
    assert replay(broken, rule).round == 6
    assert not rule.check(broken[:6]).stop
    reason = rule.check(broken[:5]).reason
    assert "round 3 records no batch mean margin" in reason
    assert "no batch mean margin (none is recorded for it)" in rule.check(broken[:4]).reason
    assert "round 0 selects no batch" in rule.check(broken[:1]).reason
    assert "no earlier round" in rule.check([{"round": 1, "batch_mean_margin": 0.3}]).reason


def test_margin_change_threshold_and_window_edges():
    # A change equal to the threshold is a change (exact binary fractions, no rounding involved) ...
    assert not MarginChange(threshold=0.25, window=1).check(margin_records(0.5, 0.25)).stop
    assert MarginChange(threshold=0.2501, window=1).check(margin_records(0.5, 0.25)).stop
    # ... also when float subtraction lands a hair off it: 0.51 - 0.50 = 0.010000000000000009, 0.57 - 0.56 < 0.01.
    assert not MarginChange(threshold=0.01, window=1).check(margin_records(0.50, 0.51)).stop
    assert abs(0.57 - 0.56) < 0.01
    assert not MarginChange(threshold=0.01, window=1).check(margin_records(0.56, 0.57)).stop
    # window=1 stops at the first small change; a window of 3 needs 4 margins in a row.
    assert replay(margin_records(0.5, 0.3, 0.301), MarginChange(window=1)).round == 3
    assert replay(margin_records(0.5, 0.3, 0.3, 0.3, 0.3), MarginChange(window=3)).round == 5
    assert not replay(margin_records(0.5, 0.3, 0.3, 0.3), MarginChange(window=3)).stop
    reason = MarginChange(threshold=0.01, window=2).check(margin_records(0.4, 0.2)).reason
    assert "moved from 0.4000 at round 1 to 0.2000, a change of 0.2000, not below 0.01" in reason


def test_rules_read_only_their_own_signal():
    both = [{"round": r, "stop_agreement": 1.0, "batch_mean_margin": 0.1 * r} for r in range(1, 6)]
    assert replay(both, "kappa").round == 3
    assert not replay(both, "margin").stop


# ------------------------------------------------------------------------------------------------ rule construction
@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (StabilizingPredictions, {"threshold": 0}, r"threshold .* in \(0, 1\]; got 0\. Pass e\.g\. threshold=0\.99"),
        (StabilizingPredictions, {"threshold": 1.5}, r"threshold .* \(0, 1\]; got 1\.5"),
        (StabilizingPredictions, {"threshold": float("nan")}, "threshold"),
        (StabilizingPredictions, {"threshold": "0.99"}, "threshold"),
        (StabilizingPredictions, {"threshold": True}, "threshold"),
        (StabilizingPredictions, {"window": 0}, r"window .* integer >= 1; got 0\. Pass e\.g\. window=3"),
        (StabilizingPredictions, {"window": 2.5}, "window"),
        (StabilizingPredictions, {"window": True}, "window"),
        (MarginChange, {"threshold": 0.0}, r"MarginChange: threshold .* > 0; got 0\.0\. Pass e\.g\. threshold=0\.01"),
        (MarginChange, {"threshold": -0.1}, "threshold"),
        (MarginChange, {"threshold": float("inf")}, "threshold"),
        (MarginChange, {"window": -1}, r"MarginChange: window .* Pass e\.g\. window=2"),
    ],
)
def test_rules_refuse_bad_parameters(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_rules_are_frozen_and_normalized():
    rule = StabilizingPredictions(threshold=1, window=np.int64(2))
    assert rule.threshold == 1.0 and type(rule.threshold) is float and type(rule.window) is int
    assert MarginChange(threshold=2.0).threshold == 2.0  # margins change by at most 1: allowed, stops at once
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.window = 5  # type: ignore[misc]
    assert rule == StabilizingPredictions(1.0, 2) and hash(rule) == hash(StabilizingPredictions(1.0, 2))


def test_bad_records_are_refused():
    rule = StabilizingPredictions()
    with pytest.raises(ValueError, match="list of round records"):
        rule.check({"round": 1})
    with pytest.raises(ValueError, match=r"records\[1\] must be a dict"):
        rule.check([{"round": 0}, 3])
    with pytest.raises(ValueError, match=r"stop_agreement='high'"):
        rule.check(kappa_records("high"))
    with pytest.raises(ValueError, match="round must be an integer"):
        MarginChange(window=1).check([{"round": "one", "batch_mean_margin": 0.2}])


# ---------------------------------------------------------------------------------------------------------- specs
def test_make_stop_rule_from_names_dicts_and_rules():
    assert make_stop_rule(None) is None and make_stop_rule("none") is None
    assert make_stop_rule("stabilizing-predictions") == StabilizingPredictions(0.99, 3)
    assert make_stop_rule("kappa") == StabilizingPredictions()
    assert make_stop_rule("Stabilizing_Predictions") == StabilizingPredictions()
    assert make_stop_rule("margin-change") == MarginChange(0.01, 2) == make_stop_rule("margin")
    assert make_stop_rule({"rule": "kappa", "threshold": 0.95}) == StabilizingPredictions(0.95, 3)
    assert make_stop_rule({"rule": "margin", "window": 4}) == MarginChange(0.01, 4)
    rule = MarginChange(0.05, 1)
    assert make_stop_rule(rule) is rule
    assert isinstance(make_stop_rule("kappa"), StopRule)
    assert available_stop_rules() == ["margin-change", "stabilizing-predictions"]


@pytest.mark.parametrize(
    "rule",
    [StabilizingPredictions(), StabilizingPredictions(0.95, 5), MarginChange(), MarginChange(0.003, 1)],
)
def test_stop_rule_spec_round_trips_through_json(rule):
    spec = stop_rule_spec(rule)
    assert spec["rule"] == rule.name and set(spec) == {"rule", "threshold", "window"}
    again = make_stop_rule(json.loads(json.dumps(spec)))
    assert again == rule and type(again) is type(rule)
    assert stop_rule_spec(again) == spec


def test_stop_rule_spec_makes_names_canonical():
    assert stop_rule_spec("kappa") == {"rule": "stabilizing-predictions", "threshold": 0.99, "window": 3}
    assert stop_rule_spec({"rule": "margin", "window": 3}) == {"rule": "margin-change", "threshold": 0.01, "window": 3}
    assert stop_rule_spec(None) is None


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("patience", r"Unknown stop rule 'patience'; choose one of 'margin-change' \(alias 'margin'\), "),
        ("", "Unknown stop rule"),
        ({"threshold": 0.99}, r"needs a 'rule' key.*\['threshold'\].*'stabilizing-predictions'"),
        (
            {"rule": "kappa", "patience": 3},
            r"'stabilizing-predictions' does not take 'patience'; .* 'threshold', 'window'",
        ),
        ({"rule": 3}, "named by a string"),
        ({"rule": "kappa", "window": 0}, "window"),
        (42, "got int; choose one of"),
        (["kappa"], "got list"),
    ],
)
def test_bad_specs_list_the_choices(spec, match):
    with pytest.raises(ValueError, match=match):
        make_stop_rule(spec)
    if isinstance(spec, str):
        with pytest.raises(ValueError, match="stabilizing-predictions"):
            make_stop_rule(spec)


def test_replay_needs_a_rule_and_accepts_specs():
    records = kappa_records(1, 1, 1)
    assert replay(records, {"rule": "kappa", "window": 2}).round == 2
    with pytest.raises(ValueError, match="replay needs a stop rule"):
        replay(records, None)  # type: ignore[arg-type]
    assert replay([], "kappa") == StopDecision(False, None, "No rounds recorded: nothing to replay.")
    never = replay(kappa_records(0.5, 0.6), "kappa")
    assert never.stop is False and never.round is None
    assert never.reason.startswith(
        "No stop in rounds 0-2 (3 records). The last check said: Keep labeling after round 2"
    )


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.sampled_from([0.5, 0.98, 0.99, 0.995, 1.0])), max_size=12),
    st.integers(1, 4),
)
def test_replay_is_the_first_prefix_that_stops(kappas, window):
    rule = StabilizingPredictions(window=window)
    records = kappa_records(*kappas)
    decision = replay(records, rule)
    assert decision.round == first_stop(records, rule)
    if decision.stop:  # the streak that stopped it: `window` rounds, all >= 0.99, ending at the stop round
        tail = kappas[decision.round - window : decision.round]
        assert len(tail) == window and all(k is not None and k >= 0.99 for k in tail)


# ------------------------------------------------------------------------------------------------------- plateaus
def test_plateau_round_is_the_first_small_gain():
    assert plateau_round([0.50, 0.70, 0.80, 0.8005, 0.90]) == 3
    assert plateau_round([0.50, 0.60, 0.70, 0.80]) is None
    assert plateau_round([0.80, 0.79, 0.85]) == 1  # a drop is below any gain
    assert plateau_round([0.80, 0.85, 0.85]) == 2  # no gain at all
    assert plateau_round([0.80, 0.85, 0.90], min_gain=0.06) == 1
    assert plateau_round([0.5, 0.6, 0.7], min_gain=0.0) is None  # min_gain 0: the first round that does not gain
    assert plateau_round([0.5, 0.4], min_gain=-0.05) == 1  # negative: the first drop of more than 5 points
    assert plateau_round(np.array([0.5, 0.5])) == 1
    assert plateau_round([0.9]) is None and plateau_round([]) is None


def test_plateau_round_gain_equal_to_min_gain_is_not_a_plateau():
    assert plateau_round([0.900, 0.901]) is None  # 0.901 - 0.900 = 0.0010000000000000009
    assert 0.938 - 0.937 < 0.001  # rounding the other way ...
    assert plateau_round([0.937, 0.938]) is None  # ... is still a gain of 0.1 points
    assert plateau_round([0.937, 0.9379]) == 1


def test_plateau_round_window_averages_the_gains():
    curve = [0.50, 0.70, 0.7005, 0.80, 0.8001, 0.8002]
    assert plateau_round(curve) == 2  # one flat round
    # Mean gains over 2 rounds end at r = 2..5: 0.10025, 0.05, 0.0498, 0.0001.
    assert plateau_round(curve, window=2) == 5
    assert plateau_round(curve, window=5) is None  # (0.8002 - 0.5) / 5 = 0.06
    assert plateau_round(curve[:2], window=2) is None


@pytest.mark.parametrize(
    ("values", "kwargs", "match"),
    [
        ([0.5, float("nan"), 0.6], {}, "finite, got nan at round 1"),
        ([[0.5, 0.6]], {}, "1-D"),
        (["a", "b"], {}, "numbers"),
        ([0.5, 0.6], {"window": 0}, "window must be >= 1"),
        ([0.5, 0.6], {"min_gain": float("nan")}, "min_gain"),
        ([0.5, 0.6], {"min_gain": "0.001"}, "min_gain"),
    ],
)
def test_plateau_round_refuses_bad_input(values, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plateau_round(values, **kwargs)


# --------------------------------------------------------------------------------------------------- stop signals
def test_stop_signals():
    assert stop_signals(None, [0, 1, 2], None) == {"stop_agreement": None, "batch_mean_margin": None}
    assert stop_signals(None, [0, 1, 2], []) == {"stop_agreement": None, "batch_mean_margin": None}
    s = stop_signals(np.array([0, 1, 1, 0]), np.array([0, 1, 1, 1]), np.array([0.25, 0.5], dtype=np.float32))
    assert s == {"stop_agreement": 0.5, "batch_mean_margin": 0.375}
    assert type(s["stop_agreement"]) is float and type(s["batch_mean_margin"]) is float
    json.dumps(s)
    assert stop_signals([2, 2], [2, 2], [0.0, 1.0])["stop_agreement"] == 1.0
    # What the records hold is what the rules read.
    records = [
        {"round": r, **stop_signals(None if r == 0 else [0, 1, 1], [0, 1, 1], [0.2] if r else None)} for r in range(4)
    ]
    assert replay(records, "kappa").round == 3 and replay(records, "margin").round == 3


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0, 1], [0, 1, 1], None), "same points"),
        ((None, [[0.9, 0.1]], None), r"pred must be 1-D.*argmax"),
        (([0.3], [1], None), "prev_pred must hold integer class labels"),
        ((None, [0], [0.2, np.nan]), "NaN or inf"),
        ((None, [0], [[0.2, 0.3]]), "batch_margins must be 1-D"),
        ((None, [0], [0.2, 1.5]), r"margins in \[0, 1\]"),
        ((None, [0], ["x"]), "batch_margins must be numbers"),
    ],
)
def test_stop_signals_refuse_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        stop_signals(*args)


def test_module_needs_no_tensorflow():
    code = (
        "import sys, cmal.stopping; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'matplotlib', 'plotly'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------------------ calibrate
def pilot(kappas, accuracies):
    """A run's records: round r holds kappa (None at round 0) and the accuracy after it."""
    return [{"round": r, "stop_agreement": k, "accuracy": a} for r, (k, a) in enumerate(zip(kappas, accuracies))]


# Plateaus (window 1, 0.1 points): run A at round 3, run B at round 5, run C never.
RUN_A = pilot([None, 0.80, 0.90, 0.95, 0.97, 0.99, 0.99], [0.5, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7])
RUN_B = pilot([None, 0.70, 0.80, 0.90, 0.95, 0.97, 0.99], [0.5, 0.6, 0.7, 0.8, 0.9, 0.9, 0.9])
RUN_C = pilot([None, 0.70, 0.96, 0.97, 0.98, 0.98, 0.98], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])


def test_calibrate_counts_each_candidate_against_the_plateau():
    k95 = {"rule": "kappa", "threshold": 0.95, "window": 1}
    k97 = {"rule": "kappa", "threshold": 0.97, "window": 1}
    result = calibrate([RUN_A, RUN_B], [k95, k97, "kappa"], window=1)
    assert result.plateaus == [3, 5]
    rows = {(r["rule"]["threshold"], r["rule"]["window"]): r for r in result.table}
    # 0.95: stops at 3 (A, on the plateau) and 4 (B, one early): both within one round.
    assert rows[(0.95, 1)]["stops"] == [3, 4] and rows[(0.95, 1)]["within"] == 2
    assert rows[(0.95, 1)]["mean_offset"] == pytest.approx(-0.5)
    # 0.97: 4 (A, one late) and 5 (B, on it): also 2 within, mean offset +0.5: the tie goes to the first listed.
    assert rows[(0.97, 1)]["stops"] == [4, 5] and rows[(0.97, 1)]["within"] == 2
    assert result.rule == StabilizingPredictions(0.95, 1)
    assert calibrate([RUN_A, RUN_B], [k97, k95], window=1).rule == StabilizingPredictions(0.97, 1)
    # The default (0.99 three times) never fires: late in both runs.
    default = rows[(0.99, 3)]
    assert default["stops"] == [None, None]
    assert (default["late"], default["never_fired"], default["within"]) == (2, 2, 0)


def test_calibrate_prefers_fewer_early_stops_then_the_closer_mean():
    early = {"rule": "kappa", "threshold": 0.9, "window": 1}  # A: 2 (one early), B: 3 (two early)
    late = {"rule": "kappa", "threshold": 0.99, "window": 1}  # A: 5 (two late), B: 6 (one late)
    result = calibrate([RUN_A, RUN_B], [early, late], window=1)
    assert [r["within"] for r in result.table] == [1, 1]
    assert [r["early"] for r in result.table] == [1, 0]
    assert result.rule == StabilizingPredictions(0.99, 1)


def test_calibrate_a_run_that_never_plateaus_wants_no_stop():
    result = calibrate([RUN_C], [{"rule": "kappa", "threshold": 0.96, "window": 1}, "kappa"], window=1)
    assert result.plateaus == [None]
    fires, silent = result.table
    assert (fires["stops"], fires["within"], fires["early"]) == ([2], 0, 1)
    assert (silent["stops"], silent["within"], silent["early"]) == ([None], 1, 0)
    assert result.rule == StabilizingPredictions()


def test_calibrate_judges_a_chosen_rule_on_held_out_runs_like_replay():
    chosen = calibrate([RUN_A, RUN_B], window=1).rule
    held_out = calibrate([RUN_C, RUN_A], [chosen], window=1)
    assert held_out.table[0]["stops"] == [replay(RUN_C, chosen).round, replay(RUN_A, chosen).round]
    assert held_out.rule == chosen


def test_calibrate_default_grid_and_margin_rules():
    assert len(DEFAULT_CANDIDATES) == 45
    assert all(make_stop_rule(spec) is not None for spec in DEFAULT_CANDIDATES)
    margins = [None, 0.30, 0.20, 0.19, 0.185, 0.184]
    runs = [
        [{"round": r, "batch_mean_margin": m, "accuracy": a} for r, (m, a) in enumerate(zip(margins, accs))]
        for accs in ([0.5, 0.6, 0.7, 0.75, 0.75, 0.75], [0.5, 0.6, 0.7, 0.8, 0.8, 0.8])
    ]
    result = calibrate(runs, window=1)  # plateaus at 4 and 4
    assert result.plateaus == [4, 4]
    assert isinstance(result.rule, MarginChange)
    assert result.row["within"] == max(r["within"] for r in result.table) == 2
    assert result.row["rule"] == stop_rule_spec(result.rule)


@pytest.mark.parametrize(
    "runs, kwargs, match",
    [
        ([], {}, "non-empty list of pilot runs"),
        ({"rounds": []}, {}, "non-empty list of pilot runs"),
        ([[{"round": 0}]], {}, r"runs\[0\]\[0\] has no 'accuracy'"),
        ([RUN_A], {"candidates": []}, "candidates is empty"),
        ([RUN_A], {"candidates": [None]}, r"candidates\[0\] is None"),
        ([RUN_A], {"candidates": ["nope"]}, "Unknown stop rule"),
        ([RUN_A], {"tolerance": -1}, "tolerance"),
    ],
)
def test_calibrate_refuses_bad_input(runs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        calibrate(runs, **kwargs)
