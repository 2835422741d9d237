"""The documentation site: built offline with warnings as errors, every notebook executed and rendered with its
outputs, an API entry for every public name, nothing loaded from outside the site, and a real browser check.

The build runs once per test session (``sphinx-build -n -W``, notebooks executed afresh: ``CMAL_DOCS_EXECUTE=force``)
into ``runs/docs-test/`` (``CMAL_DOCS_TEST_OUT`` overrides), where the site and the screenshots stay for a look
afterwards. This is also where ``make test`` executes the notebook series: each notebook runs top to bottom in its
own kernel, and a failing cell fails the build and so these tests (``pytest --nbmake notebooks/NN_*.ipynb`` runs one
notebook on its own). The build starts in the background as soon as the session has collected these tests, and
runs beside the other tests, which go first (``tests/conftest.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import http.server
import importlib
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("CMAL_DOCS_TEST_OUT", ROOT / "runs" / "docs-test"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FIGURE = 'class="plotly-graph-div"'


@dataclass
class Site:
    html: Path  # the site's root folder (index.html redirects to docs/index.html)
    executed: Path  # the executed notebooks myst-nb wrote (jupyter_execute/notebooks/*.ipynb)
    stderr: str
    returncode: int
    seconds: float


def _unavailable() -> str | None:
    for module in ("sphinx", "myst_nb", "pydata_sphinx_theme", "numpydoc", "jupyter_server_mathjax"):
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{module} is not installed: pip install -e '.[docs]' (make test installs it)"
    return None


@dataclass
class _Build:
    """The running site build, started by :func:`start_build`: the process, its two output files, its start."""

    proc: subprocess.Popen
    log: IO[str]
    out: IO[str]
    started: float


_BUILD: _Build | None = None


def start_build() -> None:
    """Start the site build in the background (``sphinx-build`` in a subprocess; its output goes to files, not
    pipes, which a long build would fill).

    ``tests/conftest.py`` calls this when the session's tests are collected and runs the docs tests last: the
    build executes every notebook (most of ``make test``'s time) while the other tests run beside it on the
    second core, and :func:`site` waits for it.
    """
    global _BUILD
    reuse = os.environ.get("CMAL_DOCS_TEST_REUSE") and (OUT / "build.json").exists()
    if _BUILD is not None or _unavailable() or reuse:
        return
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-q",
        "-n",
        "-W",
        "--keep-going",
        "-b",
        "html",
        "-d",
        str(OUT / "doctrees"),
        "-c",
        "docs",
        ".",
        str(OUT / "html"),
    ]
    env = {**os.environ, "CMAL_DOCS_EXECUTE": "force", "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = open(OUT / "build.log", "w")  # noqa: SIM115 - closed by site() when the build ends
    out = open(OUT / "build.out", "w")  # noqa: SIM115 - likewise
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=log, text=True)
    _BUILD = _Build(proc=proc, log=log, out=out, started=time.perf_counter())

    def stop() -> None:  # an interrupted session must not leave the build (and its kernels) running
        if proc.poll() is None:
            proc.kill()

    atexit.register(stop)


@pytest.fixture(scope="session")
def site() -> Site:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    record = OUT / "build.json"
    if os.environ.get("CMAL_DOCS_TEST_REUSE") and record.exists():  # iterating on these tests: skip the build
        r = json.loads(record.read_text())
        return Site(OUT / "html", OUT / "jupyter_execute" / "notebooks", r["stderr"], r["returncode"], r["seconds"])
    start_build()  # started already when the session collected the docs tests
    assert _BUILD is not None
    proc, started = _BUILD.proc, _BUILD.started
    try:
        proc.wait(timeout=max(1.0, 3600 - (time.perf_counter() - started)))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _BUILD.log.close()
    _BUILD.out.close()
    seconds = time.perf_counter() - started
    stderr = (OUT / "build.log").read_text()
    print(f"\ndocs site built in {seconds:.0f} s (notebooks executed): {OUT / 'html' / 'index.html'}")
    record.write_text(json.dumps({"stderr": stderr, "returncode": proc.returncode, "seconds": seconds}))
    return Site(OUT / "html", OUT / "jupyter_execute" / "notebooks", stderr, proc.returncode, seconds)


def _sphinx_messages(stderr: str) -> list[str]:
    # Kernels print their own start-up lines to the build's stderr; Sphinx's warnings and errors are the rest.
    return [
        line
        for line in stderr.splitlines()
        if re.search(r"WARNING|ERROR|Error|Exception", line) and "[IPKernelApp]" not in line
    ]


def test_the_site_builds_offline_with_warnings_as_errors(site):
    assert site.returncode == 0, "\n".join(_sphinx_messages(site.stderr)[-40:]) or site.stderr[-4000:]
    assert not _sphinx_messages(site.stderr), _sphinx_messages(site.stderr)
    assert (site.html / "docs" / "index.html").exists()
    root = (site.html / "index.html").read_text()
    assert "url=docs/index.html" in root, "the site's root page sends the reader to docs/index.html"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_page_shows_its_executed_outputs(site, notebook):
    page = (site.html / "notebooks" / f"{notebook.stem}.html").read_text()
    executed = json.loads((site.executed / notebook.name).read_text())
    code = [c for c in executed["cells"] if c["cell_type"] == "code"]
    with_output = [c for c in code if c["outputs"]]
    assert code and all(c["execution_count"] for c in code), "every code cell was executed"
    assert with_output, "the notebook printed or drew something"
    # Each code cell with outputs becomes one "cell_output" block on the page.
    assert page.count('class="cell_output') == len(with_output)
    figures = sum("".join(o.get("data", {}).get("text/html", "")).count(FIGURE) for c in code for o in c["outputs"])
    assert page.count(FIGURE) == figures, "every figure the notebook drew is on the page"
    assert "application/vnd.jupyter.widget-view+json" not in json.dumps(executed), (
        "a widget view would show as text on the page: cmal_widgets views are static in the docs build"
    )
    if "plotly" in notebook.read_text() or "Explorer(" in notebook.read_text():
        assert figures >= 1, "this notebook draws a figure"
    assert "Traceback" not in page
    assert not re.search(r"(HBox|VBox|FloatProgress|FigureWidget)\(", page), "a widget shown as its text"


def _public_names() -> list[tuple[str, str, object]]:
    names = []
    for package in ("cmal", "cmal_widgets"):
        root = importlib.import_module(package)
        modules = [root] + [
            importlib.import_module(m.name)
            for m in pkgutil.walk_packages(root.__path__, f"{package}.")
            if not any(part.startswith("_") for part in m.name.split("."))
        ]
        for module in modules:
            for name in getattr(module, "__all__", []):
                if name.startswith("__"):  # __version__: shown in every page's title, not an API entry
                    continue
                names.append((module.__name__, name, getattr(module, name)))
    return names


def test_every_public_name_has_an_api_entry(site):
    from sphinx.util.inventory import InventoryFile

    with open(site.html / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", posixpath_join)
    documented = {name for entries in inventory.values() for name in entries}
    by_short: dict[str, list[str]] = {}
    for full in documented:
        by_short.setdefault(full.rsplit(".", 1)[-1], []).append(full)

    def documented_elsewhere(name: str, obj: object) -> bool:
        # A name re-exported by a package (cmal.strategies.RULES) is documented where it is defined.
        for full in by_short.get(name, []):
            module, _, attr = full.rpartition(".")
            try:
                if getattr(importlib.import_module(module), attr) is obj:
                    return True
            except (ImportError, AttributeError):
                continue
        return False

    names = _public_names()
    missing = [
        f"{module}.{name}"
        for module, name, obj in names
        if f"{module}.{name}" not in documented and not documented_elsewhere(name, obj)
    ]
    assert len(names) > 100
    assert not missing, f"no API entry for {missing}"


def posixpath_join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


EXTERNAL = re.compile(r"""<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)
CSS_EXTERNAL = re.compile(r"""url\(\s*["']?(?:https?:)?//|@import\s+["'](?:https?:)?//""", re.I)


