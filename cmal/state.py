"""The run directory's files, written atomically: a crash mid-write leaves the previous file intact.

Every writer goes through :func:`atomic_write`: write a temporary file in the same folder, flush and fsync
it, ``os.replace`` it over the target (atomic on POSIX and Windows), then fsync the folder so the rename
itself survives a power loss. Readers never unpickle: JSON and ``.npy``/``.npz`` with ``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "NpyOutput",
    "atomic_write",
    "load_npy",
    "read_json",
    "save_npy",
    "save_npz",
    "write_json",
    "write_checked",
    "read_checked",
    "StateError",
    "StateRecoveredWarning",
]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` only if the ``with`` block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file readable by its owner only; give it the mode the file had, or the one a plain
        # open() would give (umask), so people labeling one batch from several accounts can all read it.
        try:
            wanted = path.stat().st_mode & 0o777
        except FileNotFoundError:
            wanted = 0o666 & ~_UMASK
        os.chmod(tmp, wanted)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # not every platform can open a folder (Windows)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it: set and restore at once (here, at import, before
    os.umask(mask)  # any thread of cmal's could create a file in between)
    return mask


_UMASK = _umask()


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats so the file is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False)
    with atomic_write(path, "w") as f:
        f.write(text + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, with a clear error when it is missing or damaged."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{str(path)!r} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not valid JSON ({err}); the file is damaged.") from None


def save_npy(path: str | os.PathLike, array: Any) -> None:
    """Save one array as ``.npy``, atomically."""
    array = np.asarray(array)
    if array.dtype == object:
        raise ValueError("Refusing to save an object array: it would need pickle to load.")
    with atomic_write(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """Save several arrays as ``.npz``, atomically."""
    with atomic_write(path, "wb") as f:
        # allow_pickle=True is numpy's default, spelled out so that no array can be taken for the flag.
        np.savez(f, allow_pickle=True, **{k: np.asarray(v) for k, v in arrays.items()})


def load_npy(
    path: str | os.PathLike, name: str, *, mmap: bool = False, shape: tuple[int | None, ...] | None = None
) -> np.ndarray:
    """Load a ``.npy`` file without pickle; ``name`` is the argument it came from, for error messages.

    ``mmap=True`` maps it read-only instead of reading it (pools larger than memory). ``shape`` checks the
    dimensions (``None`` entries match anything), so a file of the wrong shape fails here with its name
    rather than deep inside a computation.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{name}: file {str(path)!r} does not exist.")
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{name}: cannot read {str(path)!r} as a .npy array without pickle ({err}).") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        keys = list(arr.files)
        arr.close()
        first = keys[0] if keys else "x"
        raise ValueError(
            f"{name}: {str(path)!r} is an .npz archive (arrays: {', '.join(keys) or 'none'}), not one "
            f".npy array; save the array you mean on its own, e.g. "
            f"np.save('{Path(path).stem}.npy', np.load({str(path)!r})[{first!r}])."
        )
    if shape is not None:
        ok = arr.ndim == len(shape) and all(want is None or got == want for got, want in zip(arr.shape, shape))
        if not ok:
            names = iter(("rows", "columns", "depth", "channels"))
            want = (
                "("
                + ", ".join(next(names, "any") if w is None else str(w) for w in shape)
                + (",)" if len(shape) == 1 else ")")
            )
            raise ValueError(f"{name}: {str(path)!r} has shape {arr.shape}, expected {want}.")
    return arr


class NpyOutput:
    """An output array filled piece by piece: in memory when ``out`` is None, else a memory-mapped ``.npy``
    written under a temporary name and renamed to ``out`` by :meth:`NpyOutput.finish`, so a crash leaves either the
    complete file or nothing under the final name.

    >>> o = NpyOutput(None, (3,)); o.array[:] = 1; o.finish().tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, out: str | os.PathLike | None, shape: tuple[int, ...], dtype: Any = np.float32) -> None:
        self.out = None if out is None else Path(out)
        self.tmp: Path | None = None
        self.array: np.ndarray
        if self.out is None:
            self.array = np.empty(shape, dtype=dtype)
            return
        if self.out.suffix != ".npy":
            raise ValueError(f"out must be a path ending in .npy, got {str(self.out)!r}.")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.out.with_name(f".{self.out.name}.partial.npy")
        self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=dtype, shape=shape)

    def finish(self) -> np.ndarray:
        """The result: the in-memory array, or the renamed file mapped read-only."""
        if self.tmp is None:
            return self.array
        # A file-backed output: __init__ set out and mapped the array with open_memmap.
        assert self.out is not None and isinstance(self.array, np.memmap)
        self.array.flush()
        del self.array
        os.replace(self.tmp, self.out)
        return np.load(self.out, mmap_mode="r", allow_pickle=False)

    def discard(self) -> None:
        """Drop a partial file after an error."""
        if self.tmp is not None:
            # Drop the mapping before the file (Windows cannot delete a mapped file); finish() may have done it.
            if hasattr(self, "array"):
                del self.array
            self.tmp.unlink(missing_ok=True)


class StateError(ValueError):
    """A run directory's saved state cannot be used (missing, damaged, or from another pool/config)."""


class StateRecoveredWarning(UserWarning):
    """A damaged state file was found and the previous good version was used instead."""


def _digest(payload: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(payload, sort_keys=True, allow_nan=False).encode()).hexdigest()


def write_checked(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as JSON with a SHA-256 of its content, keeping the previous version as ``*.prev``.

    Atomic (temporary file, fsync, rename). :func:`read_checked` verifies the digest, so a file damaged after
    writing (a disk error, a truncating copy, a hand edit) is detected, and falls back to ``*.prev``.
    """
    path = Path(path)
    payload = _jsonable(payload)
    text = json.dumps({"sha256": _digest(payload), "payload": payload}, allow_nan=False)
    if path.exists():
        # The current good version becomes the fallback; os.replace keeps this atomic too.
        prev = path.with_name(path.name + ".prev")
        with contextlib.suppress(OSError):
            if _check_file(path)[0] is not None:
                os.replace(path, prev)
    with atomic_write(path, "w") as f:
        f.write(text + "\n")


def _check_file(path: Path) -> tuple[Any, str | None]:
    """(payload, None) when valid, else (None, what is wrong)."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None, "it does not exist"
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        return None, f"it is not valid JSON ({err})"
    if not isinstance(doc, dict) or set(doc) != {"sha256", "payload"}:
        return None, "it is not a cmal state file (no sha256/payload)"
    if _digest(doc["payload"]) != doc["sha256"]:
        return None, "its content does not match its SHA-256 (the file was modified or damaged)"
    return doc["payload"], None


def read_checked(path: str | os.PathLike) -> Any:
    """Read a file written by :func:`write_checked`.

    A damaged file falls back to its previous version with a :class:`StateRecoveredWarning` that says what
    was wrong; when neither is usable, :class:`StateError` names the file and the problem.
    """
    import warnings

    path = Path(path)
    payload, problem = _check_file(path)
    if problem is None:
        return payload
    prev = path.with_name(path.name + ".prev")
    payload2, problem2 = _check_file(prev)
    if problem2 is None and path.exists():
        warnings.warn(
            f"{str(path)!r} is unusable: {problem}. Using the previous state {str(prev)!r}.",
            StateRecoveredWarning,
            stacklevel=2,
        )
        return payload2
    if not path.exists() and problem2 is None:
        # The new file was never written (a crash before the rename): the previous one is the state.
        return payload2
    raise StateError(f"{str(path)!r} is unusable: {problem}; no good previous version ({problem2}).")
