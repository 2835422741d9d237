"""Cluster browser: clusters sorted by size with thumbnails, the round-robin order of a Cluster-Margin
batch, and how many batch points came from each cluster.

Examples
--------
>>> import numpy as np
>>> from cmal_widgets.browser import ClusterBrowserModel
>>> m = ClusterBrowserModel(clusters=np.array([0, 0, 0, 1, 2, 2]), labels=np.array([3, 3, 5, 1, 2, 2]))
>>> [(r["cluster"], r["size"], r["majority"]) for r in m.rows()]
[(1, 1, 1), (2, 2, 2), (0, 3, 3)]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cmal._validation import check_labels
from cmal.metrics import cluster_label_table
from cmal.strategies import ClusterMarginSelection

__all__ = ["ClusterBrowser", "ClusterBrowserModel"]


class ClusterBrowserModel:
    """What the browser lists.

    Parameters
    ----------
    clusters : array (n,)
        Cluster id per pool point.
    images : array (n, h, w[, c]), optional
    labels : array (n,), optional
        True labels (for majority label and purity per cluster).
    plan : ClusterMarginSelection, optional
        A Cluster-Margin selection (``ClusterMargin.explain``); when given, :meth:`rows` lists the clusters
        holding candidates, in round-robin order.
    """

    def __init__(
        self,
        clusters: Any,
        images: np.ndarray | None = None,
        labels: Any = None,
        plan: ClusterMarginSelection | None = None,
    ) -> None:
        self.clusters = check_labels(clusters, len(clusters), "clusters")
        self.images = images
        self.labels = None if labels is None else check_labels(labels, self.clusters.size, "labels")
        self.plan = plan
        self.sizes = np.bincount(self.clusters)
        self._table = cluster_label_table(self.clusters, self.labels) if self.labels is not None else None

    def set_plan(self, plan: ClusterMarginSelection | None) -> None:
        self.plan = plan

    def members(self, cluster: int, limit: int | None = None) -> np.ndarray:
        """Pool indices in ``cluster`` (ascending), at most ``limit``."""
        if not 0 <= int(cluster) < self.sizes.size:
            raise ValueError(f"cluster must be in [0, {self.sizes.size}), got {cluster}.")
        return np.flatnonzero(self.clusters == cluster)[:limit]

    def _row(self, c: int) -> dict[str, Any]:
        row: dict[str, Any] = {"cluster": int(c), "size": int(self.sizes[c])}
        if self._table is not None:
            row["majority"] = int(self._table["majority"][c])
            row["purity"] = float(self._table["purity"][c])
        return row

    def rows(self, *, order: str = "ascending", limit: int | None = None) -> list[dict[str, Any]]:
        """One dict per cluster.

        With a plan: the clusters holding candidates, in round-robin order, each with ``candidates``,
        ``picked`` (count) and ``batch`` (the picked pool indices). Without: every cluster sorted by size
        (``order`` "ascending" or "descending").
        """
        if self.plan is not None:
            p = self.plan
            out = []
            for rank, (c, n_cand, n_pick) in enumerate(zip(p.cluster_order, p.cluster_counts, p.cluster_picked)):
                row = self._row(int(c))
                row.update(
                    rank=rank,
                    candidates=int(n_cand),
                    picked=int(n_pick),
                    batch=p.indices[p.batch_clusters == c].tolist(),
                )
                out.append(row)
            return out[:limit]
        if order not in ("ascending", "descending"):
            raise ValueError(f"order must be 'ascending' or 'descending', got {order!r}.")
        ids = np.argsort(self.sizes, kind="stable")
        if order == "descending":
            ids = ids[::-1]
        return [self._row(int(c)) for c in ids[:limit]]

    def pick_sequence(self) -> list[dict[str, int]]:
        """The batch in pick order: ``{"step", "pass", "cluster", "index"}`` per pick (needs a plan)."""
        if self.plan is None:
            return []
        p = self.plan
        return [
            {"step": i, "pass": int(ps), "cluster": int(c), "index": int(ix)}
            for i, (ps, c, ix) in enumerate(zip(p.batch_pass, p.batch_clusters, p.indices))
        ]

    def html(self, *, order: str = "ascending", limit: int = 30, thumbs: int = 10, size: int = 36) -> str:
        """The browser as an HTML table (thumbnails of picked points outlined in red)."""
        from cmal_widgets.thumbnails import thumbnail_uri

        rows = self.rows(order=order, limit=limit)
        head = (
            ["#", "cluster", "size"]
            + (["candidates", "picked"] if self.plan is not None else [])
            + (["majority", "purity"] if self._table is not None else [])
            + ["examples"]
        )
        body = []
        for i, r in enumerate(rows):
            cells = [str(r.get("rank", i)), str(r["cluster"]), str(r["size"])]
            if self.plan is not None:
                cells += [str(r["candidates"]), str(r["picked"])]
            if self._table is not None:
                cells += [str(r["majority"]), f"{r['purity']:.0%}"]
            if self.images is not None:
                picked = r.get("batch", [])
                shown = list(picked) + [j for j in self.members(r["cluster"], thumbs).tolist() if j not in picked]
                imgs = "".join(
                    f'<img src="{thumbnail_uri(self.images[j], size=size)}" width="{size}" title="#{j}" '
                    f'style="margin:1px;{"outline:2px solid #d62728" if j in picked else ""}"/>'
                    for j in shown[:thumbs]
                )
            else:
                imgs = ", ".join(map(str, self.members(r["cluster"], thumbs)))
            cells.append(imgs)
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        header = "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
        # Why this many candidates (k_m="auto" says what it chose): shown above the table.
        why = (
            f"<p style='font-size:12px'>k_m = {self.plan.k_m}: {self.plan.k_m_reason}</p>"
            if self.plan is not None and self.plan.k_m_reason
            else ""
        )
        return f'{why}<table style="font-size:12px">{header}{"".join(body)}</table>'


class ClusterBrowser:
    """Renders a :class:`ClusterBrowserModel` (HTML table with an order toggle and a row limit)."""

    def __init__(self, model: ClusterBrowserModel, *, limit: int = 30) -> None:
        import ipywidgets as w

        self.model = model
        self.order = w.ToggleButtons(options=["ascending", "descending"], description="size order")
        self.limit = w.IntSlider(value=limit, min=5, max=200, description="rows")
        self.table = w.HTML(layout=w.Layout(max_height="480px", overflow="auto"))
        self.order.observe(lambda _: self.refresh(), names="value")
        self.limit.observe(lambda _: self.refresh(), names="value")
        self.widget = w.VBox([w.HBox([self.order, self.limit]), self.table])
        self.refresh()

    def _ipython_display_(self) -> None:
        from cmal_widgets.static import show

        show(self)

    def static_parts(self) -> list[Any]:
        """The size order and row limit, then the table (see :mod:`cmal_widgets.static`)."""
        order = "round-robin order of the plan" if self.model.plan is not None else f"size order {self.order.value}"
        # The live table scrolls within 480 px; so does the snapshot, rather than running for pages.
        return [
            f"<p style='font-size:12px'>{order}, {self.limit.value} rows</p>"
            f"<div style='max-height:480px;overflow:auto'>{self.table.value}</div>"
        ]

    def show_plan(self, plan: ClusterMarginSelection | None) -> None:
        self.model.set_plan(plan)
        self.refresh()

    def refresh(self) -> None:
        # With a plan the rows follow the round-robin order, so the size-order toggle does not apply.
        self.order.disabled = self.model.plan is not None
        self.table.value = self.model.html(order=self.order.value, limit=self.limit.value)
