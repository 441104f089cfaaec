"""Run a notebook on a fresh kernel for a test, and read what happened (shared by the notebook tests).

``run_notebook`` executes every cell even after an error (``allow_errors``), so a notebook's
clean-up cells always run, and returns the executed notebook; ``errors`` lists the cells that
failed. The kernel inherits this process's environment: offline, private weights dir (tests/conftest.py),
and a tag (``run_tag``) that every process it starts inherits too, so ``tagged_processes`` finds what a
notebook left running, and only that (other people's servers on the same machine do not count).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient

from tests.helpers import ROOT
from yolo_service.workshop.teaching import BEGIN_SOLUTION

__all__ = [
    "NOTEBOOKS",
    "ROOT",
    "STEPS",
    "errors",
    "has_exercise",
    "is_checkpoint",
    "left_running",
    "run_notebook",
    "run_tag",
    "tagged_processes",
]

#: The workshop's steps: ``notebooks/NN_name.ipynb`` and ``workshop/NN_name.md`` for each (PLAN.md).
STEPS = ["01_concepts", "02_setup", "03_backend", "04_frontend", "05_compose", "06_cloud_run", "07_going_further"]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TAG = "NOTEBOOK_TEST_RUN"


def is_checkpoint(cell: nbformat.NotebookNode) -> bool:
    """A checkpoint cell: a code cell whose source starts with ``# Checkpoint``."""
    return cell.cell_type == "code" and cell.source.lstrip().startswith("# Checkpoint")


def has_exercise(cell: nbformat.NotebookNode) -> bool:
    """A code cell with a solution block."""
    return cell.cell_type == "code" and BEGIN_SOLUTION in cell.source


#: Appended to the notebook by :func:`run_notebook`: the kernel's child processes still alive at the end.
#: (The kernel kills its children when it shuts down; a notebook must stop its servers itself, before.)
_CHILDREN_PROBE = (
    "import json, psutil\nprint(json.dumps([' '.join(c.cmdline()) for c in psutil.Process().children(recursive=True)]))"
)


def run_notebook(path: Path, workdir: Path, timeout: int = 180) -> nbformat.NotebookNode:
    """Execute ``path`` with ``workdir`` as the kernel's working directory; return the executed notebook.

    A last cell is appended that lists the kernel's child processes still running: see :func:`left_running`.
    """
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(_CHILDREN_PROBE))
    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(workdir)}},
    ).execute()
    return notebook


def left_running(notebook: nbformat.NotebookNode) -> list[str]:
    """The command lines of the processes the notebook started and did not stop (from the appended probe)."""
    probe = notebook.cells[-1]
    assert probe.source == _CHILDREN_PROBE, "run the notebook with run_notebook()"
    return json.loads("".join(o.get("text", "") for o in probe.outputs if o.output_type == "stream"))


def errors(notebook: nbformat.NotebookNode) -> list[tuple[int, str, str]]:
    """``(cell index, exception name, message)`` of every cell that raised."""
    return [
        (index, output.ename, output.evalue)
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]


def run_tag() -> str:
    """Set a fresh ``NOTEBOOK_TEST_RUN`` tag in this process's environment: kernels and their servers inherit it."""
    tag = uuid.uuid4().hex
    os.environ[TAG] = tag
    return tag


def tagged_processes(tag: str) -> list[str]:
    """The processes, other than this one, that inherited ``tag``: what a notebook left running."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.info["pid"] == os.getpid():
            continue
        try:
            if proc.environ().get(TAG) == tag:
                found.append(f"{proc.info['pid']}: {' '.join(proc.info['cmdline'] or [])}")
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def stop_tagged(tag: str, timeout: float = 10.0) -> None:
    """Stop every process that inherited ``tag`` (SIGTERM, then SIGKILL): a test's teardown, pass or fail."""
    procs = []
    for proc in psutil.process_iter(["pid"]):
        if proc.info["pid"] == os.getpid():
            continue
        try:
            if proc.environ().get(TAG) == tag:
                proc.terminate()
                procs.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        proc.kill()