def test_no_page_loads_anything_from_outside_the_site(site):
    offenders = []
    for page in site.html.rglob("*.html"):
        for match in EXTERNAL.finditer(page.read_text(errors="replace")):
            offenders.append(f"{page.relative_to(site.html)}: {match.group(0)[:120]}")
    for css in site.html.rglob("*.css"):
        for match in CSS_EXTERNAL.finditer(css.read_text(errors="replace")):
            offenders.append(f"{css.relative_to(site.html)}: {match.group(0)[:120]}")
    assert not offenders, offenders[:20]
    # MathJax is served from the site itself.
    assert (site.html / "_static" / "mathjax" / "MathJax.js").exists()


@contextlib.contextmanager
def _serve(root: Path):
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.browser
def test_a_browser_shows_an_interactive_figure_and_search_finds_cluster_margin(site):
    from tests.browser import harness

    reason = harness.unavailable_reason()
    if reason:
        pytest.skip(reason)
    assert site.returncode == 0, "the site did not build"
    shots = OUT / "screenshots"
    shots.mkdir(exist_ok=True)
    requests: list[str] = []
    failed: list[str] = []
    with _serve(site.html) as base, harness.chromium_page() as page:
        page.on("request", lambda r: requests.append(r.url))
        # Browsers ask every site for /favicon.ico on their own; any other missing file is a broken page.
        page.on(
            "response",
            lambda r: (
                failed.append(f"{r.status} {r.url}") if r.status >= 400 and not r.url.endswith("/favicon.ico") else None
            ),
        )
        page.goto(f"{base}/index.html")
        page.wait_for_url("**/docs/index.html", timeout=30_000)
        page.screenshot(path=str(shots / "landing.png"))
        # A notebook page: the figures were drawn by plotly.js (served from the site), with their mode bars.
        page.goto(f"{base}/notebooks/03_visualizing_clusters.html")
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
        drawn = page.evaluate(
            "() => [...document.querySelectorAll('.js-plotly-plot')]"
            ".filter(g => g._fullLayout && g._fullData && g._fullData.length).length"
        )
        assert drawn >= 1, "plotly.js drew the figures"
        # The map of the pool (a WebGL scatter: the explorer's static snapshot) is the figure to look at.
        index = page.evaluate(
            "() => [...document.querySelectorAll('.js-plotly-plot')]"
            ".findIndex(g => g._fullData && g._fullData.some(t => t.type === 'scattergl'))"
        )
        assert index >= 0, "the explorer's map is on the page"
        plot = page.locator(".js-plotly-plot").nth(index)
        plot.scroll_into_view_if_needed()
        box = plot.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 200
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_selector(".js-plotly-plot .modebar", state="attached", timeout=10_000)
        plot.screenshot(path=str(shots / "notebook-figure.png"))
        page.screenshot(path=str(shots / "notebook-page.png"))
        # Interactive: zooming through plotly.js changes the axis range the figure holds.
        js_range = (
            f"() => JSON.stringify(document.querySelectorAll('.js-plotly-plot')[{index}]._fullLayout.xaxis.range)"
        )
        before = page.evaluate(js_range)
        page.evaluate(
            f"() => Plotly.relayout(document.querySelectorAll('.js-plotly-plot')[{index}], {{'xaxis.range': [0, 1]}})"
        )
        after = page.evaluate(js_range)
        assert before != after and json.loads(after) == [0, 1]
        # Math: MathJax (served from the site) typesets the method page's formulas; no LaTeX is left as text.
        page.goto(f"{base}/docs/guide/method.html")
        page.wait_for_function(
            "() => document.querySelectorAll('.MathJax, .MathJax_Display, mjx-container').length > 10", timeout=60_000
        )
        page.wait_for_function(
            "() => !document.querySelector('#MathJax_Message') || "
            "getComputedStyle(document.querySelector('#MathJax_Message')).display === 'none'",
            timeout=60_000,
        )
        raw = page.evaluate(
            "() => [...document.querySelectorAll('span.math, div.math')]"
            ".filter(e => /\\\\\\(|\\\\\\[/.test(e.innerText)).length"
        )
        assert raw == 0, f"{raw} formulas left as LaTeX text"
        page.screenshot(path=str(shots / "math.png"))
        # Search: Sphinx's index, in the browser, finds the class.
        page.goto(f"{base}/search.html?q=ClusterMargin")
        page.wait_for_selector("#search-results li", timeout=60_000)
        results = page.locator("#search-results li").all_inner_texts()
        assert any("ClusterMargin" in r for r in results), results[:10]
        page.screenshot(path=str(shots / "search.png"))
    outside = [u for u in requests if not u.startswith((base, "data:", "blob:", "about:"))]
    assert not outside, f"the site asked for {outside[:10]}"
    assert not failed, f"missing files: {failed[:10]}"
    print(f"screenshots in {shots}")
