"""Start JupyterLab on 127.0.0.1 with a token, drive it with Debian's Chromium through Playwright, stop both.

Shared by the browser test and ``benchmarks/explorer_browser.py``. Playwright cannot download its own browser
here, so it launches ``/usr/bin/chromium`` (``CMAL_CHROMIUM`` overrides).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = os.environ.get("CMAL_CHROMIUM", "/usr/bin/chromium")
# Without these, Chromium tries to reach Google's services and the closed network refuses it many times a second.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def unavailable_reason() -> str | None:
    """Why a browser test cannot run here, or None when it can."""
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (make test installs it with apt; set CMAL_CHROMIUM otherwise)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright)"
    if shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)) is None:
        return "jupyterlab is not installed in this environment"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyter_lab(root: Path, timeout: float = 90) -> Iterator[str]:
    """Run JupyterLab on ``root``; yield its base URL with the token query. Stopped on exit."""
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        str(Path(sys.executable).parent / "jupyter-lab"),
        "--no-browser",
        "--allow-root",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--ServerApp.disable_check_xsrf=True",
    ]
    log = open(root / "jupyter.log", "w")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "JUPYTER_PLATFORM_DIRS": "1"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start; see {root / 'jupyter.log'}") from None
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 1000) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


PLOT = ".js-plotly-plot .scatterlayer, .js-plotly-plot canvas"


def open_and_run_all(page, base: str, token: str, notebook: str, timeout_ms: int = 120_000, ready: str = PLOT) -> float:
    """Open ``notebook`` in JupyterLab and run all cells; return seconds from "Run All" until ``ready`` (a
    CSS selector, by default the first plot) appears.

    Runs through the Run menu; if no plot appears within a minute (a click that landed while JupyterLab was
    still laying out), it runs the cells again with Shift+Enter before giving up.
    """
    page.goto(f"{base}/lab/tree/{notebook}?token={token}", timeout=timeout_ms)
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=timeout_ms)
    # Wait until the kernel is ready before running (the toolbar's execution indicator says "idle").
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-Notebook-ExecutionIndicator')]"
        ".some(e => (e.getAttribute('data-status') || '').toLowerCase() === 'idle')",
        timeout=timeout_ms,
    )
    # JupyterLab sometimes asks which kernel to start even though the notebook names one: accept it.
    dialog = page.locator(".jp-Dialog button.jp-mod-accept")
    try:
        dialog.wait_for(timeout=3000)
        dialog.click()
    except Exception:
        pass  # no dialog this time
    t0 = time.perf_counter()
    page.click("#jp-MainMenu >> text=Run", timeout=timeout_ms)
    page.click(".lm-Menu >> text=Run All Cells", timeout=timeout_ms)
    plot = ready
    try:
        page.wait_for_selector(plot, timeout=min(60_000, timeout_ms))
    except Exception:
        page.click(".jp-Cell .jp-InputArea-editor")
        page.keyboard.press("Shift+Enter")
        page.wait_for_selector(plot, timeout=timeout_ms)
    return time.perf_counter() - t0
