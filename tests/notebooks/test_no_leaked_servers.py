"""No leaked servers: Run All twice on a learners' copy leaves one server of each kind, and none once the kernel ends.

A learner's Run All stops at the first cell that fails: in a learners' copy, the checkpoint of the exercise,
before the clean-up cell. A second Run All in the same kernel starts the servers again; each
``LocalServer(..., name=...)`` stops the one started before under its name. When the kernel shuts down
(or restarts), what is left stops with it (ipykernel terminates its children; ``atexit`` in
``yolo_service.workshop.processes`` does it for any other Python). The servers are counted among the kernel's
child processes (psutil reads ``/proc``); after the shutdown, by the tag every process of this test inherits.
"""

from __future__ import annotations

import nbformat
import psutil
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.notebooks.runner import ROOT, is_checkpoint, run_tag, stop_tagged, tagged_processes
from yolo_service.workshop.teaching import write_student_notebook

pytestmark = [pytest.mark.slow]

#: What each kind of server runs: ``yolo-service serve`` (the API) and ``yolo-service ui`` (it becomes Streamlit).
KINDS = {"API": "yolo-service serve", "UI": "streamlit run"}


def servers(kernel: psutil.Process) -> dict[str, list[int]]:
    """The process ids of the kernel's servers, by kind."""
    found: dict[str, list[int]] = {kind: [] for kind in KINDS}
    for child in kernel.children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        for kind, marker in KINDS.items():
            if marker in command:
                found[kind].append(child.pid)
    return found


def run_all(client: NotebookClient, notebook: nbformat.NotebookNode) -> int | None:
    """What JupyterLab's Run All does: run the code cells in order, stop at the first that fails; return its index."""
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            try:
                client.execute_cell(cell, index)
            except CellExecutionError:
                return index
    return None


def test_run_all_twice_leaves_one_server_of_each_kind_and_the_kernels_end_stops_them(tmp_path):
    copy = tmp_path / "student" / "04_frontend.ipynb"
    write_student_notebook(ROOT / "notebooks" / "04_frontend.ipynb", copy)
    notebook = nbformat.read(copy, as_version=4)
    workdir = tmp_path / "work"
    workdir.mkdir()
    tag = run_tag()
    # A long shutdown wait: the kernel must stop its servers and exit on its own; jupyter_client would otherwise
    # signal the kernel's whole process group (the servers too) after half of it, hiding what the kernel did.
    manager = KernelManager(kernel_name="python3", shutdown_wait_time=120)
    client = NotebookClient(notebook, km=manager, timeout=180, resources={"metadata": {"path": str(workdir)}})

    try:
        with client.setup_kernel(cleanup_kc=True):  # shut the kernel down at the end, as JupyterLab's "Shut Down"
            kernel_process = manager.provisioner.process
            kernel = psutil.Process(kernel_process.pid)
            stopped_at = run_all(client, notebook)
            assert stopped_at is not None and is_checkpoint(notebook.cells[stopped_at]), (
                "Run All stops at the checkpoint"
            )
            first = servers(kernel)
            assert {kind: len(pids) for kind, pids in first.items()} == {"API": 1, "UI": 1}, first

            assert run_all(client, notebook) == stopped_at
            second = servers(kernel)

            assert {kind: len(pids) for kind, pids in second.items()} == {"API": 1, "UI": 1}, second
            assert not set(first["API"] + first["UI"]) & set(second["API"] + second["UI"]), (
                "the first run's are stopped"
            )

        assert kernel_process.returncode == 0, "the kernel exited on its own (not killed with its process group)"
        assert tagged_processes(tag) == [], "the kernel's end must stop the servers it started"
    finally:  # pass or fail, nothing this test started outlives it (a failed assert above must not leak servers)
        stop_tagged(tag)
