"""Selection strategies and the name registry shared by notebooks, the CLI and the widgets.

Examples
--------
>>> import numpy as np
>>> from cmal.strategies import PoolState, make_strategy, available_strategies
>>> available_strategies()
['cluster-margin', 'cluster-random', 'margin', 'random']
>>> rng = np.random.default_rng(0)
>>> probs = rng.dirichlet(np.ones(3), size=50)
>>> state = PoolState.create(probs=probs, clusters=rng.integers(0, 5, 50), labeled=[0, 1])
>>> make_strategy("cluster-margin", k_m=20, random_state=0).select(state, 5).shape
(5,)
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from cmal.strategies.base import PoolState, Strategy, lowest_k
from cmal.strategies.cluster_margin import (
    ClusterMargin,
    ClusterMarginSelection,
    ClusterRandom,
    Rule,
    occurrence_rank,
    round_robin_ascending,
)
from cmal.strategies.uncertain import MarginSampling
from cmal.strategies.uniform import RandomSampling

__all__ = [
    "ClusterMargin",
    "ClusterMarginSelection",
    "ClusterRandom",
    "MarginSampling",
    "PoolState",
    "RandomSampling",
    "Rule",
    "Strategy",
    "available_strategies",
    "lowest_k",
    "make_strategy",
    "occurrence_rank",
    "register_strategy",
    "round_robin_ascending",
]

_REGISTRY: dict[str, Callable[..., Strategy]] = {}


def register_strategy(name: str, factory: Callable[..., Strategy] | None = None, *, overwrite: bool = False):
    """Register a strategy constructor under ``name`` (usable as a decorator).

    ``factory`` is called with keyword arguments (``random_state`` always, plus whatever the caller passes
    that the factory accepts) and must return a :class:`Strategy`.
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


def make_strategy(name: str, **params: Any) -> Strategy:
    """Build the strategy registered as ``name``.

    Parameters
    ----------
    name : str
        One of :func:`available_strategies`.
    **params
        Constructor parameters (``random_state``, ``k_m``, ...). The shared options ``k_m``, ``k_m_ratio`` and
        ``aggregate`` are dropped for strategies that do not take them, so one call site can build any strategy.
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown strategy {name!r}; choose one of {', '.join(available_strategies())} "
            "(or register your own with cmal.strategies.register_strategy)."
        )
    factory = _REGISTRY[name]
    sig = inspect.signature(factory)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    accepted = {k: v for k, v in params.items() if takes_any or k in sig.parameters or k not in _SHARED_OPTIONS}
    try:
        return factory(**accepted)
    except TypeError as err:
        raise ValueError(f"Strategy {name!r} does not accept these parameters: {err}") from None


register_strategy("random", RandomSampling)
register_strategy("margin", MarginSampling)
register_strategy("cluster-margin", ClusterMargin)
register_strategy("cluster-random", ClusterRandom)
