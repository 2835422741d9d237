"""What a run directory holds, and whether a new run, a resume or a session may write into it.

The rules that keep saved work safe (the README's "Saved state and resuming"):

* a new run is refused where saved work lies (a seed stage or a session's state), with the command that
  continues it; a folder where an earlier start saved nothing (it failed before its first step) is reused;
* a session refuses a folder that holds another configuration, and a saved session it was not asked to resume.

Examples
--------
>>> import tempfile
>>> from cmal.rundir import check_new_run, saved_work
>>> folder = tempfile.mkdtemp()
>>> saved_work(folder)
{'stages': [], 'sessions': {}}
>>> check_new_run(folder) is None          # an empty folder: a new run may start here
True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cmal.state import StateError, read_checked

__all__ = ["check_new_run", "describe_work", "saved_work"]


def saved_work(folder: str | os.PathLike) -> dict[str, Any]:
    """The work saved in ``folder``: seeds whose stage is saved, and each session's last saved round.

    Returns ``{"stages": [seed, ...], "sessions": {key: round}}`` (round ``None`` when the state is unreadable).
    """
    folder = Path(folder)
    stages = sorted(int(p.parent.name[4:]) for p in folder.glob("stages/seed*/stage.json*")
                    if p.parent.name[4:].isdigit())
    sessions: dict[str, Any] = {}
    for p in sorted(folder.glob("sessions/*.state.json*")):
        key = p.name.split(".state.json")[0]
        if key in sessions:
            continue
        try:
            sessions[key] = int(read_checked(p.with_name(f"{key}.state.json"))["round"])
        except (StateError, KeyError, TypeError, ValueError):
            sessions[key] = None
    return {"stages": sorted(set(stages)), "sessions": sessions}


def describe_work(work: dict[str, Any]) -> str:
    """One phrase for :func:`saved_work`'s result, e.g. ``"2 seed stage(s); sessions cluster-margin_seed0 at round 3"``."""
    parts = []
    if work["stages"]:
        parts.append(f"{len(work['stages'])} seed stage(s)")
    if work["sessions"]:
        shown = [f"{k} at round {r}" if r is not None else f"{k} (unreadable)" for k, r in work["sessions"].items()]
        parts.append("sessions " + ", ".join(shown[:4]) + (f" and {len(shown) - 4} more" if len(shown) > 4 else ""))
    return "; ".join(parts) or "no saved work"


def has_work(work: dict[str, Any]) -> bool:
    return bool(work["stages"] or work["sessions"])


def check_new_run(folder: str | os.PathLike, flag: str = "out") -> str | None:
    """Whether a new run may start in ``folder``: ``None`` if it is missing or holds no run, a note if it is
    reused (an earlier start there saved no work), :class:`StateError` if it holds saved work or is a file.

    ``flag`` names the argument in messages (``"out"`` in Python, ``"--out"`` on the command line).
    """
    folder = Path(folder)
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise StateError(f"{flag}: {str(folder)!r} is a file; a run needs a directory (a new path, or an empty "
                         "folder).")
    work = saved_work(folder)
    if has_work(work):
        raise StateError(
            f"{str(folder)!r} already holds a run ({describe_work(work)}). Continue it with "
            f"`cmal run --resume {folder}` (Python: cmal.loop.resume({str(folder)!r})), choose another {flag}, "
            f"or delete the folder to start over.")
    if (folder / "config.json").exists():
        return (f"reusing {str(folder)!r}: an earlier start there stopped before saving any work, so its "
                "config.json is replaced by this run's.")
    return None
