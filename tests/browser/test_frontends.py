"""The widgets in Notebook 7 and in a Voila dashboard (Chromium), and the static fallback where widgets are absent.

One notebook (tests/browser/make_notebook.py, ``write_dashboard``) holds the explorer under its selection controls
and a labeling widget. Each front end gets one server and one page for the whole module, and both start together
in one Chromium (module-scoped fixture): Notebook 7 runs the notebook through its Run menu while Voila runs it for
the dashboard page. In each, the tests check
the same things as the JupyterLab tests: the WebGL map draws points, "Select batch" runs Cluster-Margin in the
kernel and the batch appears in the plot, and clicks on the labeling widget's class buttons reach the label file.
Both outputs carry the static fallback as well (``cmal_widgets.static.show``): the live widget must win over it.

The notebook Notebook 7 saved (without widget state, its default) then goes through ``nbconvert`` to HTML, as on
GitHub or nbviewer, where no widget manager runs: the page must show the snapshot, offline (text and a line per
figure) and with plotly.js reachable (the map drawn).

Screenshots go to runs/browser-test/ (``CMAL_ARTIFACTS`` overrides): nb7-explorer.png, nb7-labeling.png,
voila-dashboard.png, voila-labeling.png, nbconvert-fallback.png (plotly.js reachable) and
nbconvert-fallback-offline.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cmal.labels import LabelStore
from tests.browser import harness
from tests.browser.make_notebook import write_dashboard

pytestmark = pytest.mark.browser

ARTIFACTS = Path(os.environ.get("CMAL_ARTIFACTS", Path(__file__).resolve().parents[2] / "runs" / "browser-test"))
# File name prefix of each front end's screenshots.
PREFIX = {"notebook": "nb7", "voila": "voila"}
# What the fallback snapshot says; it must never show where the live widget renders.
FALLBACK_TEXT = "this front end shows no widgets"


@dataclass
class Dashboard:
    """One front end with the test notebook open and run."""

    front_end: str
    page: Any  # playwright.sync_api.Page
    folder: Path
    store: Path
    seconds: float  # from "Run All" (Notebook 7) or the page request (Voila) to the map on screen
    base: str = ""
    token: str = ""
    # Kernel messages the page received that update a plotly figure, and browser errors: evidence for a failure.
    figure_updates: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def watch(self) -> None:
        """Record the page's figure updates (plotly's ``_py2js_*`` widget messages) and its JavaScript errors."""
        t0 = time.perf_counter()

        def frame(payload: bytes | str) -> None:
            data = payload if isinstance(payload, bytes) else payload.encode()
            if b"_py2js_update" in data or b"_py2js_restyle" in data:
                self.figure_updates.append(round(time.perf_counter() - t0, 1))

        self.page.on("websocket", lambda ws: ws.on("framereceived", frame))
        self.page.on("pageerror", lambda err: self.errors.append(str(err)[:300]))

    def fail(self, what: str, name: str) -> AssertionError:
        """An error naming a failure screenshot, what the page received and the tail of the server log."""
        shot = ARTIFACTS / f"{PREFIX[self.front_end]}-{name}-failure.png"
        state = "(page unavailable)"
        with contextlib.suppress(Exception):
            self.page.screenshot(path=str(shot), full_page=True)
            state = self.page.evaluate(
                "() => [...document.querySelectorAll('.js-plotly-plot')]"
                ".map(p => (p._fullData || []).map(t => t._length))"
            )
        logs = sorted(self.folder.glob("*.log"))
        tail = logs[0].read_text()[-3000:] if logs else "(no log)"
        return AssertionError(
            f"{self.front_end}: {what}; screenshot {shot}; points per trace in the page's plots: {state}; figure "
            f"updates received at {self.figure_updates} s; page errors: {self.errors[-5:]}; server log tail:\n{tail}"
        )


FRONT_ENDS = ("notebook", "voila")


@pytest.fixture(scope="module")
def front_ends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Dashboard | str | Exception]]:
    """Both front ends with the notebook run: per front end its :class:`Dashboard`, the reason it cannot run here,
    or the error it failed with (raised by the tests of that front end only).

    Started together, in one Chromium: the servers come up in parallel and Voila runs its kernel while Notebook 7
    runs its own, which saves about a third of the time over one after the other on two cores.
    """
    boards: dict[str, Dashboard | str | Exception] = {}
    for front_end in FRONT_ENDS:
        reason = harness.unavailable_reason(front_end)
        if reason:
            boards[front_end] = reason
    if len(boards) == len(FRONT_ENDS):
        yield boards
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    folders = {fe: tmp_path_factory.mktemp(fe) for fe in FRONT_ENDS if fe not in boards}
    for folder in folders.values():
        write_dashboard(folder, folder / "labels.json")
    servers = {
        "notebook": lambda f: harness.jupyter_notebook(f),
        "voila": lambda f: harness.voila(f / "dashboard.ipynb"),
    }
    with contextlib.ExitStack() as stack:
        # Both servers start at once (each waits on its own HTTP status); the stack stops them at the end.
        with ThreadPoolExecutor(len(folders)) as pool:
            started = {fe: pool.submit(stack.enter_context, servers[fe](folder)) for fe, folder in folders.items()}
        browser = stack.enter_context(harness.chromium())
        t0: dict[str, float] = {}
        for fe, future in started.items():
            if future.exception() is not None:
                boards[fe] = future.exception()
                continue
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            folder = folders[fe]
            board = boards[fe] = Dashboard(fe, page, folder, folder / "labels.json", 0.0)
            board.watch()
            try:
                if fe == "notebook":
                    board.base, board.token = future.result()
                    t0[fe] = harness.start_run_all(page, board.base, board.token, "dashboard.ipynb", front_end=fe)
                else:
                    t0[fe] = time.perf_counter()
                    # Returns as the response starts: Voila runs the notebook while Notebook 7 runs its own.
                    page.goto(future.result(), wait_until="commit", timeout=120_000)
            except Exception as err:
                boards[fe] = board.fail(f"the page did not open ({err})", "run")
        for fe in t0:
            board = boards[fe]
            try:
                if fe == "notebook":
                    board.seconds = harness.wait_for_run(board.page, t0[fe], front_end=fe)
                else:
                    board.page.wait_for_selector(harness.PLOT, timeout=120_000)
                    board.seconds = time.perf_counter() - t0[fe]
            except Exception as err:
                boards[fe] = board.fail(f"the notebook did not run to a plot ({err})", "run")
        yield boards


@pytest.fixture(params=FRONT_ENDS, ids=["notebook7", "voila"])
def dashboard(request: pytest.FixtureRequest, front_ends: dict[str, Dashboard | str | Exception]) -> Dashboard:
    board = front_ends[request.param]
    if isinstance(board, str):
        pytest.skip(board)
    if isinstance(board, Exception):
        raise board
    return board


def _outputs(board: Dashboard) -> Any:
    """The page's output areas: the explorer with its controls first, the labeling widget second."""
    return board.page.locator(".jp-OutputArea-output")


