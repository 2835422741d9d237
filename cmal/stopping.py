"""Stopping rules: when more labels stop paying, judged from numbers every round already records.

Each round's record (an entry of ``Session.records``, :class:`cmal.session.Session`) may carry two stop signals,
computed by :func:`stop_signals`:

``"stop_agreement"``
    Cohen's kappa (:func:`cohen_kappa`) between the classes predicted by this round's model and by the previous
    round's model on a fixed *stop set*: pool points drawn once per seed (labeled later or not). ``None`` (or
    absent) at round 0, which has no previous model.
``"batch_mean_margin"``
    The mean margin (top-1 minus top-2 probability) of the batch selected in that round, under the model that
    selected it. ``None`` (or absent) at round 0, which selects no batch.

A stop rule (:class:`StabilizingPredictions`, :class:`MarginChange`) reads the records and says whether to stop
now (:meth:`StopRule.check`); :func:`make_stop_rule` builds one from a name or a JSON-friendly dict (as saved in
``config.json``) and :func:`stop_rule_spec` gives that dict back. :func:`replay` asks a finished run where the rule
would first have stopped, and :func:`plateau_round` finds where the learning curve itself flattened: the reference
a benchmark compares the stop round with.

This module needs numpy only: no TensorFlow, no plotting.

Examples
--------
>>> from cmal.stopping import make_stop_rule, plateau_round, replay
>>> kappas = [None, 0.90, 0.995, 0.991, 0.999, 1.0]  # round 0 has no previous model
>>> records = [{"round": r, "stop_agreement": k} for r, k in enumerate(kappas)]
>>> rule = make_stop_rule("stabilizing-predictions")
>>> rule
StabilizingPredictions(threshold=0.99, window=3)
>>> rule.check(records).stop  # after round 5: the last three kappas are all >= 0.99
True
>>> decision = replay(records, rule)  # where it would first have stopped
>>> decision.round
4
>>> print(decision.reason)  # doctest: +NORMALIZE_WHITESPACE
Stop at round 4: successive models agreed on the stop set with Cohen's kappa >= 0.99
for 3 consecutive rounds (rounds 2-4: 0.9950, 0.9910, 0.9990).
>>> plateau_round([0.60, 0.75, 0.82, 0.8205, 0.83])  # first round gaining less than 0.1 points
3
"""

from __future__ import annotations

import abc
import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, TypeAlias, overload

import numpy as np

from cmal._validation import check_int

__all__ = [
    "MarginChange",
    "StabilizingPredictions",
    "StopDecision",
    "StopRule",
    "StopRuleSpec",
    "Calibration",
    "available_stop_rules",
    "calibrate",
    "cohen_kappa",
    "make_stop_rule",
    "plateau_round",
    "replay",
    "stop_rule_spec",
    "stop_signals",
]

# Comparisons with a threshold allow this much float rounding, always towards "not yet stopping" for a change that
# must be *below* a threshold and towards "agreeing" for a kappa that must *reach* one: a kappa of exactly 0.99
# computed as 0.98999999999999 still counts, a change of exactly 0.01 computed as 0.00999999999999 does not.
_ROUNDING = 1e-12

_AGREEMENT_KEY = "stop_agreement"
_MARGIN_KEY = "batch_mean_margin"


# ---------------------------------------------------------------------------------------------------- Cohen's kappa
def _label_vector(x: Any, name: str) -> np.ndarray:
    """``x`` as a non-empty 1-D int64 array of class labels (integers, bools or whole-valued floats)."""
    arr = np.asarray(x)
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    numeric = np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    if arr.dtype == object or not numeric:
        raise ValueError(
            f"{name} must hold integer class labels, got dtype {arr.dtype}; pass predicted classes, "
            "e.g. probs.argmax(axis=1)."
        )
    if arr.ndim != 1:
        hint = " (probabilities? pass probs.argmax(axis=1))" if arr.ndim == 2 else ""
        raise ValueError(f"{name} must be 1-D, one predicted class per point, got shape {arr.shape}{hint}.")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; Cohen's kappa needs at least one point.")
    if np.issubdtype(arr.dtype, np.floating):
        whole = np.isfinite(arr) & (arr == np.round(arr))
        if not whole.all():
            bad = float(arr[~whole][0])
            raise ValueError(
                f"{name} must hold integer class labels, got {bad!r}; pass predicted classes "
                "(probs.argmax(axis=1)), not probabilities or scores."
            )
    return arr.astype(np.int64, copy=False)


