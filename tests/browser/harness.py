"""Start JupyterLab, Notebook 7 or Voila on 127.0.0.1 with a token, drive it with Debian's Chromium through
Playwright, stop both.

Shared by the browser tests and ``benchmarks/explorer_browser.py``. Playwright cannot download its own browser
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


# The command each front end needs in this environment's bin folder, and the package that provides it.
FRONT_ENDS = {
    "lab": ("jupyter-lab", "jupyterlab"),
    "notebook": ("jupyter-notebook", "notebook"),
    "voila": ("voila", "voila"),
}


def unavailable_reason(front_end: str = "lab") -> str | None:
    """Why a browser test of ``front_end`` ("lab", "notebook" or "voila") cannot run here, or None when it can."""
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (make test installs it with apt; set CMAL_CHROMIUM otherwise)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright)"
    command, package = FRONT_ENDS[front_end]
    if shutil.which(command, path=str(Path(sys.executable).parent)) is None:
        return f"{package} is not installed in this environment (pip install -e '.[dev]' installs it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(cmd: list[str], root: Path, status_url: str, what: str, log_name: str, timeout: float) -> Iterator[None]:
    """Run ``cmd`` in ``root`` until ``status_url`` answers; stop it on exit. Its output goes to ``root/log_name``."""
    log = open(root / log_name, "w")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "JUPYTER_PLATFORM_DIRS": "1"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(status_url, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not start; see {root / log_name}") from None
                time.sleep(0.5)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _jupyter_server_args(port: int, token: str, root: Path) -> list[str]:
    return [
        "--no-browser",
        "--allow-root",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.disable_check_xsrf=True",
    ]


@contextlib.contextmanager
def jupyter_lab(root: Path, timeout: float = 90) -> Iterator[tuple[str, str]]:
    """Run JupyterLab on ``root``; yield its base URL and token. Stopped on exit."""
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [str(Path(sys.executable).parent / "jupyter-lab"), *_jupyter_server_args(port, token, root)]
    cmd.append("--LabApp.news_url=")
    status = f"http://127.0.0.1:{port}/api/status?token={token}"
    with _server(cmd, root, status, "JupyterLab", "jupyter.log", timeout):
        yield f"http://127.0.0.1:{port}", token


@contextlib.contextmanager
def jupyter_notebook(root: Path, timeout: float = 90) -> Iterator[tuple[str, str]]:
    """Run Notebook 7 (``jupyter notebook``) on ``root``; yield its base URL and token. Stopped on exit."""
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [str(Path(sys.executable).parent / "jupyter-notebook"), *_jupyter_server_args(port, token, root)]
    status = f"http://127.0.0.1:{port}/api/status?token={token}"
    with _server(cmd, root, status, "Notebook 7", "notebook.log", timeout):
        yield f"http://127.0.0.1:{port}", token


@contextlib.contextmanager
def voila(notebook: Path, timeout: float = 90) -> Iterator[str]:
    """Serve ``notebook`` as a Voila dashboard; yield the dashboard's URL (token included). Stopped on exit.

    Voila runs the notebook anew for each page load and shows only its outputs (markdown and widgets, no code).
    """
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        str(Path(sys.executable).parent / "voila"),
        notebook.name,
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        f"--Voila.token={token}",
        # A failing cell shows its traceback on the page (and in the failure screenshot) instead of a bare error.
        "--VoilaConfiguration.show_tracebacks=True",
    ]
    # Voila's static files answer without running the notebook (the page itself would start a kernel).
    status = f"http://127.0.0.1:{port}/voila/static/require.min.js?token={token}"
    with _server(cmd, notebook.parent, status, "Voila", "voila.log", timeout):
        yield f"http://127.0.0.1:{port}/?token={token}"


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """Launch headless Chromium; yield the Playwright ``Browser`` (one per test module can serve several pages)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 1000) -> Iterator[object]:
    with chromium() as browser:
        yield browser.new_page(viewport={"width": width, "height": height})


PLOT = ".js-plotly-plot .scatterlayer, .js-plotly-plot canvas"