def _round_trip(page: Any, timeout_ms: int) -> int:
    """Check the map is drawn, click "Select batch", wait for the kernel's answer and the batch in the plot; return
    the map's coloured pixels before the click."""
    page.wait_for_selector("text=batch: none yet", timeout=60_000)
    plot = page.locator(".js-plotly-plot").filter(has=page.locator("canvas")).first
    plot.wait_for(timeout=timeout_ms)
    # The map finished its first draw (plotly.js holds the pool's points) before anything is clicked.
    page.wait_for_function(f"() => ({harness.POOL_POINTS_JS})() > 0", timeout=timeout_ms)
    # Points on screen: the WebGL canvas drew coloured pixels (the digits map, ten label colours).
    before = harness.colored_pixels(plot.screenshot())
    page.click("button:has-text('Select batch')")
    # The kernel ran Cluster-Margin and updated the label: the Python side holds a batch of k_t = 20.
    page.wait_for_selector("text=batch: cluster-margin: 20 selected", timeout=60_000)
    # ... and the batch trace in the browser now draws those 20 points.
    page.wait_for_function(f"() => ({harness.BATCH_POINTS_JS})() === 20", timeout=timeout_ms)
    return before


def test_explorer_renders_and_select_batch_round_trips(dashboard: Dashboard) -> None:
    page = dashboard.page
    # Voila, about one page load in five to ten on this machine, leaves the map deaf: the page receives the kernel's
    # figure update and plotly.js never applies it (or the map never gets its points). The cause lies in the front
    # end (Voila, anywidget, plotly's FigureWidget) and is not established, so a Voila page that shows it is loaded
    # once more, with a warning; a second failure fails the test. Notebook 7 gets no second chance.
    attempts = 2 if dashboard.front_end == "voila" else 1
    for attempt in range(1, attempts + 1):
        try:
            before = _round_trip(page, 20_000 if attempt < attempts else 30_000)
            break
        except Exception as err:
            error = dashboard.fail(f"explorer round trip failed ({err})", "explorer")
            if attempt == attempts:
                raise error from None
            warnings.warn(f"reloading the Voila dashboard once: {str(error)[:600]}", stacklevel=1)
            page.reload(wait_until="commit", timeout=120_000)
            page.wait_for_selector(harness.PLOT, timeout=120_000)
    n_drawn = page.evaluate(harness.BATCH_POINTS_JS)
    shown_fallback = page.get_by_text(FALLBACK_TEXT).count()
    name = "voila-dashboard.png" if dashboard.front_end == "voila" else "nb7-explorer.png"
    _outputs(dashboard).first.screenshot(path=str(ARTIFACTS / name))
    assert before > 2000, f"{dashboard.front_end}: the map drew only {before} coloured pixels"
    assert n_drawn == 20
    assert shown_fallback == 0, "the static fallback showed although the live widget renders here"
    assert dashboard.seconds < 90, f"{dashboard.front_end}: {dashboard.seconds:.1f} s to the first plot"
    print(f"{dashboard.front_end}: first plot after {dashboard.seconds:.1f} s; {ARTIFACTS / name}")