def cohen_kappa(a: Any, b: Any, n_classes: int | None = None) -> float:
    """Cohen's kappa: the agreement of two label vectors beyond the agreement expected by chance.

    ``kappa = (p_o - p_e) / (1 - p_e)`` where ``p_o`` is the share of points where ``a`` and ``b`` agree (the
    confusion matrix's trace over ``n``) and ``p_e = sum_c (n_a[c] / n) (n_b[c] / n)`` is the agreement expected
    from the two label histograms alone (the confusion matrix's row and column sums, counted with
    ``np.bincount``). It is 1 for perfect agreement, about 0 for independent labels and negative for systematic
    disagreement.

    Parameters
    ----------
    a, b : array-like of int, shape (n,)
        Two labelings of the same ``n`` points, e.g. the classes two models predict on a stop set. Whole-valued
        floats and bools are accepted as integers.
    n_classes : int, optional
        The number of classes; labels must then lie in ``[0, n_classes)`` and are counted without sorting.
        Without it labels may be any integers. It never changes the value: classes neither labeling uses
        contribute nothing.

    Returns
    -------
    float
        Kappa in ``[-1, 1]``. Defined as exactly 1.0 whenever ``a`` and ``b`` agree everywhere, including when
        both give every point the same class (then ``p_e = 1`` and the formula is 0/0).

    Raises
    ------
    ValueError
        If ``a`` and ``b`` are not 1-D, differ in length, are empty or hold non-integer labels, or if a label lies
        outside ``[0, n_classes)``.

    Examples
    --------
    >>> cohen_kappa([0, 0, 1, 1], [0, 0, 1, 1])
    1.0
    >>> cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0])  # always disagreeing, balanced classes
    -1.0
    >>> round(cohen_kappa([0, 0, 1, 1, 2, 2, 2, 2], [0, 1, 1, 1, 2, 2, 0, 2]), 6)  # 13/21
    0.619048
    """
    a = _label_vector(a, "a")
    b = _label_vector(b, "b")
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must label the same points: got {a.shape[0]} and {b.shape[0]} labels; "
            "predict both on the same stop set."
        )
    n = int(a.size)
    agree = int(np.count_nonzero(a == b))
    if n_classes is not None:
        n_classes = check_int(n_classes, "n_classes", minimum=1)
        for name, arr in (("a", a), ("b", b)):
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi >= n_classes:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"{name} holds label {bad}, outside [0, {n_classes}) for n_classes={n_classes}; "
                    "pass the right n_classes or leave it out."
                )
        codes_a, codes_b, k = a, b, n_classes
    else:
        _, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
        codes_a, codes_b = inverse[:n], inverse[n:]
        k = int(inverse.max()) + 1
    if agree == n:
        return 1.0
    # Integer arithmetic on counts: exact, so the value does not depend on float summation order.
    chance = int(np.bincount(codes_a, minlength=k) @ np.bincount(codes_b, minlength=k))  # n^2 * p_e
    # p_e = 1 only if both labelings are one and the same constant, which agree == n has returned above.
    return (n * agree - chance) / (n * n - chance)


# ------------------------------------------------------------------------------------------------------ stop rules
class StopDecision(NamedTuple):
    """What a stop rule decided.

    Attributes
    ----------
    stop : bool
        Whether to stop labeling.
    round : int or None
        The round at which to stop (the ``"round"`` of the record that completed the rule), or ``None``.
    reason : str
        One sentence for the user, naming the numbers the decision rests on.

    Examples
    --------
    >>> StopDecision(False, None, "No rounds recorded yet.").stop
    False
    """

    stop: bool
    round: int | None
    reason: str


def _check_records(records: Any) -> list[Mapping[str, Any]]:
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
        raise ValueError(
            f"records must be a list of round records (dicts, one per round, oldest first), got "
            f"{type(records).__name__}; pass session.records or the 'rounds' list of a results file."
        )
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise ValueError(f"records[{i}] must be a dict (one round's record), got {type(rec).__name__}.")
    return list(records)


def _round_of(record: Mapping[str, Any], position: int) -> int:
    """The record's ``"round"``, or its position in the list when it has none."""
    r = record.get("round", position)
    if isinstance(r, bool) or not isinstance(r, numbers.Integral):
        raise ValueError(f"records[{position}] has round={r!r}; a round must be an integer.")
    return int(r)


def _signal(record: Mapping[str, Any], key: str, position: int) -> float | None:
    """The record's ``key`` as a float; ``None`` when absent, ``None`` or NaN (a missing signal)."""
    v = record.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ValueError(
            f"records[{position}] has {key}={v!r}; it must be a number or None (see cmal.stopping.stop_signals)."
        )
    v = float(v)
    return v if math.isfinite(v) else None


def _rounds(n: int) -> str:
    return "1 consecutive round" if n == 1 else f"{n} consecutive rounds"


def _span(first: int, last: int) -> str:
    return f"round {last}" if first == last else f"rounds {first}-{last}"


class StopRule(abc.ABC):
    """A stopping rule: reads the round records and decides whether to stop labeling.

    Subclasses are small frozen dataclasses whose fields are JSON-friendly numbers (see :func:`stop_rule_spec`)
    and that set the class attributes ``name`` (the registered name) and ``signal`` (the record key they read).

    Examples
    --------
    >>> isinstance(make_stop_rule("kappa"), StopRule)
    True
    """

    name: ClassVar[str]
    signal: ClassVar[str]

    @abc.abstractmethod
    def check(self, records: Sequence[Mapping[str, Any]]) -> StopDecision:
        """Whether to stop after the last of ``records`` (a list of round records, oldest first)."""


