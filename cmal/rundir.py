"""What a run directory holds, and whether a new run, a resume or a session may write into it.

The rules that keep saved work safe (docs/guide/saved_state.md, "What is refused, so nothing is lost"):

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

__all__ = ["RUN_ENTRIES", "check_new_run", "describe_work", "foreign_entries", "has_work", "saved_work"]


def saved_work(folder: str | os.PathLike) -> dict[str, Any]:
    """The work saved in ``folder``: seeds whose stage is saved, and each session's last saved round.

    Returns ``{"stages": [seed, ...], "sessions": {key: round}}`` (round ``None`` when the state is unreadable).
    """
    folder = Path(folder)
    stages = sorted(
        int(p.parent.name[4:]) for p in folder.glob("stages/seed*/stage.json*") if p.parent.name[4:].isdigit()
    )
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
    """One phrase for :func:`saved_work`'s result.

    For example ``"2 seed stage(s); sessions cluster-margin_seed0 at round 3"``.
    """
    parts = []
    if work["stages"]:
        parts.append(f"{len(work['stages'])} seed stage(s)")
    if work["sessions"]:
        shown = [f"{k} at round {r}" if r is not None else f"{k} (unreadable)" for k, r in work["sessions"].items()]
        parts.append("sessions " + ", ".join(shown[:4]) + (f" and {len(shown) - 4} more" if len(shown) > 4 else ""))
    return "; ".join(parts) or "no saved work"


def has_work(work: dict[str, Any]) -> bool:
    return bool(work["stages"] or work["sessions"])


#: What a run writes at the top of its folder (and the temporary files of its atomic writes, ".<name>.*.tmp").
RUN_ENTRIES = frozenset(
    {
        "config.json",
        "results.json",
        "stages",
        "sessions",
        "selections",
        "models",
        "labels",
        ".cmal.lock",
        ".cmal.lock.owner",
    }
)


def foreign_entries(folder: str | os.PathLike) -> list[str]:
    """Names at the top of ``folder`` that a run never writes (a user's own files)."""
    return sorted(
        p.name
        for p in Path(folder).iterdir()
        if p.name not in RUN_ENTRIES and not (p.name.startswith(".") and p.name.endswith(".tmp"))
    )


def check_new_run(folder: str | os.PathLike, flag: str = "out") -> str | None:
    """Whether a new run may start in ``folder``: ``None`` if it is missing or empty, a note if it is reused (an
    earlier start there saved no work), :class:`~cmal.state.StateError` if it holds saved work, files of the user's own,
    is a file, or is in use by another process.

    ``flag`` names the argument in messages (``"out"`` in Python, ``"--out"`` on the command line).
    """
    from cmal.locks import LOCK_NAME, DirectoryLock

    folder = Path(folder)
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise StateError(
            f"{flag}: {str(folder)!r} is a file; a run needs a directory (a new path, or an empty folder)."
        )
    if (folder / LOCK_NAME).exists():
        with DirectoryLock(folder, purpose="a check"):  # a folder another process works in: say who, not "resume"
            pass
    work = saved_work(folder)
    if has_work(work) and not (folder / "config.json").exists():
        raise StateError(
            f"{str(folder)!r} holds sessions saved by Session(...) ({describe_work(work)}), not a run. Continue them "
            f"with Session(..., out={str(folder)!r}, resume=True), choose another {flag}, or delete the folder to "
            "start over."
        )
    if has_work(work):
        raise StateError(
            f"{str(folder)!r} already holds a run ({describe_work(work)}). Continue it with "
            f"`cmal run --resume {folder}` (Python: cmal.loop.resume({str(folder)!r})), choose another {flag}, "
            f"or delete the folder to start over."
        )
    foreign = foreign_entries(folder)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise StateError(
            f"{flag}: {str(folder)!r} holds files of its own ({shown}); a run needs a new or empty "
            "folder, so that its files never mix with others. Choose another folder."
        )
    if (folder / "config.json").exists():
        return (
            f"reusing {str(folder)!r}: an earlier start there stopped before saving any work, so its "
            "config.json is replaced by this run's."
        )
    return None
