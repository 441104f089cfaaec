"""Run a notebook on a fresh kernel for a test, and read what happened (shared by the notebook tests).

``run_notebook`` executes every cell even after an error (``allow_errors``), so a notebook's
clean-up cells always run, and returns the executed notebook; ``errors`` lists the cells that
failed. The kernel inherits this process's environment: offline, private weights dir (tests/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient

from tests.helpers import ROOT
from yolo_service.teaching import BEGIN_SOLUTION

__all__ = ["NOTEBOOKS", "ROOT", "STEPS", "errors", "is_checkpoint", "run_notebook", "server_processes"]

#: The workshop's steps: ``notebooks/NN_name.ipynb`` and ``workshop/NN_name.md`` for each (PLAN.md).
STEPS = ["01_concepts", "02_setup", "03_backend", "04_frontend", "05_compose", "06_cloud_run", "07_going_further"]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SERVER_WORDS = ("uvicorn", "streamlit", "yolo-service", "yolo_service")


def is_checkpoint(cell: nbformat.NotebookNode) -> bool:
    """A checkpoint cell: a code cell whose source starts with ``# Checkpoint``."""
    return cell.cell_type == "code" and cell.source.lstrip().startswith("# Checkpoint")


def has_exercise(cell: nbformat.NotebookNode) -> bool:
    """A code cell with a solution block."""
    return cell.cell_type == "code" and BEGIN_SOLUTION in cell.source


def run_notebook(path: Path, workdir: Path, timeout: int = 180) -> nbformat.NotebookNode:
    """Execute ``path`` with ``workdir`` as the kernel's working directory; return the executed notebook."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(workdir)}},
    ).execute()
    return notebook


def errors(notebook: nbformat.NotebookNode) -> list[tuple[int, str, str]]:
    """``(cell index, exception name, message)`` of every cell that raised."""
    return [
        (index, output.ename, output.evalue)
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]


def server_processes() -> set[int]:
    """Pids of this user's processes that look like a server the notebooks start."""
    found = set()
    for proc in psutil.process_iter(["pid", "cmdline", "uids"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["uids"] and proc.info["uids"].real == os.getuid() and any(w in cmdline for w in SERVER_WORDS):
            found.add(proc.info["pid"])
    return found
