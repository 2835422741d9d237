"""cmal: batch active learning with Cluster-Margin (Citovsky et al., NeurIPS 2021).

``import cmal`` is light: it loads neither TensorFlow nor any plotting or widget package. Submodules load
on first use (``cmal.hac``, ``cmal.strategies``, ...), and TensorFlow only inside functions that need a model.

Examples
--------
>>> import numpy as np, cmal
>>> rng = np.random.default_rng(0)
>>> clusters = cmal.hac.hac(rng.normal(size=(100, 4)), epsilon=2.0)
>>> probs = rng.dirichlet(np.ones(10), size=100)
>>> state = cmal.PoolState.create(probs=probs, clusters=clusters, labeled=[0, 1, 2])
>>> cmal.make_strategy("cluster-margin", k_m=20, random_state=0).select(state, 10).shape
(10,)
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# TensorFlow's C++ start-up chatter (oneDNN notices, CPU feature lines) buries cmal's own output; the user's
# own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: The installed version of cmal.
__version__ = "0.1.0"

_SUBMODULES = {
    "cli",
    "data",
    "distribute",
    "dotted",
    "embed",
    "graph_hac",
    "hac",
    "knn",
    "labels",
    "locks",
    "loop",
    "metrics",
    "models",
    "rundir",
    "scale",
    "session",
    "state",
    "strategies",
    "training",
    "uncertainty",
}
_EXPORTS = {
    "PoolState": "strategies",
    "make_strategy": "strategies",
    "available_strategies": "strategies",
    "register_strategy": "strategies",
    "load_dataset": "data",
    "from_arrays": "data",
    "linkage_tree": "hac",
    "build_tree": "hac",
    "resume": "loop",
    "RunConfig": "loop",
    "run": "loop",
}

__all__ = sorted(_SUBMODULES | set(_EXPORTS) | {"__version__"})


def __getattr__(name: str) -> Any:
    # PEP 562 lazy loading: `cmal.hac` or `cmal.PoolState` imports only what it needs.
    if name in _SUBMODULES:
        return importlib.import_module(f"cmal.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cmal.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cmal' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
