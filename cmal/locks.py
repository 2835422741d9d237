"""One writer at a time: inter-process locks on run directories and label stores.

A run directory is written by one process at a time (a ``cmal run``, a notebook's :class:`cmal.session.Session`);
a second one is refused at once with a message naming the holder (process id, host, command, since when), never
left to interleave its writes with the first. A label store is written by many (two browser tabs, two kernels,
``cmal label import``), so its writers queue for a short lock around each read-modify-write instead.

The locks are ``flock`` locks through the ``filelock`` package: the operating system drops them when the
holding process dies, so a crash or SIGKILL never leaves a stale lock behind. Within one process the run-directory
lock is re-entrant (a notebook may hold several sessions of one run, and :func:`cmal.loop.run` holds it around
the sessions it creates): the process is the writer.

Examples
--------
>>> import tempfile
>>> from cmal.locks import DirectoryLock
>>> folder = tempfile.mkdtemp()
>>> with DirectoryLock(folder, purpose="a demo"):
...     with DirectoryLock(folder, purpose="nested, same process"):   # re-entrant within a process
...         pass
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cmal.state import StateError

__all__ = ["DirectoryBusyError", "DirectoryLock", "LOCK_NAME", "file_lock"]

#: The lock file in a run folder, flock'ed by its one writer (filelock truncates it on open, so it holds
#: nothing).
LOCK_NAME = ".cmal.lock"
OWNER_NAME = ".cmal.lock.owner"  # who holds it: written after the lock is taken, removed on release

# Process-wide holders: path -> [FileLock, count]. flock locks taken through two open files conflict even
# within one process, so a second holder in this process shares the first one's lock instead of opening another.
_HELD: dict[str, list[Any]] = {}
_GUARD = threading.Lock()


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _same_file(held: tuple[int, int] | None, path: Path) -> bool:
    return held is not None and _file_id(path) == held


class DirectoryBusyError(StateError):
    """Another process holds the run directory; the message names it and what to do."""


def _owner_text(folder: Path) -> str:
    try:
        owner = json.loads((folder / OWNER_NAME).read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(owner["since"])))
        return f"process {owner['pid']} on {owner['host']} ({owner['purpose']}: {owner['command']}), since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


class DirectoryLock:
    """Hold ``folder`` as its one writer; :class:`DirectoryBusyError` at once if another process holds it.

    Use as a context manager, or call :meth:`DirectoryLock.acquire` / :meth:`DirectoryLock.release` (a
    :class:`cmal.session.Session` holds its run directory for its lifetime). ``folder`` is created when the lock
    is taken.

    Parameters
    ----------
    folder : path
        The run directory.
    purpose : str
        What holds it, shown to a refused second writer (e.g. ``"cmal run"``, ``"Session cluster-margin_seed0"``).
    """

    def __init__(self, folder: str | os.PathLike, *, purpose: str = "cmal") -> None:
        self.folder = Path(folder)
        self.purpose = purpose
        self._held = False
        self._entry: list[Any] | None = None

    def acquire(self) -> DirectoryLock:
        """Take the folder's lock without waiting; :class:`DirectoryBusyError` names the process holding it."""
        if self._held:
            return self
        from filelock import FileLock, Timeout

        self.folder.mkdir(parents=True, exist_ok=True)
        key = str(self.folder.resolve())
        with _GUARD:
            entry = _HELD.get(key)
            if entry is not None and not _same_file(entry[2], self.folder / LOCK_NAME):
                # The folder was deleted (and maybe made again) while this process held it: that lock guards a
                # file nobody else can see any more. Its holders keep it until they release it; this one takes a
                # lock on the folder as it is now.
                del _HELD[key]
                entry = None
            if entry is None:
                # thread_local=False: a Session may be released from another thread (a finalizer) than it was taken in.
                lock = FileLock(str(self.folder / LOCK_NAME), timeout=0, thread_local=False)
                try:
                    lock.acquire()
                except Timeout:
                    raise DirectoryBusyError(
                        f"{str(self.folder)!r} is in use by {_owner_text(self.folder)}. One process writes a run "
                        "directory at a time: wait for it to finish or stop it (the lock is released when it "
                        "exits, even if it is killed; a notebook's Session releases it with session.close()), or "
                        "use another directory."
                    ) from None
                entry = _HELD[key] = [lock, 0, _file_id(self.folder / LOCK_NAME)]
                owner = {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "purpose": self.purpose,
                    "command": " ".join(sys.argv) or sys.executable,
                    "since": time.time(),
                }
                with contextlib.suppress(OSError):  # the owner note is informative only
                    (self.folder / OWNER_NAME).write_text(json.dumps(owner))
            entry[1] += 1
        self._entry = entry
        self._held = True
        return self

    def release(self) -> None:
        """Give the lock back (once per :meth:`acquire` in this process); a second call does nothing."""
        if not self._held:
            return
        key = str(self.folder.resolve())
        with _GUARD:
            entry = self._entry
            assert entry is not None  # acquire() set it with _held
            self._held = False
            entry[1] -= 1
            if entry[1] <= 0:
                if _HELD.get(key) is entry:
                    del _HELD[key]
                    with contextlib.suppress(OSError):
                        (self.folder / OWNER_NAME).unlink()
                entry[0].release()

    @property
    def held(self) -> bool:
        return self._held

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, *, timeout: float = 30.0) -> Iterator[None]:
    """Hold ``<path>.lock`` around a short read-modify-write of ``path``; writers queue (up to ``timeout`` s).

    Used by :class:`cmal.labels.LabelStore`, whose answers come from several processes at once.
    """
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path.with_name(path.name + ".lock")), timeout=timeout)
    try:
        with lock:
            yield
    except Timeout:
        raise StateError(f"{str(path)!r} stayed locked by another writer for {timeout:.0f} s; try again.") from None
