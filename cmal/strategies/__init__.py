"""Selection strategies and the name registry shared by notebooks, the CLI and the widgets.

Examples
--------
>>> import numpy as np
>>> from cmal.strategies import PoolState, make_strategy, available_strategies
>>> available_strategies()[:4]
['badge', 'badge-partitioned', 'cluster-margin', 'cluster-margin-auto']
>>> rng = np.random.default_rng(0)
>>> probs = rng.dirichlet(np.ones(3), size=50)
>>> state = PoolState.create(probs=probs, clusters=rng.integers(0, 5, 50), labeled=[0, 1])
>>> make_strategy("cluster-margin", k_m=20, random_state=0).select(state, 5).shape
(5,)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from cmal.strategies.base import PoolState, Strategy, lowest_k
from cmal.strategies.cluster_margin import (
    AUTO_MAX_RATIO,
    ClusterMargin,
    ClusterMarginSelection,
    ClusterRandom,
)
from cmal.strategies.cold_start import ProbCover, TypiClust, choose_delta, coverage, typicality
from cmal.strategies.geometry import Badge, CoreSet, Partitioned, gradient_embedding_parts
from cmal.strategies.rules import RULES, Rule, occurrence_rank
from cmal.strategies.uncertain import (
    EntropySampling,
    LeastConfidenceSampling,
    MarginSampling,
    UncertaintySampling,
)
from cmal.strategies.uniform import RandomSampling

__all__ = [
    "Badge",
    "CoreSet",
    "EntropySampling",
    "LeastConfidenceSampling",
    "Partitioned",
    "ProbCover",
    "RULES",
    "TypiClust",
    "UncertaintySampling",
    "gradient_embedding_parts",
    "register_rule",
    "ClusterMargin",
    "ClusterMarginSelection",
    "ClusterRandom",
    "MarginSampling",
    "PoolState",
    "RandomSampling",
    "Rule",
    "Strategy",
    "available_strategies",
    "choose_delta",
    "coverage",
    "lowest_k",
    "make_strategy",
    "occurrence_rank",
    "register_strategy",
    "typicality",
]

_REGISTRY: dict[str, Callable[..., Strategy]] = {}

_Factory = TypeVar("_Factory", bound=Callable[..., Strategy])


@overload
def register_strategy(
    name: str, factory: None = None, *, overwrite: bool = False
) -> Callable[[_Factory], _Factory]: ...
@overload
def register_strategy(name: str, factory: _Factory, *, overwrite: bool = False) -> _Factory: ...
def register_strategy(
    name: str, factory: Callable[..., Strategy] | None = None, *, overwrite: bool = False
) -> Callable[..., Any]:
    """Register a strategy constructor under ``name`` (usable as a decorator).

    ``factory`` is called with keyword arguments (``random_state`` always, plus whatever the caller passes
    that the factory accepts) and must return a :class:`~cmal.strategies.base.Strategy`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}.")

    def add(f: Callable[..., Strategy]) -> Callable[..., Strategy]:
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"A strategy named {name!r} is already registered; pass overwrite=True to replace it.")
        _REGISTRY[name] = f
        return f

    return add if factory is None else add(factory)


def available_strategies() -> list[str]:
    """Registered strategy names, sorted."""
    return sorted(_REGISTRY)


# Options that generic callers (the loop, the CLI) pass to every strategy; each strategy takes the ones it
# understands. Any other keyword must be accepted by the strategy, or it is an error.
_SHARED_OPTIONS = frozenset({"k_m", "k_m_ratio", "aggregate"})


def _from_dotted_path(name: str) -> Callable[..., Strategy]:
    """``"package.module:obj"`` or ``"package.module.obj"``: a Strategy class, a factory, or a rule function."""
    from cmal.dotted import import_dotted

    try:
        obj = import_dotted(name, "strategy")
    except ValueError as err:
        raise ValueError(f"{err} Registered strategies: {', '.join(available_strategies())}.") from None
    if isinstance(obj, type) and issubclass(obj, Strategy):
        return obj
    if callable(obj):
        params = inspect.signature(obj).parameters
        if "groups" in params or (len(params) >= 3 and next(iter(params)) != "random_state"):
            return _rule_factory(obj)  # a diversity rule: (groups, k_t, rng[, scores])
        return obj
    raise ValueError(f"{name!r} is neither a Strategy, a strategy factory nor a rule function.")


