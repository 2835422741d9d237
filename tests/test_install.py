"""cmal as a user installs it: the wheel and the sdist built from this checkout, the wheel installed (not editable)
with its extras into a fresh virtual environment (its dependencies resolved against the ones this environment
has, not downloaded again), and used from a folder outside the checkout. `make wheelhouse` and the install guide
cover a fully fresh, offline install.

This catches what an editable install hides: a subpackage or data file missing from the wheel, a module that
imports something only the checkout has, a console script that is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _source_modules() -> list[str]:
    """Every module of cmal/ and widgets/ (as cmal_widgets), from the source tree."""
    names = []
    for package, folder in (("cmal", ROOT / "cmal"), ("cmal_widgets", ROOT / "widgets")):
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join([package, *parts]))
    return names


def _run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out)
    return out


def test_the_wheel_and_sdist_hold_every_module_and_data_file(dist):
    wheel = next(dist.glob("cmal-*.whl"))
    files = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        m.replace(".", "/") + (".py" if not (ROOT / m.replace(".", "/")).is_dir() else "/__init__.py")
        for m in _source_modules()
        if m.startswith("cmal.") or m == "cmal"
    }
    missing = sorted(e for e in expected if e not in files)
    widget_files = {f"cmal_widgets/{p.relative_to(ROOT / 'widgets')}" for p in (ROOT / "widgets").rglob("*.py")}
    missing += sorted(widget_files - files)
    assert not missing, f"missing from the wheel: {missing}"
    data = sorted(f for f in files if f.startswith("cmal/_data/"))
    assert any(f.endswith("t10k-images-idx3-ubyte.gz") for f in data), data
    assert {"cmal/py.typed", "cmal_widgets/py.typed"} <= files
    assert any(f.endswith("licenses/LICENSE") for f in files)
    metadata = zipfile.ZipFile(wheel).read(next(f for f in files if f.endswith("/METADATA"))).decode()
    from cmal import __version__

    assert f"Version: {__version__}\n" in metadata and "License-Expression: Apache-2.0" in metadata
    sdist = next(dist.glob("cmal-*.tar.gz"))
    names = tarfile.open(sdist).getnames()
    assert any(n.endswith("/cmal/scale/graph.py") for n in names) and any(n.endswith("/LICENSE") for n in names)


def test_the_installed_wheel_works_outside_the_checkout(dist, tmp_path):
    wheel = next(dist.glob("cmal-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    # The dependencies (TensorFlow alone is ~600 MB) come from this test environment instead of being downloaded
    # and installed again (minutes): its site-packages is appended to the new venv's path by a .pth line. A plain
    # path line runs none of the .pth files there, so this checkout's editable install stays invisible. pip still
    # resolves the wheel's requirements, extras included, against the distributions it finds on that path.
    site = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp_path)
    here = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "numpy").is_dir())
    Path(site.stdout.strip(), "cmal-test-deps.pth").write_text(here + "\n")
    _run([str(py), "-m", "pip", "install", "--quiet", f"{wheel}[widgets,scale]"], cwd=tmp_path, timeout=1800)
    work = tmp_path / "elsewhere"
    work.mkdir()
    # Every module imports from the installed copy, not from this checkout.
    modules = _source_modules()
    script = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    mod = importlib.import_module(m)\n"
        f"    assert {str(ROOT)!r} not in (mod.__file__ or ''), mod.__file__\n"
        "print(len(sys.modules))\n"
    )
    _run([str(py), "-c", script], cwd=work)
    assert "usage: cmal" in _run([str(venv / "bin" / "cmal"), "--help"], cwd=work).stdout
    rng = np.random.default_rng(0)
    np.save(work / "probs.npy", rng.dirichlet(np.ones(4), 200))
    np.save(work / "clusters.npy", rng.integers(0, 15, 200))
    _run(
        [
            str(venv / "bin" / "cmal"),
            "select",
            "--probs",
            "probs.npy",
            "--clusters",
            "clusters.npy",
            "--batch-size",
            "10",
            "--out",
            "batch.npy",
        ],
        cwd=work,
    )
    batch = np.load(work / "batch.npy")
    assert batch.shape == (10,) and np.unique(batch).size == 10
    loaded = _run(
        [
            str(py),
            "-c",
            "from cmal.data import load_dataset; d = load_dataset('mnist'); "
            "print(d.x_pool.shape[0] + d.x_test.shape[0])",
        ],
        cwd=work,
    )
    assert loaded.stdout.split()[-1] == "10000", "the bundled MNIST (10,000 test digits) ships in the wheel"
