"""Labels from people: a saved store for the batch being labeled, and exchange files for labeling tools.

:class:`LabelStore` holds one session's pending batch and the answers given so far (a class, "skip" or
"unsure" per item). Every answer is written to disk at once (atomically, with a checksum, see
:func:`cmal.state.write_checked`), so a closed browser tab or a crashed kernel loses nothing already clicked,
and another process (the ``cmal`` command waiting in a terminal) sees it.

Exchange files: :func:`export_csv` and :func:`export_label_studio` write a batch for an external tool (CSV,
or Label Studio's JSON task list with image references); :func:`read_labels` reads the answers back
(CSV ``pool_index,label`` or a Label Studio JSON export) and :meth:`LabelStore.import_file` checks every
item (unknown indices, unknown classes, duplicates, conflicting labels) and applies nothing unless the whole
file is valid, reporting every problem in one :class:`LabelImportError` (a problem repeated on many rows is
one line naming the rows). A label that disagrees with an answer already stored is a conflict too, applied only
with ``overwrite=True``.

Several writers at once (two browser tabs, two kernels, ``cmal label import``) never lose an answer: each
change re-reads the file and writes the merged answers under a lock (:func:`cmal.locks.file_lock`).

Examples
--------
>>> import tempfile, numpy as np
>>> from cmal.labels import LabelStore
>>> folder = tempfile.mkdtemp()
>>> store = LabelStore.create(f"{folder}/labels.json", batch=[12, 40, 7], classes=["cat", "dog"],
...                           clusters=[3, 3, 9], round=1)
>>> store.give(40, "dog"); store.give(12, "cat"); store.mark(7, "unsure")
>>> store.complete, store.remaining().tolist()
(False, [7])
>>> store.give(7, 1); store.complete, store.labels().tolist()
(True, [0, 1, 1])
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmal.locks import file_lock
from cmal.state import StateError, atomic_write, read_checked, write_checked

__all__ = ["LabelStore", "LabelImportError", "export_csv", "export_label_studio", "read_labels", "write_images"]

MARKS = ("skip", "unsure")


class LabelImportError(ValueError):
    """An import file has problems; ``problems`` lists them item by item. Nothing was applied."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        super().__init__(f"{path}: {len(problems)} problem(s); no label was applied:\n  {shown}")