def _check_window(value: Any, owner: str, example: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"{owner}: window is a number of consecutive rounds, an integer >= 1; got {value!r}. "
            f"Pass e.g. window={example}."
        )
    return int(value)


def _check_threshold(value: Any, owner: str, what: str, example: float, *, at_most_one: bool) -> float:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = v > 0 and (v <= 1 or not at_most_one)
    if not ok:
        bounds = "a number in (0, 1]" if at_most_one else "a finite number > 0"
        raise ValueError(f"{owner}: threshold is {what}, {bounds}; got {value!r}. Pass e.g. threshold={example}.")
    return float(value)


@dataclasses.dataclass(frozen=True)
class StabilizingPredictions(StopRule):
    """Stop when successive models predict the same classes on the stop set (Bloodgood & Vijay-Shanker, 2009).

    Stops after round ``r`` when the records of rounds ``r - window + 1, ..., r`` (the last ``window`` records)
    all hold a ``"stop_agreement"`` (Cohen's kappa of the model of that round against the model of the round
    before, on the stop set) of at least ``threshold``. A record without the signal (absent, ``None`` or NaN, as
    at round 0) ends any streak.

    Parameters
    ----------
    threshold : float in (0, 1], default 0.99
        The kappa successive models must reach. 1.0 asks for identical predictions.
    window : int >= 1, default 3
        How many consecutive rounds must reach it.

    Notes
    -----
    M. Bloodgood and K. Vijay-Shanker, "A Method for Stopping Active Learning Based on Stabilizing Predictions
    and the Need for User-Adjustable Stopping", CoNLL 2009: the stop set needs no labels, so it can be large;
    0.99 and 3 are the paper's defaults. Some implementations (e.g. small-text's ``KappaAverage``) compare the
    *mean* of the last ``window`` kappas with the threshold; requiring every one of them is at least as strict
    (each >= threshold implies the mean is).

    Examples
    --------
    >>> rule = StabilizingPredictions(threshold=0.99, window=2)
    >>> records = [{"round": 0}, {"round": 1, "stop_agreement": 0.97},
    ...            {"round": 2, "stop_agreement": 0.992}, {"round": 3, "stop_agreement": 0.995}]
    >>> rule.check(records)  # doctest: +NORMALIZE_WHITESPACE
    StopDecision(stop=True, round=3, reason="Stop at round 3: successive models agreed on the stop set with
    Cohen's kappa >= 0.99 for 2 consecutive rounds (rounds 2-3: 0.9920, 0.9950).")
    >>> rule.check(records[:3]).stop
    False
    """

    threshold: float = 0.99
    window: int = 3

    name: ClassVar[str] = "stabilizing-predictions"
    signal: ClassVar[str] = _AGREEMENT_KEY

    def __post_init__(self) -> None:
        owner = type(self).__name__
        what = "the Cohen's kappa successive models must reach on the stop set"
        object.__setattr__(self, "threshold", _check_threshold(self.threshold, owner, what, 0.99, at_most_one=True))
        object.__setattr__(self, "window", _check_window(self.window, owner, 3))

    def check(self, records: Sequence[Mapping[str, Any]]) -> StopDecision:
        """Whether to stop after the last record.

        Parameters
        ----------
        records : list of dict
            Round records, oldest first; each may hold ``"round"`` (int) and ``"stop_agreement"`` (float or
            None). Only the last ``window`` records matter.

        Returns
        -------
        StopDecision
            ``stop`` when the last ``window`` records all reach ``threshold``; ``round`` is the last record's
            round then, ``None`` otherwise.
        """
        recs = _check_records(records)
        if not recs:
            return StopDecision(False, None, "No rounds recorded yet: nothing to decide.")
        run: list[tuple[int, float]] = []  # the trailing streak, newest first
        for i in range(len(recs) - 1, max(len(recs) - 1 - self.window, -1), -1):
            k = _signal(recs[i], _AGREEMENT_KEY, i)
            if k is None or k < self.threshold - _ROUNDING:
                break
            run.append((_round_of(recs[i], i), k))
        last = _round_of(recs[-1], len(recs) - 1)
        need = f"the rule needs kappa >= {self.threshold:g} for {_rounds(self.window)}"
        if len(run) >= self.window:
            run.reverse()
            values = ", ".join(f"{k:.4f}" for _, k in run)
            return StopDecision(
                True,
                last,
                f"Stop at round {last}: successive models agreed on the stop set with Cohen's kappa >= "
                f"{self.threshold:g} for {_rounds(self.window)} ({_span(run[0][0], last)}: {values}).",
            )
        if run:
            run.reverse()
            values = ", ".join(f"{k:.4f}" for _, k in run)
            detail = f"kappa >= {self.threshold:g} for {len(run)} of the {_rounds(self.window)} needed ({values})"
        else:
            k = _signal(recs[-1], _AGREEMENT_KEY, len(recs) - 1)
            if k is None:
                why = "round 0 has no previous model to agree with" if last == 0 else "none is recorded for it"
                detail = f"no stop-set agreement ({why}); {need}"
            else:
                detail = f"the stop-set agreement is kappa = {k:.4f}, below {self.threshold:g}; {need}"
        return StopDecision(False, None, f"Keep labeling after round {last}: {detail}.")