def _rule_factory(rule: Callable[..., Any]) -> Callable[..., Strategy]:
    def factory(**params: Any) -> Strategy:
        return ClusterMargin(rule=rule, **params)

    # inspect.signature honours __signature__ on any callable; typeshed does not declare it on functions.
    factory.__signature__ = inspect.signature(ClusterMargin)  # type: ignore[attr-defined]
    return factory


def register_rule(name: str, rule: Callable[..., Any], *, overwrite: bool = False) -> Callable[..., Any]:
    """Register a diversity rule as the strategy ``name``: Cluster-Margin with this rule as its last part.

    The strategy is then usable by name everywhere (loop, CLI, widgets, benchmarks) and inherits the contract
    tests. Returns ``rule`` (usable as a decorator via ``functools.partial``).

    Examples
    --------
    >>> import numpy as np
    >>> from cmal.strategies import register_rule, make_strategy, PoolState
    >>> from cmal.strategies.rules import round_robin
    >>> def biggest_first(groups, k_t, rng, scores=None):
    ...     return round_robin(groups, k_t, rng, -np.unique(groups, return_counts=True)[1])
    >>> _ = register_rule("doc-biggest-first", biggest_first, overwrite=True)
    >>> state = PoolState.create(probs=np.full((6, 2), .5), clusters=[0, 0, 0, 1, 1, 2])
    >>> make_strategy("doc-biggest-first", k_m=6, random_state=0).select(state, 3).shape
    (3,)
    """
    register_strategy(name, _rule_factory(rule), overwrite=overwrite)
    return rule


def make_strategy(name: str, **params: Any) -> Strategy:
    """Build the strategy registered as ``name`` (or importable as ``"module:object"``).

    Parameters
    ----------
    name : str
        One of :func:`available_strategies`, or a dotted path to a Strategy class, a factory, or a rule function
        (then wrapped as Cluster-Margin with that rule).
    **params
        Constructor parameters (``random_state``, ``k_m``, ...). The shared options ``k_m``, ``k_m_ratio`` and
        ``aggregate`` are dropped for strategies that do not take them, so one call site can build any strategy.
    """
    if name in _REGISTRY:
        factory = _REGISTRY[name]
    elif isinstance(name, str) and ("." in name or ":" in name):
        factory = _from_dotted_path(name)
    else:
        raise ValueError(
            f"Unknown strategy {name!r}; choose one of {', '.join(available_strategies())} "
            "(or register your own with cmal.strategies.register_strategy / register_rule)."
        )
    sig = inspect.signature(factory)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    accepted = {k: v for k, v in params.items() if takes_any or k in sig.parameters or k not in _SHARED_OPTIONS}
    try:
        strategy = factory(**accepted)
    except TypeError as err:
        raise ValueError(f"Strategy {name!r} does not accept these parameters: {err}") from None
    if not isinstance(strategy, Strategy):
        raise ValueError(f"{name!r} built a {type(strategy).__name__}, not a cmal Strategy.")
    strategy.name = name  # the name it was asked by, e.g. a rule variant of ClusterMargin
    return strategy


register_strategy("random", RandomSampling)
register_strategy("margin", MarginSampling)
register_strategy("cluster-margin", ClusterMargin)
register_strategy("cluster-random", ClusterRandom)
# The adaptive candidate count under its own name, so one paired run can compare it with the paper's k_m
# (a shared k_m from the loop or the CLI does not apply to it).
register_strategy(
    "cluster-margin-auto",
    lambda *, aggregate="mean", auto_max_ratio=AUTO_MAX_RATIO, random_state=None: ClusterMargin(
        k_m="auto", aggregate=aggregate, auto_max_ratio=auto_max_ratio, random_state=random_state
    ),
)
register_strategy("entropy", EntropySampling)
register_strategy("least-confidence", LeastConfidenceSampling)
register_strategy("coreset", CoreSet)
register_strategy("badge", Badge)
# Cold start: embeddings only, for the seed set (or any later round).
register_strategy("typiclust", TypiClust)
register_strategy("probcover", ProbCover)
register_strategy(
    "coreset-partitioned", lambda *, m=10, random_state=None: Partitioned(CoreSet, m=m, random_state=random_state)
)
register_strategy(
    "badge-partitioned", lambda *, m=10, random_state=None: Partitioned(Badge, m=m, random_state=random_state)
)
# Cluster-Margin with each shipped rule other than the paper's ("cluster-margin" itself).
for _rule_name, _rule in RULES.items():
    if _rule_name != "ascending":
        register_rule(f"cluster-margin-{_rule_name}", _rule)
