from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def digits_pool():
    """Real digits: flattened pixels as 'embeddings', a PCA projection, HAC tree, soft predictions."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from cmal.hac import linkage_tree
    from cmal_widgets.projection import project

    d = load_digits()
    x, y = d.data[:600] / 16.0, d.target[:600]
    probs = LogisticRegression(max_iter=200).fit(x[:100], y[:100]).predict_proba(x)
    return {
        "x": x,
        "y": y,
        "images": d.images[:600, :, :, None] / 16.0,
        "probs": probs,
        "xy": project(x, method="pca", cache_dir=None),
        "tree": linkage_tree(x),
    }


@pytest.fixture
def explorer_model(digits_pool):
    """An explorer model of the digits pool with every colouring available (labels, predictions, clusters, margins)."""
    from cmal_widgets.explorer import ExplorerModel

    p = digits_pool
    return ExplorerModel(
        xy=p["xy"],
        labels=p["y"],
        predicted=p["probs"].argmax(1),
        images=p["images"],
        clusters=p["tree"].cut(p["tree"].epsilon_for_clusters(30)),
        margins=p["probs"].max(1),
    )
