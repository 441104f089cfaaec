"""Execute every notebook and keep outputs only where nbval checks them.

Committed notebooks carry no outputs and no execution counts, except cells marked
``# NBVAL_CHECK_OUTPUT``, which keep both (nbval compares them, and fails a cell with
outputs but no count). Widget state is dropped too. The kernel runs offline, as the tests do, so the
kept outputs are the ones the tests expect. Run after editing a notebook:
    PYTHONPATH=$PWD .venv/bin/python scripts/refresh_notebooks.py [NOTEBOOK ...]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("YOLO_SERVICE_OFFLINE", "1")  # the kernel inherits it: offline like the tests


def refresh(path: Path) -> None:
    """Run ``path`` on a fresh kernel and strip the outputs nbval does not check."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    count = 0
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        if "NBVAL_CHECK_OUTPUT" in cell.source:
            count += 1
            cell.execution_count = count
        else:
            cell.outputs, cell.execution_count = [], None
    notebook.metadata.pop("widgets", None)
    nbformat.write(notebook, path)
    print(f"refreshed {path.resolve().relative_to(ROOT)}")


if __name__ == "__main__":
    for arg in sys.argv[1:] or sorted(str(p) for p in (ROOT / "notebooks").glob("*.ipynb")):
        refresh(Path(arg))