@dataclasses.dataclass(frozen=True)
class MarginChange(StopRule):
    """Stop when the mean margin of the selected batches stops moving (a heuristic, not from a paper).

    Stops after round ``r`` when the absolute change of ``"batch_mean_margin"`` between successive records has
    stayed below ``threshold`` for ``window`` consecutive changes, the last one ending at round ``r``; that takes
    ``window + 1`` consecutive records holding the signal. A record without it (absent, ``None`` or NaN, as at
    round 0) ends any streak: the changes into and out of it are unknown.

    Parameters
    ----------
    threshold : float > 0, default 0.01
        The largest change (in margin units, top-1 minus top-2 probability) that still counts as no change;
        a change equal to it counts as a change.
    window : int >= 1, default 2
        How many consecutive small changes are needed.

    Notes
    -----
    Why the signal means something: a margin strategy picks the pool points the current model is least sure
    about, so the batch's mean margin describes the model's uncertain region, the part of the input space near
    its decision boundaries. While labels still teach the model something, that region moves and the margins of
    what gets selected move with it; when they stop moving, the uncertain region has stopped changing and further
    batches of the same kind are unlikely to change the model much. This is a heuristic of cmal's, not a method
    from the literature: no paper fixes its threshold or window, and the margins also depend on the strategy (a
    random strategy's batch margins drift with the model's overall confidence instead). Check it against
    :func:`plateau_round` on your data before relying on it.

    Examples
    --------
    >>> rule = MarginChange(threshold=0.01, window=2)
    >>> margins = [None, 0.30, 0.20, 0.205, 0.2075]
    >>> records = [{"round": r, "batch_mean_margin": m} for r, m in enumerate(margins)]
    >>> rule.check(records).round
    4
    >>> rule.check(records[:4]).stop  # one small change so far
    False
    """

    threshold: float = 0.01
    window: int = 2

    name: ClassVar[str] = "margin-change"
    signal: ClassVar[str] = _MARGIN_KEY

    def __post_init__(self) -> None:
        owner = type(self).__name__
        what = "the largest change of the batch mean margin between rounds that counts as no change"
        object.__setattr__(self, "threshold", _check_threshold(self.threshold, owner, what, 0.01, at_most_one=False))
        object.__setattr__(self, "window", _check_window(self.window, owner, 2))

    def check(self, records: Sequence[Mapping[str, Any]]) -> StopDecision:
        """Whether to stop after the last record.

        Parameters
        ----------
        records : list of dict
            Round records, oldest first; each may hold ``"round"`` (int) and ``"batch_mean_margin"`` (float or
            None). Only the last ``window + 1`` records matter.

        Returns
        -------
        StopDecision
            ``stop`` when the last ``window`` changes are all below ``threshold``; ``round`` is the last record's
            round then, ``None`` otherwise.
        """
        recs = _check_records(records)
        if not recs:
            return StopDecision(False, None, "No rounds recorded yet: nothing to decide.")
        n = len(recs)
        margins = [_signal(recs[i], _MARGIN_KEY, i) for i in range(max(n - 1 - self.window, 0), n)]
        changes: list[float] = []  # the trailing streak of small changes, newest first
        for j in range(len(margins) - 1, 0, -1):
            new, old = margins[j], margins[j - 1]
            if new is None or old is None or not abs(new - old) < self.threshold - _ROUNDING:
                break
            changes.append(abs(new - old))
        last = _round_of(recs[-1], n - 1)
        need = f"the rule needs changes below {self.threshold:g} for {_rounds(self.window)}"
        if len(changes) >= self.window:
            first = _round_of(recs[n - 1 - self.window], n - 1 - self.window)
            values = ", ".join(f"{m:.4f}" for m in margins[-self.window - 1 :] if m is not None)
            diffs = ", ".join(f"{c:.4f}" for c in reversed(changes))
            return StopDecision(
                True,
                last,
                f"Stop at round {last}: the selected batches' mean margin changed by less than {self.threshold:g} "
                f"between successive rounds for {_rounds(self.window)} ({_span(first, last)}: margins {values}; "
                f"changes {diffs}).",
            )
        if changes:
            diffs = ", ".join(f"{c:.4f}" for c in reversed(changes))
            detail = (
                f"changes below {self.threshold:g} for {len(changes)} of the {_rounds(self.window)} needed ({diffs})"
            )
        elif margins[-1] is None:
            why = "round 0 selects no batch" if last == 0 else "none is recorded for it"
            detail = f"no batch mean margin ({why}); {need}"
        elif n == 1 or margins[-2] is None:
            prev = _round_of(recs[-2], n - 2) if n > 1 else None
            missing = "there is no earlier round" if prev is None else f"round {prev} records no batch mean margin"
            detail = f"its margin is {margins[-1]:.4f} but {missing} to compare with; {need}"
        else:
            prev_margin = margins[-2]
            assert prev_margin is not None  # checked just above
            prev = _round_of(recs[-2], n - 2)
            detail = (
                f"the batch mean margin moved from {prev_margin:.4f} at round {prev} to {margins[-1]:.4f}, a change "
                f"of {abs(margins[-1] - prev_margin):.4f}, not below {self.threshold:g}; {need}"
            )
        return StopDecision(False, None, f"Keep labeling after round {last}: {detail}.")


