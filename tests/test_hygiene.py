"""Code hygiene that make test enforces: ruff's lint and format rules on the whole tree (notebooks included), mypy on
cmal/, and notebooks as nbstripout leaves them (the same checks .pre-commit-config.yaml runs on commit)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return path


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_lint_is_clean():
    out = _run(_tool("ruff"), "check", "--no-cache", ".")
    assert out.returncode == 0, f"ruff check found problems (fix: ruff check --fix .):\n{out.stdout[-4000:]}"


def test_ruff_format_is_clean():
    out = _run(_tool("ruff"), "format", "--no-cache", "--check", ".")
    assert out.returncode == 0, f"files not formatted (fix: ruff format .):\n{out.stdout[-4000:]}"


def test_notebooks_are_as_nbstripout_leaves_them(tmp_path):
    tool = _tool("nbstripout")
    books = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert books
    copies = []
    for book in books:
        shutil.copy(book, tmp_path / book.name)
        copies.append(str(tmp_path / book.name))
    out = _run(tool, "--keep-id", *copies)
    assert out.returncode == 0, out.stderr
    changed = [b.name for b in books if (tmp_path / b.name).read_bytes() != b.read_bytes()]
    assert not changed, f"nbstripout would change {changed} (fix: nbstripout --keep-id notebooks/*.ipynb)"


def test_mypy_finds_no_errors_in_cmal():
    out = _run(_tool("mypy"))  # files and settings: [tool.mypy] in pyproject.toml
    assert out.returncode == 0, f"mypy found type errors in cmal/:\n{out.stdout[-4000:]}"
    assert "Success: no issues found" in out.stdout, out.stdout[-2000:]
