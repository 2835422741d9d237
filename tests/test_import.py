"""`import cmal` stays light: no TensorFlow, no widget or plotting package."""

from __future__ import annotations

import subprocess
import sys

BLOCK_AND_IMPORT = r"""
import sys, importlib.abc

class Block(importlib.abc.MetaPathFinder):
    # Pretend the widget/plotting stack is not installed.
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"ipywidgets", "plotly", "umap", "anywidget", "matplotlib"}:
            raise ImportError(f"blocked {name}")
        return None

sys.meta_path.insert(0, Block())
import numpy as np
import cmal
from cmal import cli, data, hac, loop, metrics, state, strategies, uncertainty, embed, models, training
from cmal import graph_hac, knn, labels as label_store, session
rng = np.random.default_rng(0)
labels = hac.hac(rng.normal(size=(50, 3)), 1.0)
s = strategies.PoolState.create(probs=rng.dirichlet(np.ones(3), 50), clusters=labels)
strategies.make_strategy("cluster-margin", random_state=0).select(s, 5)
graph_hac.graph_hac(rng.normal(size=(50, 3)), 1.0, k=10)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "keras", "ipywidgets", "plotly", "umap",
                                                             "dask", "distributed"})
print(",".join(heavy))
"""


def test_core_imports_without_tensorflow_or_widgets():
    out = subprocess.run([sys.executable, "-c", BLOCK_AND_IMPORT], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules loaded by import: {out.stdout}"


def test_cmal_never_imports_widgets():
    from pathlib import Path

    import cmal

    root = Path(cmal.__file__).parent
    offenders = [
        p.name
        for p in root.rglob("*.py")
        if any(
            w in p.read_text()
            for w in ("import widgets", "from widgets", "import ipywidgets", "import plotly", "from plotly")
        )
    ]
    assert offenders == []


def test_lazy_attributes():
    import cmal

    assert cmal.PoolState.__name__ == "PoolState"
    assert callable(cmal.make_strategy)
    assert "hac" in dir(cmal)
    try:
        _ = cmal.does_not_exist
    except AttributeError as err:
        assert "does_not_exist" in str(err)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")