# ------------------------------------------------------------------------------------------------- specs and names
_RULES: dict[str, type[StopRule]] = {
    StabilizingPredictions.name: StabilizingPredictions,
    MarginChange.name: MarginChange,
}
_ALIASES = {"kappa": StabilizingPredictions.name, "margin": MarginChange.name}

StopRuleSpec: TypeAlias = StopRule | str | Mapping[str, Any] | None
"""What :func:`make_stop_rule` accepts: ``None``, a rule name, a ``{"rule": name, **params}`` dict or a rule."""


def available_stop_rules() -> list[str]:
    """The registered stop-rule names (aliases: ``"kappa"``, ``"margin"``).

    Examples
    --------
    >>> available_stop_rules()
    ['margin-change', 'stabilizing-predictions']
    """
    return sorted(_RULES)


def _choices(*, none: bool = True) -> str:
    by_rule = {name: [a for a, target in _ALIASES.items() if target == name] for name in sorted(_RULES)}
    listed = [f"{name!r}" + "".join(f" (alias {a!r})" for a in aliases) for name, aliases in by_rule.items()]
    return ", ".join(listed) + (", or None for no stopping" if none else "")


def _rule_class(name: Any) -> type[StopRule]:
    if not isinstance(name, str):
        raise ValueError(f"A stop rule is named by a string, got {name!r}; choose one of {_choices()}.")
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _RULES:
        raise ValueError(f"Unknown stop rule {name!r}; choose one of {_choices()}.")
    return _RULES[key]


def make_stop_rule(spec: StopRuleSpec) -> StopRule | None:
    """Build a stop rule from a name, a JSON-friendly dict or a rule.

    Parameters
    ----------
    spec : None, str, dict or StopRule
        ``None`` or ``"none"``: no stopping (returns ``None``). A name: ``"stabilizing-predictions"`` (alias
        ``"kappa"``) or ``"margin-change"`` (alias ``"margin"``), with default parameters; case and ``_`` for
        ``-`` do not matter. A dict ``{"rule": name, **params}`` such as ``{"rule": "kappa", "threshold": 0.98}``
        (the form saved in ``config.json``, see :func:`stop_rule_spec`). A :class:`StopRule`: returned as it is.

    Returns
    -------
    StopRule or None

    Raises
    ------
    ValueError
        For an unknown name, a dict without ``"rule"``, a parameter the rule does not take (the message lists the
        choices) or a parameter value out of range.

    Examples
    --------
    >>> make_stop_rule("margin")
    MarginChange(threshold=0.01, window=2)
    >>> make_stop_rule({"rule": "stabilizing-predictions", "threshold": 0.98, "window": 2})
    StabilizingPredictions(threshold=0.98, window=2)
    >>> make_stop_rule(None) is None
    True
    """
    if spec is None:
        return None
    if isinstance(spec, StopRule):
        return spec
    if isinstance(spec, str):
        if spec.strip().lower() == "none":
            return None
        return _rule_class(spec)()
    if isinstance(spec, Mapping):
        params = dict(spec)
        if "rule" not in params:
            raise ValueError(
                f"A stop-rule dict needs a 'rule' key naming the rule, got keys {sorted(map(str, params))}; "
                f"e.g. {{'rule': 'stabilizing-predictions', 'threshold': 0.99, 'window': 3}}. Rules: {_choices()}."
            )
        cls = _rule_class(params.pop("rule"))
        fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]  # every rule is a dataclass
        unknown = sorted(str(k) for k in params if k not in fields)
        if unknown:
            raise ValueError(
                f"Stop rule {cls.name!r} does not take {', '.join(map(repr, unknown))}; "
                f"its parameters are {', '.join(map(repr, fields))}."
            )
        return cls(**params)
    raise ValueError(
        f"A stop rule is given as None, a name, a dict {{'rule': name, ...}} or a StopRule, got "
        f"{type(spec).__name__}; choose one of {_choices()}."
    )


@overload
def stop_rule_spec(rule: None) -> None: ...
@overload
def stop_rule_spec(rule: StopRule | str | Mapping[str, Any]) -> dict[str, Any]: ...
def stop_rule_spec(rule: StopRuleSpec) -> dict[str, Any] | None:
    """The JSON-friendly dict of a stop rule: ``{"rule": name, **params}``, the inverse of :func:`make_stop_rule`.

    Parameters
    ----------
    rule : StopRule, str, dict or None
        A rule, or anything :func:`make_stop_rule` accepts (names and aliases come back canonical and complete,
        defaults included). ``None`` (no stopping) gives ``None``.

    Returns
    -------
    dict or None
        ``make_stop_rule(stop_rule_spec(rule)) == rule``, also after a JSON round trip.

    Examples
    --------
    >>> stop_rule_spec("kappa")
    {'rule': 'stabilizing-predictions', 'threshold': 0.99, 'window': 3}
    >>> make_stop_rule(stop_rule_spec(MarginChange(0.02, 3)))
    MarginChange(threshold=0.02, window=3)
    """
    built = make_stop_rule(rule)
    if built is None:
        return None
    if not dataclasses.is_dataclass(built):
        raise ValueError(f"{type(built).__name__} is not a dataclass, so it has no JSON spec; make it a dataclass.")
    return {"rule": built.name, **dataclasses.asdict(built)}


