"""The large-map explorer in JupyterLab: the notebook, and how to tell in Chromium that points and highlights are on
screen. Shared by ``test_lab_scatter.py`` and ``benchmarks/explorer_browser.py``.

What counts as "on screen" for jupyter-scatter: its visible canvas is a 2-D canvas into which regl-scatterplot
copies each WebGL frame, so the page can read its pixels. Points are on screen when that canvas holds enough
painted (non-transparent) pixels. A highlight is on screen when the explorer's marks counter
(``data-cmal-marks``, bumped after the rings and crosses are painted on the canvas layer over the points) moves;
the layer's painted pixels are then read back too. For plotly the pool trace must hold all its points (and the
batch trace the batch) and its WebGL canvas must exist.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat as nbf

SOURCE = """
import time
T_START = time.time()
import numpy as np
import ipywidgets as w
from cmal_widgets import Explorer, ExplorerModel
N_POINTS, BACKEND = {n_points}, {backend!r}
# A synthetic 2-D mixture of 10 blobs; "Select batch" highlights a random 1% (half of it as the batch).
rng = np.random.default_rng(0)
xy = np.concatenate([rng.normal(size=(N_POINTS // 10, 2)) + [(c % 5) * 4, (c // 5) * 4] for c in range(10)])
model = ExplorerModel(xy=xy, labels=np.repeat(np.arange(10), N_POINTS // 10))
explorer = Explorer(model, backend=BACKEND)
status = w.Label("batch: none yet")
button = w.Button(description="Select batch")
def on_click(_):
    t = time.time()
    batch = rng.choice(len(xy), len(xy) // 100, replace=False)
    model.set_highlight(candidates=batch, batch=batch[: len(batch) // 2])
    status.value = f"batch: {{len(batch) // 2}} selected in {{time.time() - t:.3f}} s"
button.on_click(on_click)
display(w.VBox([w.HBox([button, status]), explorer.widget]))
print(f"kernel: {{explorer.backend}} {{N_POINTS}} built and displayed in {{time.time() - T_START:.2f}} s")
"""


def write(folder: Path, n_points: int, backend: str, name: str = "scale.ipynb") -> Path:
    """Write the notebook: a synthetic map of ``n_points`` (a multiple of 10) drawn by ``backend``."""
    book = nbf.v4.new_notebook(cells=[nbf.v4.new_code_cell(SOURCE.format(n_points=n_points, backend=backend).strip())])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / name
    nbf.write(book, path)
    return path


# Painted pixels of the jupyter-scatter canvas in the explorer (-1 before the scatterplot exists).
INK_JS = """() => {
  const el = document.querySelector('.cmal-scatter');
  const box = el && [...el.querySelectorAll('div')].find(d => d.api);
  const c = box && box.querySelector('canvas');
  if (!c || !c.width || !box.api.get('isPointsDrawn')) return -1;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let ink = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;
  return ink;
}"""
# Painted pixels of the highlight layer (rings and crosses).
MARKS_INK_JS = """() => {
  const c = document.querySelector('.cmal-scatter canvas.cmal-marks');
  if (!c || !c.width) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let ink = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;
  return ink;
}"""
SCATTER = "document.querySelector('.cmal-scatter')"
PLOTLY = "[...document.querySelectorAll('.js-plotly-plot')].find(p => p.data && p.data.length === 3)"

# In-page timing: the last click's time, and the first animation frame in which a condition holds (checked every
# frame, so at most one frame late; a frame the page is too busy to run delays it, as it delays what users see).
PROBE_JS = """
window.__cmal = {click: null, seen: null};
document.addEventListener('click', () => { window.__cmal.click = performance.now(); }, true);
window.__cmalWatch = (cond) => {
  window.__cmal.seen = null;
  const tick = () => {
    let ok = false;
    try { ok = cond(); } catch (e) { ok = false; }
    if (ok) window.__cmal.seen = performance.now(); else requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
};
"""


def drawn_condition(backend: str, n: int) -> str:
    """JavaScript: true once the explorer's ``n`` points are drawn."""
    if backend == "scatter":
        # Set by the explorer after regl-scatterplot reports the frame with the points drawn.
        return f"() => {{ const el = {SCATTER}; return !!el && el.dataset.cmalReady === '1'; }}"
    return f"() => {{ const g = {PLOTLY}; return !!(g && g.querySelector('canvas') && g.data[0].x.length === {n}); }}"


def install_probe(page, backend: str, n: int) -> None:
    """Before opening the notebook: time clicks, and watch from the start for the points to be drawn."""
    page.add_init_script(PROBE_JS + f"window.__cmalWatch({drawn_condition(backend, n)});")


def probe_seconds(page) -> float:
    """Seconds from the last click to the watched condition, measured in the page."""
    return page.evaluate("() => (window.__cmal.seen - window.__cmal.click) / 1000")


def wait_for_points(page, backend: str, n: int, timeout_ms: int) -> int:
    """Wait until the explorer's points are drawn; return the painted pixels (jupyter-scatter) or 0 (plotly)."""
    page.wait_for_function("() => window.__cmal && window.__cmal.seen !== null", timeout=timeout_ms, polling=50)
    return page.evaluate(INK_JS) if backend == "scatter" else 0


def click_select_batch(page, backend: str, n: int, timeout_ms: int) -> tuple[float, float, int]:
    """Click "Select batch" and wait until the new highlight is on screen.

    For jupyter-scatter "on screen" means the marks counter moved (the rings and crosses were painted); for plotly
    that the batch trace holds new data of the batch's size. Returns the seconds measured in the page (from the
    click event to the first frame showing it), as seen from Playwright (which adds its own checks before
    clicking and polls afterwards), and (jupyter-scatter) the highlight layer's painted pixels.
    """
    if backend == "scatter":
        before = page.evaluate(f"() => Number({SCATTER}.dataset.cmalMarks || 0)")
        cond = f"() => Number({SCATTER}.dataset.cmalMarks || 0) > {before}"
    else:
        page.evaluate(f"() => {{ window.__cmalPrev = {PLOTLY}.data[2].x; }}")
        new_batch = f"g.data[2].x !== window.__cmalPrev && g.data[2].x.length === {n // 200}"
        cond = f"() => {{ const g = {PLOTLY}; return {new_batch}; }}"
    page.evaluate(f"() => window.__cmalWatch({cond})")
    t0 = time.perf_counter()
    page.click("button:has-text('Select batch')")
    page.wait_for_function("() => window.__cmal.seen !== null", timeout=timeout_ms, polling=10)
    wall = time.perf_counter() - t0
    return probe_seconds(page), wall, page.evaluate(MARKS_INK_JS) if backend == "scatter" else 0


def dismiss_news(page) -> None:
    """Close JupyterLab's "news?" toast, which would cover the plot in screenshots."""
    news = page.locator(".jp-toast-button >> text=No")
    if news.count():
        news.first.click()