def test_labeling_by_clicking(dashboard: Dashboard) -> None:
    page = dashboard.page
    try:
        page.locator("button.cmal-label-class", has_text=re.compile(r"^\s*3\s*$")).click()  # item 5 -> "3"
        page.locator("button.cmal-label-class", has_text=re.compile(r"^\s*7\s*$")).click()  # item 17 -> "7"
        page.locator("button", has_text=re.compile(r"^\s*unsure\s*$")).click()  # item 42: unsure
        page.wait_for_selector("text=2/4 labeled", timeout=30_000)
    except Exception as err:
        raise dashboard.fail(f"labeling clicks failed ({err})", "labeling") from None
    deadline = time.monotonic() + 30
    answers = None
    while time.monotonic() < deadline:
        answers = [LabelStore.open(dashboard.store).answer(i) for i in (5, 17, 42, 99)]
        if answers == [3, 7, "unsure", None]:
            break
        time.sleep(0.3)
    name = f"{PREFIX[dashboard.front_end]}-labeling.png"
    _outputs(dashboard).nth(1).screenshot(path=str(ARTIFACTS / name))
    # Saved click by click: the file on disk holds every answer without any "save" step.
    assert answers == [3, 7, "unsure", None]


def _saved_outputs(path: Path) -> list[dict[str, Any]]:
    book = json.loads(path.read_text())
    return [o for c in book["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]


def test_saved_notebook_shows_the_snapshot_where_widgets_do_not_render(dashboard: Dashboard) -> None:
    if dashboard.front_end != "notebook":
        pytest.skip("Voila does not save notebooks: the saved-notebook check runs with Notebook 7")
    import nbconvert
    import nbformat

    page, saved = dashboard.page, dashboard.folder / "dashboard.ipynb"
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})  # focus the notebook, not an output
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sum(FALLBACK_TEXT in json.dumps(o) for o in _saved_outputs(saved)) < 2:
        time.sleep(0.3)
    outputs = _saved_outputs(saved)
    widget = "application/vnd.jupyter.widget-view+json"
    assert len(outputs) == 2 and all({widget, "text/html", "text/plain"} <= set(o["data"]) for o in outputs)
    book = nbformat.read(saved, as_version=4)
    assert "widgets" not in book.metadata, "Notebook 7 saved widget state (its default is not to)"
    html, _ = nbconvert.HTMLExporter(template_name="lab").from_notebook_node(book)
    page_file = dashboard.folder / "dashboard.html"
    page_file.write_text(html)
    assert widget not in html and "VBox(" not in html and html.count(FALLBACK_TEXT) == 2
    assert len(html) < 1_500_000, f"{len(html)} bytes: plotly.js must not be inlined per output"

    plotly_js = Path(__import__("plotly").__file__).parent / "package_data" / "plotly.min.js"
    viewer = page.context.browser.new_page()
    try:
        # Offline, as a reader without network: the snapshot's text, thumbnails and a line in place of each figure.
        viewer.route(re.compile(r"^https?://"), lambda route: route.abort())
        viewer.goto(page_file.as_uri())
        viewer.wait_for_selector(f"text={FALLBACK_TEXT}", timeout=10_000)
        placeholders = viewer.locator(".cmal-figure-placeholder").count()
        offline = viewer.inner_text("body")
        viewer.screenshot(path=str(ARTIFACTS / "nbconvert-fallback-offline.png"), full_page=True)
        # Online: plotly's CDN answers (served here from the installed plotly package), and so does nbconvert's
        # require.js when Voila ships a copy: the snapshot's loader then draws every figure through it.
        viewer.unroute(re.compile(r"^https?://"))
        requirejs = harness.voila_require_js()
        viewer.route(
            re.compile(r"^https?://"),
            lambda route: (
                route.fulfill(path=str(plotly_js), content_type="text/javascript")
                if re.search(r"cdn\.plot\.ly/plotly-[\d.]+\.min\.js$", route.request.url)
                else route.fulfill(path=str(requirejs), content_type="text/javascript")
                if requirejs and route.request.url.endswith("/require.min.js")
                else route.abort()
            ),
        )
        viewer.reload()
        viewer.wait_for_function(
            "() => [...document.querySelectorAll('.js-plotly-plot')].filter(p => p._fullData).length === 2",
            timeout=30_000,
        )
        # Points per trace as plotly.js drew them (its input keeps the arrays base64-encoded, as plotly.py sent them).
        drawn = viewer.evaluate(
            "() => [...document.querySelectorAll('.js-plotly-plot')].map(p => p._fullData.map(t => t._length))"
        )
        viewer.screenshot(path=str(ARTIFACTS / "nbconvert-fallback.png"), full_page=True)
    finally:
        viewer.close()
    assert placeholders == 2  # the histogram of cluster sizes and the map
    # A snapshot is the view as displayed (updating it would redraw the live widget): before any click.
    assert "batch: none yet" in offline and "0/4 labeled" in offline, offline[:2000]
    # The controls' histogram (the sizes of 60 clusters) and the map: the 1,797 digits, no candidates or batch yet.
    assert sorted(drawn, key=len) == [[60], [1797, 0, 0]], drawn
