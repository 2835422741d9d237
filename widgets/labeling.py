"""Labeling a batch by hand: a thumbnail grid with the cluster of each item, class buttons and keys.

:class:`LabelingModel` is plain Python over a :class:`cmal.labels.LabelStore`: every answer is saved to the
run directory the moment it is given, so closing the browser tab or restarting the kernel loses nothing
already clicked. :class:`LabelingWidget` is a thin ipywidgets view of it: one tile per item (thumbnail,
pool index, cluster, current answer), a button per class plus "skip" and "unsure", and a key box: typing a
class's key (its first character, or the digit of its id) labels the current item and moves on.

Examples
--------
>>> import tempfile, numpy as np
>>> from cmal.labels import LabelStore
>>> from cmal_widgets.labeling import LabelingModel
>>> store = LabelStore.create(tempfile.mkdtemp() + "/l.json", batch=[5, 9], classes=["0", "1"], clusters=[2, 7])
>>> model = LabelingModel(store)
>>> model.current, model.assign("1"), model.current
(5, 5, 9)
>>> _ = model.press("0"); model.store.complete
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cmal.labels import MARKS, LabelStore

__all__ = ["LabelingModel", "LabelingWidget"]


class LabelingModel:
    """Which item is current, what each item's answer is, and the keys that give answers.

    Parameters
    ----------
    store : cmal.labels.LabelStore
        The pending batch (e.g. ``session.label_store``); answers are written to it immediately.
    images : array of shape (n_pool, h, w[, c]), optional
        Pool images in [0, 1] for thumbnails.
    """

    def __init__(self, store: LabelStore, images: np.ndarray | None = None) -> None:
        self.store = store
        self.images = images
        self.position = 0
        self._listeners: list[Callable[[], None]] = []
        # Keys: the digit of each class id (0-9), else the first free character of the class name.
        self.keys: dict[str, int | str] = {}
        for cid, name in enumerate(store.classes):
            for key in ([str(cid)] if cid < 10 else []) + [name[:1].lower()]:
                if key and key not in self.keys:
                    self.keys[key] = cid
                    break
        self.keys.setdefault("s", "skip")
        self.keys.setdefault("?", "unsure")
        self._skip_answered()

    # ------------------------------------------------------------ state
    @property
    def batch(self) -> np.ndarray:
        return self.store.batch

    @property
    def current(self) -> int | None:
        """Pool index of the item the next key press labels (None when every item has an answer)."""
        return int(self.batch[self.position]) if self.position < self.batch.size else None

    def on_change(self, fn: Callable[[], None]) -> None:
        self._listeners.append(fn)

    def _changed(self) -> None:
        for fn in self._listeners:
            fn()

    def _skip_answered(self) -> None:
        """Move to the first item without an answer, from the current one on (wrapping)."""
        n = self.batch.size
        for step in range(n):
            p = (self.position + step) % n
            if self.store.answer(int(self.batch[p])) is None:
                self.position = p
                return
        self.position = n

    def select(self, index: int) -> None:
        """Make pool ``index`` the current item (clicking its tile)."""
        hits = np.flatnonzero(self.batch == index)
        if hits.size == 0:
            raise ValueError(f"pool index {index} is not in this batch.")
        self.position = int(hits[0])
        self._changed()

    # ------------------------------------------------------------ answers
    def assign(self, label: Any, index: int | None = None) -> int:
        """Give ``label`` (class id, class name, ``"skip"`` or ``"unsure"``) to ``index`` (default: the current
        item), save it, and move to the next unanswered item. Returns the pool index answered."""
        index = self.current if index is None else int(index)
        if index is None:
            raise ValueError("every item has an answer; click an item to change its answer.")
        if label in MARKS:
            self.store.mark(index, label)
        else:
            self.store.give(index, label)
        self.position = int(np.flatnonzero(self.batch == index)[0]) + 1
        if self.position >= self.batch.size:
            self.position = 0
        self._skip_answered()
        self._changed()
        return index

    def press(self, key: str) -> int | None:
        """Handle a typed key: a class key labels the current item; unknown keys are ignored (None)."""
        key = key.strip().lower()[-1:] if key.strip() else ""
        if key not in self.keys or self.current is None:
            return None
        return self.assign(self.keys[key])

    def caption(self, index: int) -> str:
        answer = self.store.answer(index)
        shown = "—" if answer is None else (answer if isinstance(answer, str) else self.store.classes[answer])
        cluster = (
            ""
            if self.store.clusters is None
            else f" · c{int(self.store.clusters[np.flatnonzero(self.batch == index)[0]])}"
        )
        return f"#{index}{cluster} · {shown}"

    def status(self) -> str:
        c = self.store.counts()
        total = self.batch.size
        return (
            f"{c['labeled']}/{total} labeled, {c['skip']} skipped, {c['unsure']} unsure — saved to "
            f"{self.store.path.name}" + (" — complete" if self.store.complete else "")
        )


class LabelingWidget:
    """The ipywidgets view of a :class:`LabelingModel`: display ``widget`` itself (the output then also carries the
    static fallback; ``widget.widget`` is the bare ipywidgets box)."""

    def __init__(self, model: LabelingModel, *, columns: int = 10, size: int = 64) -> None:
        import ipywidgets as w

        from cmal_widgets.thumbnails import thumbnail_uri

        self.model = model
        self._tiles: dict[int, Any] = {}
        self._images: dict[int, str] = {}  # each tile's <img> HTML, reused by the static snapshot
        tiles = []
        for index in model.batch:
            index = int(index)
            self._images[index] = (
                f'<img src="{thumbnail_uri(model.images[index], size=size)}" width="{size}" '
                f'height="{size}" style="image-rendering:pixelated"/>'
                if model.images is not None
                else ""
            )
            img = w.HTML(self._images[index])
            button = w.Button(
                description=model.caption(index),
                layout=w.Layout(width=f"{size + 40}px"),
                tooltip=f"pool index {index}: click to make it current",
            )
            button.add_class("cmal-label-tile")
            button.on_click(lambda _b, i=index: model.select(i))
            self._tiles[index] = button
            tiles.append(w.VBox([img, button], layout=w.Layout(align_items="center", margin="2px")))
        self.grid = w.GridBox(tiles, layout=w.Layout(grid_template_columns=f"repeat({columns}, {size + 48}px)"))
        self.buttons = []
        for cid, name in enumerate(model.store.classes):
            key = next((k for k, v in model.keys.items() if v == cid), "")
            b = w.Button(
                description=f"{name}" + (f" [{key}]" if key and key != name else ""), layout=w.Layout(width="auto")
            )
            b.add_class("cmal-label-class")
            b.on_click(lambda _b, c=cid: self._answer(c))
            self.buttons.append(b)
        for mark in MARKS:
            b = w.Button(
                description=mark, button_style="warning" if mark == "unsure" else "", layout=w.Layout(width="auto")
            )
            b.on_click(lambda _b, m=mark: self._answer(m))
            self.buttons.append(b)
        self.keybox = w.Text(placeholder="type a class key: labels the current item", layout=w.Layout(width="320px"))
        self.keybox.observe(self._on_key, names="value")
        self.current = w.HTML()
        self.status = w.HTML()
        self.widget = w.VBox([w.HBox([self.current, self.keybox]), w.HBox(self.buttons), self.status, self.grid])
        model.on_change(self.refresh)
        self.refresh()

    def _ipython_display_(self) -> None:
        from cmal_widgets.static import show

        show(self)

    def static_parts(self) -> list[Any]:
        """The current item, the class and mark buttons, the status and the batch's tiles with their answers (see
        :mod:`cmal_widgets.static`)."""
        m = self.model
        buttons = " ".join(f"<button disabled>{b.description}</button>" for b in self.buttons)
        tiles = "".join(
            f"<div style='display:inline-block;text-align:center;margin:2px'>{self._images.get(int(i), '')}"
            f"<br><span style='font-size:11px'>{m.caption(int(i))}</span></div>"
            for i in m.batch
        )
        return [f"{self.current.value}<div style='margin:4px 0'>{buttons}</div>{self.status.value}<div>{tiles}</div>"]

    def _answer(self, label: Any) -> None:
        try:
            self.model.assign(label)
        except ValueError as err:
            self.status.value = f"<b style='color:#b00'>{err}</b>"

    def _on_key(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.model.press(change["new"])
            self.keybox.value = ""

    def refresh(self) -> None:
        m = self.model
        for index, button in self._tiles.items():
            button.description = m.caption(index)
            button.button_style = (
                "info" if index == m.current else ("success" if isinstance(m.store.answer(index), int) else "")
            )
        self.current.value = f"<b>current: #{m.current}</b>" if m.current is not None else "<b>all answered</b>"
        self.status.value = m.status()
