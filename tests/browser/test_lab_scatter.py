"""The explorer's jupyter-scatter backend in a real browser: JupyterLab + Chromium draw 10^5 points, a click selects
a batch in Python and its marks appear, a lasso and a hover come back to Python; nothing is fetched from outside
(jupyter-scatter's front end ships in its wheel)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.browser import explorer_scale, harness

pytestmark = pytest.mark.browser

SCREENSHOT = Path(os.environ.get("CMAL_ARTIFACTS", Path(__file__).resolve().parents[2] / "runs" / "browser-test"))
N = 100_000
LABELS = "() => [...document.querySelectorAll('.jp-OutputArea-output .widget-label')].map(l => l.textContent)"


def test_scatter_explorer_draws_every_point_and_round_trips(tmp_path):
    reason = harness.unavailable_reason()
    if reason:
        pytest.skip(reason)
    explorer_scale.write(tmp_path, N, "scatter")
    SCREENSHOT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with harness.jupyter_lab(tmp_path) as (base, token), harness.chromium_page() as page:
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        try:
            explorer_scale.install_probe(page, "scatter", N)
            harness.open_and_run_all(page, base, token, "scale.ipynb", ready=".cmal-scatter")
            # Points on screen: the plot's canvas holds painted pixels (read back from the page).
            ink = explorer_scale.wait_for_points(page, "scatter", N, 60_000)
            first = explorer_scale.probe_seconds(page)
            explorer_scale.dismiss_news(page)
            # Python highlights a batch; its rings and crosses are painted over the points.
            update, _, marks_ink = explorer_scale.click_select_batch(page, "scatter", N, 30_000)
            page.wait_for_selector("text=batch: 500 selected", timeout=30_000)
            # A lasso in the browser selects in Python (the label is the kernel's).
            box = page.locator(".cmal-scatter canvas").first.bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(cx - 80, cy - 60)
            page.mouse.down()
            for dx, dy in [(80, -60), (80, 60), (-80, 60), (-70, -40)]:  # not back to the start: not a click
                page.mouse.move(cx + dx, cy + dy, steps=4)
            page.mouse.up()
            page.wait_for_function(f"() => ({LABELS})().some(t => /^selected: [1-9]/.test(t))", timeout=30_000)
            selected = next(t for t in page.evaluate(LABELS) if t.startswith("selected: "))
            # Hovering a point fills the panel beside the plot from Python.
            page.mouse.move(cx + 3, cy + 2)
            page.mouse.move(cx, cy)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-OutputArea-output .widget-html')]"
                ".some(h => h.textContent.includes('index') && h.textContent.includes('label'))",
                timeout=30_000,
            )
        except Exception:
            page.screenshot(path=str(SCREENSHOT / "scatter-failure.png"))
            log = (tmp_path / "jupyter.log").read_text()[-3000:]
            raise AssertionError(
                f"scatter round trip failed; screenshot {SCREENSHOT / 'scatter-failure.png'}; server log tail:\n{log}"
            ) from None
        page.locator(".jp-OutputArea-output").first.screenshot(path=str(SCREENSHOT / "scatter.png"))
    outside = [u for u in requests if not u.startswith((base, "data:", "blob:"))]
    assert not outside, f"the page fetched from outside the Jupyter server: {outside[:5]}"
    assert ink > 20_000  # a 620x480 canvas: tens of thousands of painted pixels, not a blank plot
    assert marks_ink > 1_000  # 1,000 rings and 500 crosses
    assert int(selected.split()[1]) > 100
    assert first < 30 and update < 5
    print(
        f"first render {first:.2f} s, selection update {update:.3f} s, {selected}, whole test "
        f"{time.perf_counter() - t0:.0f} s; screenshot {SCREENSHOT / 'scatter.png'}"
    )
