"""Explorer responsiveness in a real browser (JupyterLab + Debian's Chromium), at 10k and 100k points.

Prints, per pool size: first render (from "Run All Cells" to the WebGL scatter on screen, including building
the figure in the kernel and shipping it to the browser) and selection update (from clicking "Select batch" to
the batch drawn in the browser; the kernel highlights 1% of the points). The reference in the same run is the
same measurement at 1k points.

Usage: python benchmarks/explorer_browser.py [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser import harness  # noqa: E402
from tests.browser.make_notebook import write  # noqa: E402


def measure(n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write(folder, n_points=n, name="scale.ipynb", scale=True)
        with harness.jupyter_lab(folder) as (base, token), harness.chromium_page() as page:
            first = harness.open_and_run_all(
                page, base, token, "scale.ipynb", timeout_ms=int(os.environ.get("CMAL_BENCH_TIMEOUT_MS", 600_000))
            )
            page.wait_for_selector("text=batch: none yet", timeout=120_000)
            t0 = time.perf_counter()
            page.click("button:has-text('Select batch')")
            page.wait_for_function(
                f"() => {{ const g = [...document.querySelectorAll('.js-plotly-plot')]"
                ".find(p => p.data && p.data.length === 3);"
                f" return g && g.data[2].x && g.data[2].x.length === {n // 200}; }}",
                timeout=int(os.environ.get("CMAL_BENCH_TIMEOUT_MS", 600_000)),
            )
            update = time.perf_counter() - t0
    return first, update


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000,100000")
    sizes = [int(s) for s in p.parse_args().sizes.split(",")]
    reason = harness.unavailable_reason()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    rows = [(n, *measure(n)) for n in sizes]
    ref_first, ref_update = rows[0][1], rows[0][2]
    print(f"{'points':>8} {'first render s':>15} {'x ref':>6} {'select update s':>16} {'x ref':>6}")
    for n, first, update in rows:
        print(f"{n:8d} {first:15.2f} {first / ref_first:6.1f} {update:16.2f} {update / ref_update:6.1f}")


if __name__ == "__main__":
    main()
