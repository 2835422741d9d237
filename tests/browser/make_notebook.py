"""The notebook the browser test and the explorer benchmark open (written fresh for each run)."""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf

SOURCE = """
import numpy as np
import ipywidgets as w
from cmal_widgets import Explorer, ExplorerModel, SelectionControls, SelectionModel, project
N_POINTS, SCALE = {n_points}, {scale}
if not SCALE:
    # Real digits: pixels as embeddings, HAC tree, logistic-regression probabilities.
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from cmal.hac import linkage_tree
    d = load_digits()
    x, y = d.data[:N_POINTS] / 16.0, d.target[:N_POINTS]
    probs = LogisticRegression(max_iter=300).fit(x[:200], y[:200]).predict_proba(x)
    xy = project(x, method="pca", cache_dir=None)
    model = ExplorerModel(xy=xy, labels=y, images=d.images[:N_POINTS, :, :, None] / 16)
    explorer = Explorer(model)
    controls = SelectionControls(SelectionModel(linkage_tree(x), probs, labeled=np.arange(200), k_t=20, n_clusters=60),
                                 [(explorer, "cluster-margin")])
    display(w.VBox([controls.widget, explorer.widget]))
else:
    # Scale check: a synthetic 2-D mixture; "Select batch" highlights 1% of the points.
    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.normal(c, 1.0, size=(N_POINTS // 10, 2)) for c in range(10)])
    model = ExplorerModel(xy=xy, labels=np.repeat(np.arange(10), N_POINTS // 10))
    explorer = Explorer(model)
    status = w.Label("batch: none yet")
    button = w.Button(description="Select batch")
    def on_click(_):
        batch = rng.choice(len(xy), len(xy) // 100, replace=False)
        model.set_highlight(candidates=batch, batch=batch[: len(batch) // 2])
        status.value = f"batch: {{len(batch) // 2}} selected"
    button.on_click(on_click)
    display(w.VBox([w.HBox([button, status]), explorer.widget]))
"""


def write(folder: Path, n_points: int = 1797, name: str = "roundtrip.ipynb", *, scale: bool = False) -> Path:
    """Write the notebook: real digits with Cluster-Margin controls, or (``scale``) a synthetic map of
    ``n_points`` whose button highlights a random 1%."""
    source = SOURCE.format(n_points=n_points, scale=scale).strip()
    book = nbf.v4.new_notebook(cells=[nbf.v4.new_code_cell(source)])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / name
    nbf.write(book, path)
    return path


# The notebook of the Notebook 7 and Voila tests: the explorer under its selection controls (Voila's dashboard),
# then a batch to label. Both go through cmal_widgets' own display (``column(...)`` and a view as a cell's last
# expression), so the outputs carry the static fallback too and the tests see that the live widget wins over it.
DASHBOARD_TITLE = "# Cluster-Margin: explore and select"
# scikit-learn's digits are read from the file scikit-learn ships, and the class probabilities (a nearest-centroid
# model of the first 200 points) and the 2-D map (principal components) are computed with numpy: importing
# scikit-learn would cost each kernel seconds of CPU, and these tests run two kernels on two shared cores.
DASHBOARD_SOURCE = """
import importlib.util
from pathlib import Path
import numpy as np
from cmal.hac import linkage_tree
from cmal_widgets import Explorer, ExplorerModel, SelectionControls, SelectionModel, column
sklearn_dir = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0])
digits = np.loadtxt(sklearn_dir / "datasets" / "data" / "digits.csv.gz", delimiter=",")
x, y = digits[:, :64] / 16.0, digits[:, 64].astype(int)
images = x.reshape(-1, 8, 8)
centroids = np.stack([x[:200][y[:200] == c].mean(axis=0) for c in range(10)])
d2 = ((x[:, None, :] - centroids[None]) ** 2).sum(axis=2)
probs = np.exp(d2.min(axis=1, keepdims=True) - d2)
probs /= probs.sum(axis=1, keepdims=True)
centered = x - x.mean(axis=0)
xy = centered @ np.linalg.svd(centered, full_matrices=False)[2][:2].T
explorer = Explorer(ExplorerModel(xy=xy, labels=y, images=images[..., None]))
controls = SelectionControls(
    SelectionModel(linkage_tree(x), probs, labeled=np.arange(200), k_t=20, n_clusters=60),
    [(explorer, "cluster-margin")],
)
column(controls, explorer)
"""
LABELING_SOURCE = """
from cmal.labels import LabelStore
from cmal_widgets import LabelingModel, LabelingWidget
store = LabelStore.create({store!r}, batch=[5, 17, 42, 99], classes=[str(i) for i in range(10)], clusters=[1, 1, 2, 3])
LabelingWidget(LabelingModel(store, images=images), columns=4)
"""


def write_dashboard(folder: Path, store: Path, name: str = "dashboard.ipynb") -> Path:
    """Write the front-end notebook: a title, the explorer with its selection controls, and a labeling widget over
    a fresh label store at ``store`` (pool items 5, 17, 42, 99 of sklearn's digits)."""
    book = nbf.v4.new_notebook(
        cells=[
            nbf.v4.new_markdown_cell(DASHBOARD_TITLE),
            nbf.v4.new_code_cell(DASHBOARD_SOURCE.strip()),
            nbf.v4.new_code_cell(LABELING_SOURCE.format(store=str(store)).strip()),
        ]
    )
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / name
    nbf.write(book, path)
    return path
