"""Labels from people: a saved store for the batch being labeled, and exchange files for labeling tools.

:class:`LabelStore` holds one session's pending batch and the answers given so far (a class, "skip" or
"unsure" per item). Every answer is written to disk at once (atomically, with a checksum, see
:func:`cmal.state.write_checked`), so a closed browser tab or a crashed kernel loses nothing already clicked,
and another process (the ``cmal`` command waiting in a terminal) sees it.

Exchange files: :func:`export_csv` and :func:`export_label_studio` write a batch for an external tool (CSV,
or Label Studio's JSON task list with image references); :func:`read_labels` reads the answers back
(CSV ``pool_index,label`` or a Label Studio JSON export) and :meth:`LabelStore.import_file` checks every
item (unknown indices, unknown classes, duplicates, conflicting labels) and applies nothing unless the whole
file is valid, reporting every problem in one :class:`LabelImportError`.

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
from pathlib import Path
from typing import Any, Sequence

import numpy as np

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

    # ------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | os.PathLike, *, batch: Any, classes: Sequence[Any], clusters: Any = None,
               round: int = 1) -> "LabelStore":
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
        doc = {"batch": batch.tolist(), "classes": classes,
               "clusters": None if clusters is None else clusters.tolist(), "round": int(round), "answers": {}}
        write_checked(path, doc)
        return cls(Path(path), doc)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "LabelStore":
        """Load a saved store (falls back to the previous good version if the file is damaged)."""
        doc = read_checked(path)
        try:
            return cls(Path(path), doc)
        except (KeyError, TypeError, ValueError) as err:
            raise StateError(f"{str(path)!r} is not a label store ({err}).") from None

    def reload(self) -> "LabelStore":
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
        raise ValueError(f"unknown class {label!r}; use one of {self.classes} (or their ids 0..{len(self.classes) - 1}).")

    def _check_index(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or int(index) not in self._pos:
            raise ValueError(f"pool index {index!r} is not in this batch.")
        return int(index)

    def give(self, index: Any, label: Any) -> None:
        """Record ``label`` (class id or name) for pool ``index`` and save at once."""
        index, cid = self._check_index(index), self.class_id(label)
        self._answers[index] = cid
        self._save()

    def mark(self, index: Any, mark: str) -> None:
        """Mark pool ``index`` as ``"skip"`` or ``"unsure"`` (it still needs a label before training)."""
        index = self._check_index(index)
        if mark not in MARKS:
            raise ValueError(f"mark must be one of {MARKS}, got {mark!r}.")
        self._answers[index] = mark
        self._save()

    def clear(self, index: Any) -> None:
        """Forget the answer for pool ``index``."""
        self._answers.pop(self._check_index(index), None)
        self._save()

    def answer(self, index: Any) -> int | str | None:
        """The class id, ``"skip"``, ``"unsure"`` or None for pool ``index``."""
        return self._answers.get(self._check_index(index))

    def _save(self) -> None:
        write_checked(self.path, {"batch": self.batch.tolist(), "classes": self.classes,
                                  "clusters": None if self.clusters is None else self.clusters.tolist(),
                                  "round": self.round, "answers": {str(k): v for k, v in self._answers.items()}})

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
        return {"labeled": sum(isinstance(v, int) for v in values), "skip": values.count("skip"),
                "unsure": values.count("unsure"), "open": values.count(None)}

    def labels(self) -> np.ndarray:
        """Class ids in batch order, shape (k_t,); ``ValueError`` if any item has no class yet."""
        missing = self.remaining()
        if missing.size:
            raise ValueError(f"{missing.size} of {self.batch.size} batch items have no label yet "
                             f"(first: pool index {int(missing[0])}).")
        return np.array([self._answers[int(i)] for i in self.batch], dtype=np.int64)

    # ------------------------------------------------------------ import
    def import_file(self, path: str | os.PathLike) -> int:
        """Apply the labels in a CSV or Label Studio JSON file, all or nothing; returns how many were applied.

        Every row is checked first: the pool index must be in this batch, the label a known class, and an
        index may appear twice only with the same label (a duplicate is reported, a conflict too). With any
        problem, :class:`LabelImportError` lists them all and the store is unchanged.
        """
        rows = read_labels(path)
        problems: list[str] = []
        seen: dict[int, tuple[int, int]] = {}
        for line, index, label in rows:
            where = f"{line}: pool index {index!r}"
            try:
                idx = int(index)
                if str(idx) != str(index).strip() or idx not in self._pos:
                    raise ValueError
            except (TypeError, ValueError):
                problems.append(f"{where} is not in this batch")
                continue
            try:
                cid = self.class_id(label if not str(label).isdigit() or label in self.classes else int(label))
            except ValueError:
                problems.append(f"{where}: unknown class {label!r} (classes: {', '.join(self.classes)})")
                continue
            if idx in seen:
                first_line, first = seen[idx]
                kind = "duplicate" if first == cid else (
                    f"conflicting label ({self.classes[first]!r} at {first_line}, {self.classes[cid]!r} here)")
                problems.append(f"{where}: {kind}")
                continue
            seen[idx] = (line, cid)
        if problems:
            raise LabelImportError(str(path), problems)
        for idx, (_, cid) in seen.items():
            self._answers[idx] = cid
        self._save()
        return len(seen)


# ------------------------------------------------------------------ files
def export_csv(path: str | os.PathLike, batch: Any, *, clusters: Any = None, images: Sequence[str] | None = None,
               classes: Sequence[Any] | None = None) -> None:
    """Write a batch as CSV: ``pool_index,cluster,image,label`` with an empty label column to fill in.

    ``images`` are references (paths or URLs) for each item, e.g. from :func:`write_images`.
    """
    batch = np.asarray(batch, dtype=np.int64).reshape(-1)
    buf = io.StringIO()
    w = csv.writer(buf)
    if classes is not None:
        buf.write(f"# classes: {', '.join(map(str, classes))}\n")
    w.writerow(["pool_index", "cluster", "image", "label"])
    for k, i in enumerate(batch):
        w.writerow([int(i), "" if clusters is None else int(np.asarray(clusters)[k]),
                    "" if images is None else images[k], ""])
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
    tasks = [{"id": k + 1, "data": {"image": images[k], "pool_index": int(i),
                                    "cluster": None if clusters is None else int(np.asarray(clusters)[k])}}
             for k, i in enumerate(batch)]
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
    the first choice of the latest annotation). Values are returned as found, for :meth:`LabelStore.import_file`
    to check."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"label file {str(path)!r} does not exist.")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        return _read_label_studio(path, text)
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    if reader.fieldnames is None or not {"pool_index", "label"} <= set(reader.fieldnames):
        raise ValueError(f"{str(path)!r}: a CSV of labels needs the columns pool_index and label, got "
                         f"{reader.fieldnames}.")
    return [(f"row {n}", row["pool_index"], row["label"].strip())
            for n, row in enumerate(reader, start=2) if (row.get("label") or "").strip()]


def _read_label_studio(path: Path, text: str) -> list[tuple[str, Any, Any]]:
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
    return rows