def replay(records: Sequence[Mapping[str, Any]], rule: StopRule | str | Mapping[str, Any]) -> StopDecision:
    """Where a rule would first have stopped a finished run.

    Checks ``records[:1]``, ``records[:2]``, ... in turn and returns the first decision to stop, so a benchmark
    that ran every round can ask afterwards what the rule would have saved.

    Parameters
    ----------
    records : list of dict, length R
        All round records of one run, oldest first.
    rule : StopRule, str or dict
        The rule, or a spec for :func:`make_stop_rule`.

    Returns
    -------
    StopDecision
        The first stopping decision; or ``stop=False``, ``round=None`` with the last check's reason when the rule
        never fires.

    Examples
    --------
    >>> records = [{"round": r, "batch_mean_margin": m} for r, m in enumerate([None, 0.4, 0.2, 0.1])]
    >>> decision = replay(records, "margin")
    >>> decision.stop, decision.round
    (False, None)
    >>> print(decision.reason)  # doctest: +NORMALIZE_WHITESPACE
    No stop in rounds 0-3 (4 records). The last check said: Keep labeling after round 3: the batch mean margin
    moved from 0.2000 at round 2 to 0.1000, a change of 0.1000, not below 0.01; the rule needs changes below 0.01
    for 2 consecutive rounds.
    """
    built = make_stop_rule(rule)
    if built is None:
        raise ValueError(f"replay needs a stop rule, got {rule!r}; choose one of {_choices(none=False)}.")
    recs = _check_records(records)
    if not recs:
        return StopDecision(False, None, "No rounds recorded: nothing to replay.")
    decision = StopDecision(False, None, "")
    for i in range(1, len(recs) + 1):
        decision = built.check(recs[:i])
        if decision.stop:
            return decision
    first, last = _round_of(recs[0], 0), _round_of(recs[-1], len(recs) - 1)
    return StopDecision(
        False, None, f"No stop in {_span(first, last)} ({len(recs)} records). The last check said: {decision.reason}"
    )


# ------------------------------------------------------------------------------------------------------ references
def plateau_round(values: Sequence[float] | np.ndarray, min_gain: float = 0.001, window: int = 1) -> int | None:
    """The first round at which the learning curve gains less than ``min_gain``: the reference stop round.

    With ``window=1``: the smallest ``r >= 1`` with ``values[r] - values[r - 1] < min_gain``. With ``window=w``:
    the smallest ``r >= w`` whose mean gain over the last ``w`` rounds,
    ``(values[r] - values[r - w]) / w``, is below ``min_gain``; a larger window keeps one noisy round from
    counting as a plateau. A drop (a negative gain) is below any ``min_gain >= 0``; a gain equal to ``min_gain``
    (up to float rounding, 1e-12) is not below it.

    Parameters
    ----------
    values : array-like of float, shape (R,)
        The metric after each round, round 0 first (e.g. test accuracy as a fraction), so that positions are
        round numbers.
    min_gain : float, default 0.001
        In the units of ``values``: 0.001 is 0.1 accuracy points.
    window : int >= 1, default 1
        Rounds over which the gain is averaged.

    Returns
    -------
    int or None
        The position ``r`` in ``values`` (the round number when ``values`` starts at round 0), or ``None`` if the
        curve never gains less than ``min_gain`` (including curves of ``window`` values or fewer).

    Examples
    --------
    >>> plateau_round([0.50, 0.70, 0.80, 0.8005, 0.90])
    3
    >>> plateau_round([0.50, 0.70, 0.80, 0.8005, 0.90], window=2) is None  # mean gains 0.15, 0.05, 0.05
    True
    >>> plateau_round([0.80, 0.85, 0.90], min_gain=0.06)
    1
    """
    v = np.asarray(values)
    if v.dtype == object or not (np.issubdtype(v.dtype, np.number) or v.dtype == bool):
        raise ValueError(f"values must be numbers (the metric after each round), got dtype {v.dtype}.")
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D, one value per round, got shape {v.shape}.")
    v = v.astype(np.float64)
    if not np.isfinite(v).all():
        bad = int(np.flatnonzero(~np.isfinite(v))[0])
        raise ValueError(f"values must be finite, got {v[bad]} at round {bad}; drop or fill rounds with no metric.")
    if isinstance(min_gain, bool) or not isinstance(min_gain, numbers.Real) or not math.isfinite(float(min_gain)):
        raise ValueError(f"min_gain must be a finite number (0.001 is 0.1 accuracy points), got {min_gain!r}.")
    window = check_int(window, "window", minimum=1)
    if v.size <= window:
        return None
    gains = (v[window:] - v[:-window]) / window  # gains[j]: mean gain of rounds j + 1 .. j + window
    hit = np.flatnonzero(gains < float(min_gain) - _ROUNDING)
    return int(hit[0]) + window if hit.size else None


