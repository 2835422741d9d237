"""One real-browser round trip: JupyterLab + Chromium render the explorer, a click selects a batch in Python."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser import harness
from tests.browser.make_notebook import write

pytestmark = pytest.mark.browser

SCREENSHOT = Path(os.environ.get("CMAL_ARTIFACTS", Path(__file__).resolve().parents[2] / "runs" / "browser-test"))


def test_explorer_renders_and_select_batch_round_trips(tmp_path):
    reason = harness.unavailable_reason()
    if reason:
        pytest.skip(reason)
    write(tmp_path)
    SCREENSHOT.mkdir(parents=True, exist_ok=True)
    with harness.jupyter_lab(tmp_path) as (base, token), harness.chromium_page() as page:
        try:
            seconds = harness.open_and_run_all(page, base, token, "roundtrip.ipynb")
            page.wait_for_selector("text=batch: none yet", timeout=60_000)
            page.click("button:has-text('Select batch')")
            # The kernel ran Cluster-Margin and updated the label: the Python side holds a batch of k_t = 20.
            page.wait_for_selector("text=batch: cluster-margin: 20 selected", timeout=60_000)
        except Exception:
            page.screenshot(path=str(SCREENSHOT / "failure.png"))
            log = (tmp_path / "jupyter.log").read_text()[-3000:]
            raise AssertionError(
                f"browser round trip failed; screenshot {SCREENSHOT / 'failure.png'}; server log tail:\n{log}"
            ) from None
        # ... and the batch trace in the browser now draws those 20 points.
        n_drawn = page.evaluate(
            "() => { const g = [...document.querySelectorAll('.js-plotly-plot')]"
            ".find(p => p.data && p.data.length === 3);"
            " return g ? g.data[2].x.length : -1; }"
        )
        news = page.locator(".jp-toast-button >> text=No")  # JupyterLab's "news?" toast would cover the plot
        if news.count():
            news.first.click()
        page.locator(".jp-OutputArea-output").first.screenshot(path=str(SCREENSHOT / "explorer.png"))
    assert n_drawn == 20
    assert seconds < 120
    print(f"first render {seconds:.1f} s; screenshot {SCREENSHOT / 'explorer.png'}")
