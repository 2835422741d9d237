"""The notebook series as teaching material: structure every notebook shares (the docs build in
tests/docs/test_site.py executes them).

What is checked here is what a participant meets before running anything: a tagged parameters cell with nothing
destructive in it, no committed outputs, enough prose to tell a story, and a solution cell after every exercise.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MIN_PROSE_WORDS = 600  # the series aims for 600-900 words of prose per notebook (issue 12)


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _src(cell: dict) -> str:
    return "".join(cell["source"])


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def test_the_series_is_numbered_without_gaps():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == list(range(len(numbers))), [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(path):
    cells = _cells(path)
    params = [c for c in cells if "parameters" in _tags(c)]
    assert len(params) == 1 and params[0]["cell_type"] == "code", "exactly one code cell tagged 'parameters'"
    p = _src(params[0])
    assert not re.search(r"rmtree|unlink|remove\(|open\(|\.write", p), "nothing destructive in the parameters cell"
    assert not re.search(r"^[A-Z][A-Z_0-9]* *=", p, re.M), "parameters are lowercase names"
    for c in cells:
        if c["cell_type"] == "code":
            assert c.get("outputs") == [] and c.get("execution_count") is None, "commit notebooks without outputs"
    prose = " ".join(re.sub(r"```.*?```", " ", _src(c), flags=re.S) for c in cells if c["cell_type"] == "markdown")
    words = len(re.findall(r"[A-Za-z][A-Za-z'’-]*", prose))
    assert words >= MIN_PROSE_WORDS, f"{words} words of prose"
    assert "2107.14263" in prose, "cite the paper (arXiv 2107.14263)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_exercise_has_a_solution_that_runs(path):
    cells = _cells(path)
    exercises = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and _src(c).startswith("**Exercise")]
    assert exercises, "every notebook ends with exercises"
    for n, i in enumerate(exercises, 1):
        assert _src(cells[i]).startswith(f"**Exercise {n}."), f"exercises are numbered 1, 2, ...: cell {i}"
        sol = cells[i + 1] if i + 1 < len(cells) else None
        assert sol is not None and sol["cell_type"] == "code" and "solution" in _tags(sol), (
            f"Exercise {n} is followed by a code cell tagged 'solution'"
        )
        assert _src(sol).startswith(f"# Solution {n}"), f"Exercise {n}'s solution starts with '# Solution {n}'"
        # Collapsed in JupyterLab so a participant tries first; the docs build still executes it.
        assert sol.get("metadata", {}).get("jupyter", {}).get("source_hidden") is True