class Calibration(NamedTuple):
    """What :func:`calibrate` chose, and how every candidate did on the pilot runs.

    Attributes
    ----------
    rule : StopRule
        The candidate stopping within ``tolerance`` rounds of the plateau in the most pilot runs (ties: fewer
        early stops, then the smaller mean distance to the plateau, then the earlier candidate).
    table : list of dict
        One row per candidate, in the order given: ``{"rule": spec, "within": int, "early": int, "late": int,
        "never_fired": int, "mean_offset": float or None, "stops": [int or None per run]}``; ``mean_offset`` is
        the mean of ``stop - plateau`` over the runs where both exist (negative: early).
    plateaus : list of int or None
        The plateau round of each pilot run (:func:`plateau_round`).

    Examples
    --------
    >>> Calibration(make_stop_rule("kappa"), [], []).rule.threshold
    0.99
    """

    rule: StopRule
    table: list[dict[str, Any]]
    plateaus: list[int | None]

    @property
    def row(self) -> dict[str, Any]:
        """The chosen rule's row of :attr:`table`: its stop round per run and its counts."""
        spec = stop_rule_spec(self.rule)
        return next(r for r in self.table if r["rule"] == spec)


#: The candidates :func:`calibrate` tries by default: both rules over a grid of thresholds and windows.
DEFAULT_CANDIDATES: tuple[dict[str, Any], ...] = tuple(
    [
        {"rule": StabilizingPredictions.name, "threshold": t, "window": w}
        for t in (0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)
        for w in (1, 2, 3)
    ]
    + [
        {"rule": MarginChange.name, "threshold": t, "window": w}
        for t in (0.005, 0.01, 0.02, 0.03, 0.05, 0.08)
        for w in (1, 2, 3)
    ]
)


def calibrate(
    runs: Sequence[Sequence[Mapping[str, Any]]],
    candidates: Sequence[StopRuleSpec] | None = None,
    *,
    metric: str = "accuracy",
    min_gain: float = 0.001,
    window: int = 2,
    tolerance: int = 1,
) -> Calibration:
    """Choose a stop rule on pilot runs: the candidate that stops nearest the learning curve's plateau.

    No threshold suits every pool: kappa saturates below 1 when each round retrains from scratch, and margins
    have the scale of the model's confidence. So run a few *pilot* runs to the end (other seeds, or a smaller
    budget on similar data), then let this function replay every candidate rule on them (:func:`replay`) and
    compare where it stops with where the curve of ``metric`` flattened (:func:`plateau_round`). Judge the
    chosen rule on runs it was not chosen on: its count on the pilots overstates it.

    Parameters
    ----------
    runs : list of list of dict
        The records of each pilot run (e.g. ``results["runs"][i]["rounds"]``), each record holding ``metric``
        and the stop signals (``"stop_agreement"``, ``"batch_mean_margin"``).
    candidates : list of rule specs, optional
        Anything :func:`make_stop_rule` accepts; default :data:`DEFAULT_CANDIDATES` (45 rules: kappa thresholds
        0.85-0.99 and margin-change thresholds 0.005-0.08, each with windows 1-3).
    metric : str, default "accuracy"
        The record key of the learning curve.
    min_gain, window : float, int
        The plateau's definition, passed to :func:`plateau_round` (0.001: 0.1 points; window 2: the mean gain
        of two rounds, steadier on a small test set).
    tolerance : int >= 0, default 1
        A stop counts as on time within this many rounds of the plateau.

    Returns
    -------
    Calibration
        The chosen rule, a row per candidate, and the plateaus.

    Raises
    ------
    ValueError
        For no runs, a run whose records lack ``metric``, or a bad candidate (the message names it).

    Notes
    -----
    A run whose curve never reaches the plateau counts a rule that never fires as on time, and a rule that fires
    as early. A rule that never fires on a run that did reach it counts as late.

    Examples
    --------
    >>> def run(kappas, accs):
    ...     return [{"round": r, "stop_agreement": k, "accuracy": a} for r, (k, a) in enumerate(zip(kappas, accs))]
    >>> pilots = [run([None, 0.80, 0.90, 0.96, 0.97, 0.97], [0.50, 0.70, 0.80, 0.8005, 0.801, 0.801]),
    ...           run([None, 0.70, 0.93, 0.95, 0.96, 0.98], [0.40, 0.60, 0.75, 0.76, 0.76, 0.761])]
    >>> result = calibrate(pilots, ["kappa", {"rule": "kappa", "threshold": 0.95, "window": 1}], window=1)
    >>> result.plateaus
    [3, 4]
    >>> result.rule
    StabilizingPredictions(threshold=0.95, window=1)
    >>> [(row["within"], row["late"]) for row in result.table]
    [(0, 2), (2, 0)]
    >>> result.row["stops"]  # the chosen rule's stop round in each pilot run
    [3, 3]
    """
    if isinstance(runs, (str, bytes, Mapping)) or not isinstance(runs, Sequence) or len(runs) == 0:
        raise ValueError(
            "runs must be a non-empty list of pilot runs, each the list of its round records; pass e.g. "
            "[r['rounds'] for r in results['runs']]."
        )
    tolerance = check_int(tolerance, "tolerance", minimum=0)
    plateaus: list[int | None] = []
    records_per_run = []
    for i, recs in enumerate(runs):
        recs = _check_records(recs)
        values = []
        for j, rec in enumerate(recs):
            v = _signal(rec, metric, j)
            if v is None:
                raise ValueError(
                    f"runs[{i}][{j}] has no {metric!r}; every record of a pilot run needs the metric of the learning "
                    f"curve (pass metric= the key your records use, e.g. 'accuracy')."
                )
            values.append(v)
        plateaus.append(plateau_round(values, min_gain=min_gain, window=window))
        records_per_run.append(recs)
    specs = list(DEFAULT_CANDIDATES if candidates is None else candidates)
    if not specs:
        raise ValueError(
            "candidates is empty; pass rule specs such as ['kappa', {'rule': 'margin', 'threshold': 0.02}]."
        )
    table: list[dict[str, Any]] = []
    best: tuple[Any, ...] | None = None
    chosen: StopRule | None = None
    for c, spec in enumerate(specs):
        rule = make_stop_rule(spec)
        if rule is None:
            raise ValueError(f"candidates[{c}] is {spec!r}, no rule; drop it or name a rule ({_choices(none=False)}).")
        stops = [replay(recs, rule).round for recs in records_per_run]
        within = early = late = never = 0
        offsets = []
        for stop, ref in zip(stops, plateaus):
            if ref is None:  # the curve never flattened: only never firing is on time
                within += stop is None
                early += stop is not None
            elif stop is None:
                never += 1
                late += 1
            else:
                offsets.append(stop - ref)
                within += abs(stop - ref) <= tolerance
                early += stop < ref - tolerance
                late += stop > ref + tolerance
        mean_offset = float(np.mean(offsets)) if offsets else None
        table.append(
            {
                "rule": stop_rule_spec(rule),
                "within": within,
                "early": early,
                "late": late,
                "never_fired": never,
                "mean_offset": mean_offset,
                "stops": stops,
            }
        )
        key = (within, -early, -abs(mean_offset) if mean_offset is not None else -math.inf)
        if best is None or key > best:  # strict: ties keep the earlier candidate
            best, chosen = key, rule
    assert chosen is not None  # specs is not empty
    return Calibration(chosen, table, plateaus)


