"""Explorer responsiveness in a real browser (JupyterLab + Debian's Chromium): both backends, up to 10^6 points.

For each (backend, pool size) it opens a fresh JupyterLab and Chromium and measures:

- first render: from "Run All Cells" to the points on screen, including starting the kernel, importing, building
  the view in the kernel, shipping it to the browser and drawing. For jupyter-scatter "on screen" means its canvas
  holds painted pixels (read back from the page); for plotly, that the pool trace holds all its points and its
  WebGL canvas exists.
- selection update: from clicking "Select batch" (the kernel highlights a random 1% of the points, half of them as
  the batch) to the highlight drawn: for jupyter-scatter, until regl-scatterplot reports the frame with the new
  statuses drawn (and the painted pixels are checked to have changed); for plotly, until the batch trace holds
  the batch. The median of three clicks.

Both are timed in the page (from the click event to the first animation frame that shows the result), which leaves
out what Playwright adds around its clicks and polls; its own wall-clock figures are printed too. Each
(backend, size) is measured ``--repeat`` times, each time in a fresh JupyterLab, and the table shows medians. The
reference is the plotly backend at 10^4 points measured in the same run (the first row); "x ref" columns are ratios
to it. Screenshots go to runs/explorer-benchmark/. The load average is printed with each measurement, as other jobs
share the cores.

Usage: python benchmarks/explorer_browser.py [--runs plotly:10000,plotly:100000,scatter:100000,scatter:1000000]
       [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser import explorer_scale, harness  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "runs" / "explorer-benchmark"
GOALS = {100_000: 3.0, 1_000_000: 5.0}  # first render, seconds (scatter backend)
UPDATE_GOAL = 0.3  # selection update at 10^6, seconds


def measure(backend: str, n: int, clicks: int = 3) -> dict:
    timeout = int(os.environ.get("CMAL_BENCH_TIMEOUT_MS", 300_000))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        explorer_scale.write(folder, n, backend)
        with harness.jupyter_lab(folder) as (base, token), harness.chromium_page() as page:
            explorer_scale.install_probe(page, backend, n)
            ready = ".cmal-scatter" if backend == "scatter" else harness.PLOT
            until_view = harness.open_and_run_all(page, base, token, "scale.ipynb", timeout_ms=timeout, ready=ready)
            t0 = time.perf_counter()
            ink = explorer_scale.wait_for_points(page, backend, n, timeout)
            wall_first = until_view + time.perf_counter() - t0
            first = explorer_scale.probe_seconds(page)
            if backend == "scatter" and ink < 2000:
                raise AssertionError(f"{backend} {n}: the canvas holds {ink} painted pixels, not a drawn map")
            out = page.locator(".jp-OutputArea-output >> text=kernel:").first
            out.wait_for(timeout=timeout)
            kernel = out.inner_text().strip()
            explorer_scale.dismiss_news(page)
            OUT.mkdir(parents=True, exist_ok=True)
            page.locator(".jp-OutputArea-output").first.screenshot(path=str(OUT / f"{backend}-{n}-first.png"))
            updates, walls, marks_ink = [], [], []
            for _ in range(clicks):
                time.sleep(0.5)  # let the kernel and the browser settle between clicks
                seconds, wall, ink_marks = explorer_scale.click_select_batch(page, backend, n, timeout)
                updates.append(seconds)
                walls.append(wall)
                marks_ink.append(ink_marks)
            label = page.locator(".jp-OutputArea-output >> text=selected in").first
            label.wait_for(timeout=timeout)
            kernel_update = label.inner_text().strip()
            page.locator(".jp-OutputArea-output").first.screenshot(path=str(OUT / f"{backend}-{n}-batch.png"))
    return {
        "backend": backend,
        "n": n,
        "first": first,
        "wall_first": wall_first,
        "update": statistics.median(updates),
        "updates": updates,
        "wall_update": statistics.median(walls),
        "ink": ink,
        "marks_ink": marks_ink,
        "kernel": kernel,
        "kernel_update": kernel_update,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="plotly:10000,plotly:100000,scatter:100000,scatter:1000000")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    runs = [(r.split(":")[0], int(r.split(":")[1])) for r in args.runs.split(",")]
    reason = harness.unavailable_reason()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    rows = []
    for backend, n in runs:
        reps = []
        for _ in range(args.repeat):
            load = os.getloadavg()[0]
            row = measure(backend, n)
            reps.append(row)
            print(
                f"  {backend} {n}: first {row['first']:.2f} s (Playwright {row['wall_first']:.2f} s), updates "
                f"{[round(u, 3) for u in row['updates']]} s (Playwright median {row['wall_update']:.2f} s); "
                f"{row['kernel']}; last click: {row['kernel_update']}; painted px: map {row['ink']}, "
                f"highlight {row['marks_ink']}; load {load:.2f} -> {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        rows.append(
            {
                "backend": backend,
                "n": n,
                "first": statistics.median(r["first"] for r in reps),
                "update": statistics.median(r["update"] for r in reps),
            }
        )
    ref_first, ref_update = rows[0]["first"], rows[0]["update"]
    print(f"\nmedians of {args.repeat}; reference: {rows[0]['backend']} at {rows[0]['n']} points")
    print(
        f"{'backend':>8} {'points':>8} {'first render s':>15} {'x ref':>6} {'select update s':>16} {'x ref':>6}  goal"
    )
    for r in rows:
        goals = []
        if r["backend"] == "scatter" and r["n"] in GOALS:
            goals.append(f"first <= {GOALS[r['n']]:.0f} s: {'met' if r['first'] <= GOALS[r['n']] else 'MISSED'}")
        if r["backend"] == "scatter" and r["n"] == 1_000_000:
            goals.append(f"update <= {UPDATE_GOAL} s: {'met' if r['update'] <= UPDATE_GOAL else 'MISSED'}")
        print(
            f"{r['backend']:>8} {r['n']:8d} {r['first']:15.2f} {r['first'] / ref_first:6.2f} "
            f"{r['update']:16.3f} {r['update'] / ref_update:6.2f}  {'; '.join(goals)}"
        )
    print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