# Where each front end keeps its notebook page and its Run menu.
_NOTEBOOK_URL = {
    "lab": "{base}/lab/tree/{notebook}?token={token}",
    "notebook": "{base}/notebooks/{notebook}?token={token}",
}
_RUN_MENU = {"lab": "#jp-MainMenu >> text=Run", "notebook": "#menu-panel .lm-MenuBar-itemLabel >> text=Run"}


def _run_all_cells(page, front_end: str, timeout_ms: int) -> None:
    page.click(_RUN_MENU[front_end], timeout=timeout_ms)
    page.click(".lm-Menu >> text=Run All Cells", timeout=timeout_ms)


def start_run_all(
    page, base: str, token: str, notebook: str, timeout_ms: int = 120_000, front_end: str = "lab"
) -> float:
    """Open ``notebook`` in JupyterLab (or, with ``front_end="notebook"``, in Notebook 7), wait for its kernel and
    click "Run All Cells"; return the ``time.perf_counter()`` of the click (see :func:`wait_for_run`)."""
    page.goto(_NOTEBOOK_URL[front_end].format(base=base, notebook=notebook, token=token), timeout=timeout_ms)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout_ms)
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
    _run_all_cells(page, front_end, timeout_ms)
    return t0


def wait_for_run(page, t0: float, timeout_ms: int = 120_000, ready: str = PLOT, front_end: str = "lab") -> float:
    """Wait until ``ready`` (a CSS selector, by default the first plot) appears after :func:`start_run_all`; return
    seconds since the click.

    If nothing appears within a minute (a click that landed while the page was still laying out), it runs the
    cells again before giving up.
    """
    try:
        page.wait_for_selector(ready, timeout=min(60_000, timeout_ms))
    except Exception:
        if front_end == "lab":  # kept as it was: the JupyterLab notebooks start with their code cell
            page.click(".jp-Cell .jp-InputArea-editor")
            page.keyboard.press("Shift+Enter")
        else:
            _run_all_cells(page, front_end, timeout_ms)
        page.wait_for_selector(ready, timeout=timeout_ms)
    return time.perf_counter() - t0


def open_and_run_all(
    page, base: str, token: str, notebook: str, timeout_ms: int = 120_000, ready: str = PLOT, front_end: str = "lab"
) -> float:
    """Open ``notebook`` in JupyterLab (or, with ``front_end="notebook"``, in Notebook 7) and run all cells; return
    seconds from "Run All" until ``ready`` (a CSS selector, by default the first plot) appears.

    Runs through the Run menu; if nothing appears within a minute (a click that landed while the page was still
    laying out), it runs the cells again before giving up.
    """
    t0 = start_run_all(page, base, token, notebook, timeout_ms, front_end)
    return wait_for_run(page, t0, timeout_ms, ready, front_end)


def voila_require_js() -> Path | None:
    """Voila's copy of require.js, if Voila is installed: a local stand-in for the CDN copy nbconvert's pages load."""
    path = Path(sys.prefix) / "share" / "jupyter" / "voila" / "templates" / "base" / "static" / "require.min.js"
    return path if path.exists() else None


def open_voila(page, url: str, timeout_ms: int = 120_000, ready: str = PLOT) -> float:
    """Open a Voila dashboard (which runs its notebook on the way); return seconds until ``ready`` appears."""
    t0 = time.perf_counter()
    page.goto(url, timeout=timeout_ms, wait_until="commit")
    page.wait_for_selector(ready, timeout=timeout_ms)
    return time.perf_counter() - t0


#: JavaScript: how many points the explorer's batch trace (the third of its plotly traces) draws, -1 if no explorer.
BATCH_POINTS_JS = (
    "() => { const g = [...document.querySelectorAll('.js-plotly-plot')]"
    ".find(p => p.data && p.data.length === 3);"
    " return g ? g.data[2].x.length : -1; }"
)


#: JavaScript: how many points plotly.js drew for the explorer's pool trace (the first of three), -1 if no explorer.
POOL_POINTS_JS = (
    "() => { const g = [...document.querySelectorAll('.js-plotly-plot')]"
    ".find(p => p._fullData && p._fullData.length === 3);"
    " return g ? g._fullData[0]._length : -1; }"
)


def colored_pixels(png: bytes, min_saturation: int = 60) -> int:
    """How many pixels of a PNG screenshot are coloured (not white, grey or black): points drawn on a plot."""
    import io

    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) >= min_saturation).sum())