def stop_signals(prev_pred: Any, pred: Any, batch_margins: Any) -> dict[str, float | None]:
    """The two stop signals of one round, for its record.

    Parameters
    ----------
    prev_pred : array-like of int, shape (s,), or None
        The classes the previous round's model predicts on the stop set; ``None`` at round 0.
    pred : array-like of int, shape (s,)
        The classes this round's model predicts on the same stop set (e.g. ``probs.argmax(axis=1)``).
    batch_margins : array-like of float, shape (k,), or None
        The margins (top-1 minus top-2 probability, :func:`cmal.uncertainty.margin`) of the batch selected in
        this round, under the model that selected it; ``None`` (or empty) when no batch was selected, as at
        round 0.

    Returns
    -------
    dict
        ``{"stop_agreement": cohen_kappa(prev_pred, pred) or None, "batch_mean_margin": mean margin or None}``,
        plain floats ready for JSON.

    Examples
    --------
    >>> stop_signals(None, [0, 1, 1], None)
    {'stop_agreement': None, 'batch_mean_margin': None}
    >>> stop_signals([0, 1, 1, 0], [0, 1, 1, 1], [0.25, 0.5])
    {'stop_agreement': 0.5, 'batch_mean_margin': 0.375}
    """
    current = _label_vector(pred, "pred")
    agreement = None if prev_pred is None else cohen_kappa(_label_vector(prev_pred, "prev_pred"), current)
    mean_margin = None
    if batch_margins is not None:
        m = np.asarray(batch_margins)
        if m.dtype == object or not np.issubdtype(m.dtype, np.number):
            raise ValueError(f"batch_margins must be numbers (one margin per batch point), got dtype {m.dtype}.")
        if m.ndim != 1:
            raise ValueError(f"batch_margins must be 1-D, one margin per batch point, got shape {m.shape}.")
        m = m.astype(np.float64)
        if m.size:
            if not np.isfinite(m).all():
                raise ValueError("batch_margins contains NaN or inf; compute margins from finite probabilities.")
            lo, hi = float(m.min()), float(m.max())
            if lo < -1e-6 or hi > 1 + 1e-6:
                raise ValueError(
                    f"batch_margins must be margins in [0, 1] (top-1 minus top-2 probability), got values in "
                    f"[{lo:.4g}, {hi:.4g}]; compute them with cmal.uncertainty.margin(probs)."
                )
            mean_margin = float(m.mean())
    return {_AGREEMENT_KEY: agreement, _MARGIN_KEY: mean_margin}