class LabelStore:
    """The labels of one pending batch, saved after every answer.

    Use :meth:`create` for a new batch and :meth:`open` to continue one (another process, a restarted
    kernel).

    Attributes
    ----------
    path : Path
    batch : ndarray of shape (k_t,), int64
        Pool indices, in the order the strategy chose them.
    classes : list of str
        Class names; labels are stored as class ids (positions in this list).
    clusters : ndarray of shape (k_t,) or None
        The cluster each item came from (shown next to it).
    round : int
        The round this batch will be trained in.
    """

    def __init__(self, path: Path, doc: dict[str, Any]) -> None:
        self.path = path
        self.batch = np.asarray(doc["batch"], dtype=np.int64)
        self.classes = [str(c) for c in doc["classes"]]
        self.clusters = None if doc.get("clusters") is None else np.asarray(doc["clusters"], dtype=np.int64)
        self.round = int(doc["round"])
        self._answers: dict[int, int | str] = {int(k): v for k, v in doc["answers"].items()}
        self._pos = {int(i): p for p, i in enumerate(self.batch)}
        self.last_import: dict[str, int] | None = None

    # ------------------------------------------------------------ creation
    @classmethod
    def create(
        cls, path: str | os.PathLike, *, batch: Any, classes: Sequence[Any], clusters: Any = None, round: int = 1
    ) -> LabelStore:
        """A new store for ``batch``; replaces any store at ``path`` (whose batch must be finished)."""
        batch = np.asarray(batch, dtype=np.int64).reshape(-1)
        if np.unique(batch).size != batch.size:
            raise ValueError("batch has repeated pool indices; a batch lists each example once.")
        classes = [str(c) for c in classes]
        if not classes or len(set(classes)) != len(classes):
            raise ValueError(f"classes must be distinct names, got {classes}.")
        if clusters is not None:
            clusters = np.asarray(clusters, dtype=np.int64).reshape(-1)
            if clusters.shape != batch.shape:
                raise ValueError(f"clusters must have one entry per batch item ({batch.size}), got {clusters.size}.")
        doc = {
            "batch": batch.tolist(),
            "classes": classes,
            "clusters": None if clusters is None else clusters.tolist(),
            "round": int(round),
            "answers": {},
        }
        write_checked(path, doc)
        return cls(Path(path), doc)

    @classmethod
    def open(cls, path: str | os.PathLike) -> LabelStore:
        """Load a saved store (falls back to the previous good version if the file is damaged)."""
        doc = read_checked(path)
        try:
            return cls(Path(path), doc)
        except (KeyError, TypeError, ValueError) as err:
            raise StateError(f"{str(path)!r} is not a label store ({err}).") from None

    def reload(self) -> LabelStore:
        """Read answers given elsewhere (another process) since this object was loaded."""
        fresh = LabelStore.open(self.path)
        if not np.array_equal(fresh.batch, self.batch):
            raise StateError(f"{str(self.path)!r} now holds another batch.")
        self._answers = fresh._answers
        return self

    # ------------------------------------------------------------ answers
    def class_id(self, label: Any) -> int:
        """A class id from an id or a class name; ``ValueError`` naming the valid classes otherwise."""
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            if 0 <= int(label) < len(self.classes):
                return int(label)
        elif isinstance(label, str) and label in self.classes:
            return self.classes.index(label)
        raise ValueError(
            f"unknown class {label!r}; use one of {self.classes} (or their ids 0..{len(self.classes) - 1})."
        )

    def _check_index(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or int(index) not in self._pos:
            raise ValueError(f"pool index {index!r} is not in this batch.")
        return int(index)

    def give(self, index: Any, label: Any) -> None:
        """Record ``label`` (class id or name) for pool ``index`` and save at once."""
        index, cid = self._check_index(index), self.class_id(label)
        self._update({index: cid})

    def mark(self, index: Any, mark: str) -> None:
        """Mark pool ``index`` as ``"skip"`` or ``"unsure"`` (it still needs a label before training)."""
        index = self._check_index(index)
        if mark not in MARKS:
            raise ValueError(f"mark must be one of {MARKS}, got {mark!r}.")
        self._update({index: mark})

    def clear(self, index: Any) -> None:
        """Forget the answer for pool ``index``."""
        self._update({self._check_index(index): None})

    def answer(self, index: Any) -> int | str | None:
        """The class id, ``"skip"``, ``"unsure"`` or None for pool ``index``."""
        return self._answers.get(self._check_index(index))

    def _update(self, changes: dict[int, int | str | None]) -> None:
        """Apply ``changes`` (None forgets an answer) to the answers on disk and save, under the store's lock.

        Re-reading first merges what other writers saved since this object last read the file: without it,
        two tabs answering alternately would each write back their own stale copy (the last writer wins)."""
        with file_lock(self.path):
            if self.path.exists() or self.path.with_name(self.path.name + ".prev").exists():
                fresh = LabelStore.open(self.path)
                if not np.array_equal(fresh.batch, self.batch):
                    raise StateError(
                        f"{str(self.path)!r} now holds another batch (round {fresh.round}); this "
                        "batch was finished elsewhere. Reopen the store."
                    )
                self._answers = fresh._answers
            for index, value in changes.items():
                if value is None:
                    self._answers.pop(index, None)
                else:
                    self._answers[index] = value
            write_checked(
                self.path,
                {
                    "batch": self.batch.tolist(),
                    "classes": self.classes,
                    "clusters": None if self.clusters is None else self.clusters.tolist(),
                    "round": self.round,
                    "answers": {str(k): v for k, v in self._answers.items()},
                },
            )

    # ------------------------------------------------------------ status
    def remaining(self) -> np.ndarray:
        """Batch items without a class yet (unanswered, skipped or unsure), in batch order."""
        return np.array([i for i in self.batch if not isinstance(self._answers.get(int(i)), int)], dtype=np.int64)

    @property
    def complete(self) -> bool:
        return self.remaining().size == 0

    def counts(self) -> dict[str, int]:
        """How many items are labeled, skipped, unsure and open."""
        values = [self._answers.get(int(i)) for i in self.batch]
        return {
            "labeled": sum(isinstance(v, int) for v in values),
            "skip": values.count("skip"),
            "unsure": values.count("unsure"),
            "open": values.count(None),
        }

    def answered_names(self) -> list[str]:
        """The class name answered for each batch item, in batch order; ``""`` where it has no class yet."""
        return [self.classes[a] if isinstance(a := self._answers.get(int(i)), int) else "" for i in self.batch]

    def labels(self) -> np.ndarray:
        """Class ids in batch order, shape (k_t,); ``ValueError`` if any item has no class yet."""
        missing = self.remaining()
        if missing.size:
            raise ValueError(
                f"{missing.size} of {self.batch.size} batch items have no label yet "
                f"(first: pool index {int(missing[0])})."
            )
        return np.array([self._answers[int(i)] for i in self.batch], dtype=np.int64)

    # ------------------------------------------------------------ import
    def import_file(self, path: str | os.PathLike, *, overwrite: bool = False) -> int:
        """Apply the labels in a CSV or Label Studio JSON file, all or nothing; return how many answers changed.

        Every row is checked first: the pool index must be in this batch, the label a known class (a name, an
        id, or an integer-valued number such as ``2.0``, as spreadsheets and pandas write ids), an index may
        appear twice only with the same label, and a label that differs from a class already stored for the item
        is a conflict unless ``overwrite=True``. With any problem, :class:`LabelImportError` lists them all (a
        problem repeated on many rows in one line) and the store is unchanged. A file with no label at all is
        an error too. ``last_import`` counts the rows: ``new``, ``overwritten`` and ``unchanged`` (already
        applied).
        """
        rows, info = _read_rows(path)
        if not rows:
            raise LabelImportError(str(path), [_no_labels_reason(info)])
        problems = _Problems()
        seen: dict[int, tuple[str, int]] = {}
        for where, index, label in rows:
            try:
                idx = int(index)
                if str(idx) != str(index).strip() or idx not in self._pos:
                    raise ValueError
            except (TypeError, ValueError):
                problems.add(
                    ("index",),
                    where,
                    f"pool index {index!r} is not in this batch",
                    item=repr(index),
                    plural="pool indices {items} are not in this batch",
                )
                continue
            cid = self._class_from_file(label)
            if cid is None:
                problems.add(
                    ("class", str(label)), where, f"unknown class {label!r} (classes: {', '.join(self.classes)})"
                )
                continue
            if idx in seen:
                first_where, first = seen[idx]
                if first == cid:
                    problems.add(
                        ("duplicate",),
                        where,
                        f"pool index {idx} is listed twice with the same label",
                        item=str(idx),
                        plural="pool indices {items} are listed twice with the same label",
                    )
                else:
                    problems.add(
                        None,
                        where,
                        f"pool index {idx}: conflicting label ({self.classes[first]!r} at "
                        f"{first_where}, {self.classes[cid]!r} here)",
                    )
                continue
            seen[idx] = (where, cid)
        with file_lock(self.path):
            # Compared with the answers on disk now, under the lock: another writer may have answered meanwhile.
            fresh = LabelStore.open(self.path)
            if not np.array_equal(fresh.batch, self.batch):
                raise StateError(
                    f"{str(self.path)!r} now holds another batch (round {fresh.round}); this one "
                    f"(round {self.round}) was trained on already. Reopen the store."
                )
            self._answers = fresh._answers
            for idx, (where, cid) in seen.items():
                stored = self._answers.get(idx)
                if isinstance(stored, int) and stored != cid and not overwrite:
                    problems.add(
                        ("stored",),
                        where,
                        f"pool index {idx} is already labeled {self.classes[stored]!r}, "
                        f"the file says {self.classes[cid]!r} (to replace stored answers: --overwrite, or "
                        "overwrite=True)",
                        item=str(idx),
                        plural="pool indices {items} already have other labels than the file's (to replace "
                        "stored answers: --overwrite, or overwrite=True)",
                    )
            if problems:
                raise LabelImportError(str(path), problems.lines())
            counts = {"new": 0, "overwritten": 0, "unchanged": 0, "rows": len(rows)}
            for idx, (_, cid) in seen.items():
                stored = self._answers.get(idx)
                kind = "unchanged" if stored == cid else "overwritten" if isinstance(stored, int) else "new"
                counts[kind] += 1
                self._answers[idx] = cid
            if counts["new"] or counts["overwritten"]:
                write_checked(
                    self.path,
                    {
                        "batch": self.batch.tolist(),
                        "classes": self.classes,
                        "clusters": None if self.clusters is None else self.clusters.tolist(),
                        "round": self.round,
                        "answers": {str(k): v for k, v in self._answers.items()},
                    },
                )
        self.last_import = counts
        return counts["new"] + counts["overwritten"]

    def _class_from_file(self, label: Any) -> int | None:
        """A class id from a file's cell: a class name first, then an id, then an integer-valued number."""
        text = str(label).strip()
        if text in self.classes:
            return self.classes.index(text)
        try:
            number = float(text)
        except ValueError:
            return None
        if number.is_integer() and 0 <= number < len(self.classes):
            return int(number)
        return None


class _Problems:
    """Import problems, with one line for a problem repeated on many rows."""

    def __init__(self) -> None:
        self._groups: dict[Any, list[tuple[str, str, str | None, str | None]]] = {}

    def add(self, key: Any, where: str, text: str, *, item: str | None = None, plural: str | None = None) -> None:
        """``text``: the problem on one row; ``plural``: the same for several rows, ``{items}`` listing each
        row's ``item``. Problems with the same ``key`` are grouped; ``key=None`` is never grouped."""
        key = ("single", len(self._groups)) if key is None else key
        self._groups.setdefault(key, []).append((where, text, item, plural))

    def __bool__(self) -> bool:
        return bool(self._groups)

    def lines(self) -> list[str]:
        out = []
        for items in self._groups.values():
            where, text, _, plural = items[0]
            if len(items) == 1:
                out.append(f"{where}: {text}")
                continue
            listed = [i for _, _, i, _ in items if i is not None]
            shown = ", ".join(listed[:5]) + (f" and {len(listed) - 5} more" if len(listed) > 5 else "")
            out.append(
                f"{_places([w for w, _, _, _ in items])} ({len(items)} rows): "
                + (plural.format(items=shown) if plural else text)
            )
        return out


def _places(wheres: list[str]) -> str:
    """'lines 3, 4, 5 and 7 more' from ['line 3', 'line 4', ...]."""
    kind = wheres[0].split(" ")[0]
    numbers = [w.split(" ", 1)[1] for w in wheres]
    shown = ", ".join(numbers[:6]) + (f" and {len(numbers) - 6} more" if len(numbers) > 6 else "")
    return f"{kind}s {shown}"


# ------------------------------------------------------------------ files
def export_csv(
    path: str | os.PathLike,
    batch: Any,
    *,
    clusters: Any = None,
    images: Sequence[str] | None = None,
    classes: Sequence[Any] | None = None,
    labels: Sequence[Any] | None = None,
) -> None:
    """Write a batch as CSV: ``pool_index,cluster,image,label`` with a label column to fill in.

    ``images`` are references (paths or URLs) for each item, e.g. from :func:`write_images`. ``labels`` fills
    the label column (e.g. the class names already answered, ``""`` for open items), so a re-export of a
    partly labeled batch shows what is done; importing it back counts those rows as already applied.
    """
    batch = np.asarray(batch, dtype=np.int64).reshape(-1)
    buf = io.StringIO()
    w = csv.writer(buf)
    if classes is not None:
        buf.write(f"# classes: {', '.join(map(str, classes))}\n")
    w.writerow(["pool_index", "cluster", "image", "label"])
    for k, i in enumerate(batch):
        w.writerow(
            [
                int(i),
                "" if clusters is None else int(np.asarray(clusters)[k]),
                "" if images is None else images[k],
                "" if labels is None else labels[k],
            ]
        )
    with atomic_write(path, "w") as f:
        f.write(buf.getvalue())


def export_label_studio(path: str | os.PathLike, batch: Any, images: Sequence[str], *, clusters: Any = None) -> None:
    """Write a batch as a Label Studio task list (JSON): one task per item with ``data.image`` (a reference
    Label Studio can open), ``data.pool_index`` and ``data.cluster``. Import it into a project with an
    image classification template; export the annotations as JSON and read them with :func:`read_labels`.
    """
    batch = np.asarray(batch, dtype=np.int64).reshape(-1)
    if len(images) != batch.size:
        raise ValueError(f"images must have one reference per batch item ({batch.size}), got {len(images)}.")
    tasks = [
        {
            "id": k + 1,
            "data": {
                "image": images[k],
                "pool_index": int(i),
                "cluster": None if clusters is None else int(np.asarray(clusters)[k]),
            },
        }
        for k, i in enumerate(batch)
    ]
    with atomic_write(path, "w") as f:
        json.dump(tasks, f, indent=1)


def write_images(folder: str | os.PathLike, images: np.ndarray, batch: Any, *, prefix: str = "") -> list[str]:
    """Save the batch's images as PNG files named by pool index; returns their references
    (``prefix`` + file name, e.g. ``"/data/local-files/?d=batch/"`` for Label Studio's local storage).
    Needs Pillow (the ``widgets`` extra)."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("writing images needs Pillow: pip install 'cmal[widgets]'.") from exc

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    refs = []
    for i in np.asarray(batch, dtype=np.int64).reshape(-1):
        name = f"{int(i)}.png"
        arr = np.asarray(images[int(i)], dtype=np.float64)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        # Pool images are floats in [0, 1] (cmal.data); integer images are taken as 0..255.
        arr = np.clip(arr * 255 if arr.max() <= 1.0 else arr, 0, 255).round().astype(np.uint8)
        with atomic_write(folder / name, "wb") as f:
            Image.fromarray(arr).save(f, format="PNG")
        refs.append(prefix + name)
    return refs


def read_labels(path: str | os.PathLike) -> list[tuple[str, Any, Any]]:
    """Rows ``(where, pool_index, label)`` from a CSV (columns ``pool_index`` and ``label``; lines starting
    with ``#`` are comments; empty labels are skipped) or a Label Studio JSON export (``data.pool_index`` and
    the first choice of the latest annotation). ``where`` is ``"line N"`` (the file's own line number) or
    ``"task N"``. Values are returned as found, for :meth:`LabelStore.import_file` to check."""
    return _read_rows(path)[0]


def _read_rows(path: str | os.PathLike) -> tuple[list[tuple[str, Any, Any]], dict[str, Any]]:
    """:func:`read_labels`' rows, and what the file held (for the error when it holds no label)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"label file {str(path)!r} does not exist.")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets often start a CSV with a BOM
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not a text file; labels come as CSV or Label Studio JSON.") from None
    if path.suffix.lower() == ".json":
        return _read_label_studio(path, text)
    numbered = [(n, ln) for n, ln in enumerate(text.splitlines(), start=1) if not ln.lstrip().startswith("#")]
    reader = csv.reader([ln for _, ln in numbered])
    header = next(reader, None)
    if header is None or not {"pool_index", "label"} <= {h.strip() for h in header}:
        hint = ""
        if header and len(header) == 1 and any(sep in header[0] for sep in ";\t"):
            hint = " The file separates columns with ';' or tabs: save it as comma-separated CSV."
        raise ValueError(f"{str(path)!r}: a CSV of labels needs the columns pool_index and label, got {header}.{hint}")
    header = [h.strip() for h in header]
    rows, filled, total = [], dict.fromkeys(header, 0), 0
    # One record per line (cmal's exports never quote a line break), so each row keeps its line number.
    for (line, _), values in zip(numbered[1:], reader):
        if not any(v.strip() for v in values):
            continue
        total += 1
        row = dict(zip(header, values))
        for name in header:
            filled[name] += bool((row.get(name) or "").strip())
        label = (row.get("label") or "").strip()
        if label:
            rows.append((f"line {line}", row.get("pool_index"), label))
    return rows, {"kind": "csv", "rows": total, "filled": filled}


def _no_labels_reason(info: dict[str, Any]) -> str:
    """Why a file gave no label, and where the labels may have gone."""
    if info["kind"] == "json":
        return (
            f"no task of {info['tasks']} has an annotation with a choice; export the annotated tasks from "
            "Label Studio (JSON), after labeling them."
        )
    if info["rows"] == 0:
        return "the file has no rows below its header; fill in the label column of the exported batch."
    others = [n for n, k in info["filled"].items() if n not in ("pool_index", "label", "cluster", "image") and k]
    hint = (
        f"; column(s) {', '.join(map(repr, others))} hold values: are the labels in the wrong column? "
        if others
        else ". "
    )
    return f"the label column is empty in all {info['rows']} rows{hint}Write each class in the label column."


def _read_label_studio(path: Path, text: str) -> tuple[list[tuple[str, Any, Any]], dict[str, Any]]:
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(path)!r} is not valid JSON ({err}).") from None
    if not isinstance(tasks, list):
        raise ValueError(f"{str(path)!r}: a Label Studio export is a JSON list of tasks.")
    rows = []
    for n, task in enumerate(tasks, start=1):
        where = f"task {n}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            rows.append((where, None, None))
            continue
        annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not annotations:
            continue  # not labeled yet
        label = None
        for result in annotations[-1].get("result") or []:
            choices = (result.get("value") or {}).get("choices") if isinstance(result, dict) else None
            if choices:
                label = choices[0]
                break
        if label is not None:
            rows.append((where, task["data"].get("pool_index"), label))
    return rows, {"kind": "json", "tasks": len(tasks)}
