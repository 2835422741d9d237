"""User code named by a dotted path: ``"package.module:object"`` (or ``"package.module.object"``).

Strategies, diversity rules and model builders can all be the user's own code, given on the command line and
saved in a run's ``config.json`` as a path that a later ``--resume`` imports again.

Examples
--------
>>> import_dotted("math:sqrt")(16.0)
4.0
>>> dotted_name(import_dotted("os.path.join"))
'posixpath:join'
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["dotted_name", "import_dotted", "is_dotted"]


def is_dotted(name: Any) -> bool:
    """True for a string that looks like ``module:object`` or ``module.object`` (not a registered name)."""
    return isinstance(name, str) and (":" in name or "." in name)


def import_dotted(path: str, what: str = "object") -> Any:
    """Import ``"module:object"`` or ``"module.object"``; ``object`` may itself be dotted (``Class.method``).

    Raises
    ------
    ValueError
        One line naming the path, what failed and the fix; ``what`` names the thing in the message ("model").
    """
    if not is_dotted(path):
        raise ValueError(f"{what} {path!r} is not a dotted path; write it as 'module:object'.")
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"Cannot import {what} {path!r} ({type(err).__name__}: {err}); give an importable "
                         "'module:object' (a module in the current folder, or on PYTHONPATH).") from None
    return obj


def dotted_name(obj: Any) -> str:
    """``"module:qualname"`` of a function or class: how a run's ``config.json`` records the user's code.

    A function defined in a notebook gets ``"__main__:name"``, which the same kernel can import again.
    """
    module = getattr(obj, "__module__", None) or "__main__"
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__qualname__
    return f"{module}:{name}"
