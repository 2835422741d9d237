"""How long each notebook of the series takes, run in order as a workshop participant would.

Executes every ``notebooks/NN_*.ipynb`` top to bottom (solutions included) in a fresh copy of the notebooks
folder, so the first notebook trains the shared seed stage and compiles UMAP as it would on a new laptop, and
prints per notebook the wall time, the time of its solution cells and its slowest cell. Instructors: run it on
the laptop model of the room to plan the agenda (``notebooks/README.md`` quotes its figures for 2 cores).

    python benchmarks/notebook_times.py                 # all notebooks, cold caches
    python benchmarks/notebook_times.py 00 05 --warm    # some notebooks, reusing notebooks/runs and ~/.cache/cmal
    python benchmarks/notebook_times.py --json times.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = 180  # issue 12: each notebook runs in <= 3 minutes on 2 cores with its defaults


def time_notebook(path: Path, cwd: Path, timeout: int = 900) -> dict:
    """Execute one notebook in ``cwd``; wall time of the whole run, of its solution cells and of its slowest cell."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    cells: list[tuple[int, float, bool]] = []
    t0 = time.perf_counter()
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            start = time.perf_counter()
            client.execute_cell(cell, i)
            cells.append((i, time.perf_counter() - start, "solution" in cell.metadata.get("tags", [])))
    total = time.perf_counter() - t0
    slowest = max(cells, key=lambda c: c[1]) if cells else (None, 0.0, False)
    return {
        "notebook": path.stem,
        "seconds": total,
        "solution_seconds": sum(s for _, s, sol in cells if sol),
        "slowest_cell": slowest[0],
        "slowest_cell_seconds": slowest[1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="notebook numbers to run (default: all, in order)")
    parser.add_argument(
        "--warm",
        action="store_true",
        help="run in notebooks/ itself, reusing its cached seed stage and the projection cache",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    books = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        books = [b for b in books if b.name[:2] in {n.zfill(2) for n in args.only}]
    env_cache = os.environ.get("CMAL_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="cmal-nb-times-") as tmp:
        if args.warm:
            cwd = ROOT / "notebooks"
        else:
            cwd = Path(tmp) / "notebooks"
            shutil.copytree(ROOT / "notebooks", cwd, ignore=shutil.ignore_patterns("runs", ".ipynb_checkpoints"))
            # Notebooks reach ../benchmarks and ../tests (07 runs the benchmark and the contract tests): the
            # rest of the checkout is linked beside the copy, read-only in practice.
            for entry in ROOT.iterdir():
                if entry.name not in ("notebooks", ".git", "runs"):
                    (Path(tmp) / entry.name).symlink_to(entry)
            os.environ["CMAL_CACHE_DIR"] = str(Path(tmp) / "cache")  # cold projection cache too (read by kernels)
        rows = []
        try:
            for book in books:
                row = time_notebook(cwd / book.name, cwd)
                rows.append(row)
                print(
                    f"{row['notebook']:40s} {row['seconds']:7.1f} s  (solutions {row['solution_seconds']:5.1f} s; "
                    f"slowest cell [{row['slowest_cell']}] {row['slowest_cell_seconds']:5.1f} s)",
                    flush=True,
                )
        finally:
            if env_cache is None:
                os.environ.pop("CMAL_CACHE_DIR", None)
            else:
                os.environ["CMAL_CACHE_DIR"] = env_cache
    total = sum(r["seconds"] for r in rows)
    over = [r["notebook"] for r in rows if r["seconds"] > BUDGET_SECONDS]
    print(
        f"\n{len(rows)} notebooks in {total / 60:.1f} min on {os.cpu_count()} cores ({'warm' if args.warm else 'cold'} "
        f"caches); over the {BUDGET_SECONDS} s budget: {', '.join(over) or 'none'}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"cores": os.cpu_count(), "warm": args.warm, "notebooks": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
