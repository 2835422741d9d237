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
    if "/" in module_name or "\\" in module_name or module_name.endswith(".py"):
        stem = module_name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].removesuffix(".py")
        raise ValueError(
            f"{what} {path!r} names a file; give the module's name instead, {stem}:{attr or 'object'}, "
            "and run from the folder that holds it (or add that folder to PYTHONPATH)."
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and module_name.split(".")[0] != err.name.split(".")[0]:
            # The module was found; something it imports is missing.
            raise ValueError(
                f"Cannot import {what} {path!r}: its module imports {err.name!r}, which was not "
                "found; install the package that provides it, or put that module beside the first "
                "one."
            ) from None
        raise ValueError(
            f"Cannot import {what} {path!r} (ModuleNotFoundError: {err}); give an importable "
            "'module:object' (a module in the current folder, or on PYTHONPATH)."
        ) from None
    except Exception as err:  # noqa: BLE001 - a syntax error or any failure while the user's module runs
        where = f" (line {err.lineno})" if isinstance(err, SyntaxError) and err.lineno else ""
        raise ValueError(
            f"Cannot import {what} {path!r}: importing {module_name!r} failed{where} with "
            f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}; "
            "fix the module."
        ) from None
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ValueError(
            f"Cannot import {what} {path!r}: module {module_name!r} has no {attr!r}; give an "
            "importable 'module:object' (a module in the current folder, or on PYTHONPATH)."
        ) from None
    return obj


def dotted_name(obj: Any) -> str:
    """``"module:qualname"`` of a function or class: how a run's ``config.json`` records the user's code.

    A function defined in a notebook gets ``"__main__:name"``, which the same kernel can import again.
    """
    module = getattr(obj, "__module__", None) or "__main__"
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__qualname__
    return f"{module}:{name}"
