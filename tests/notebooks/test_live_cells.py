"""The notebooks' live cells, run against fake ``docker`` and ``gcloud`` that record their arguments.

Notebooks 05 (compose) and 06 (Cloud Run) build, push and deploy only through
``deploy.run(command, live=LIVE)``; notebook 07, the workshop's one clean-up, deletes only through
``deploy.run(command, live=CLEANUP)``, a switch of its own. Here the two tools are small scripts first on
``PATH`` that append their argv to a record file (the moto style of testing cloud calls): with a switch on,
the notebooks must issue exactly the commands that ``yolo_service.workshop.deploy`` builds, in order, and a Run All
with ``LIVE = True`` never deletes or stops what it deployed; with the switches off, neither tool may be
called at all. No test touches the network: the fake ``gcloud`` answers ``services describe`` with the URL
of a local backend, so the "call the deployed URL" cells call 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import sys
from pathlib import Path

import nbformat
import pytest

from tests.helpers import ROOT
from tests.notebooks.runner import errors, left_running, run_notebook, run_tag, tagged_processes
from yolo_service.workshop import deploy
from yolo_service.workshop.processes import LocalServer

pytestmark = [pytest.mark.slow]

LIVE_OFF = "LIVE = False  # True: really run docker / gcloud"
CLEANUP_OFF = "CLEANUP = False  # True: really delete the compose stack and what step 6 deployed"
SWITCHES = {"05_compose": LIVE_OFF, "06_cloud_run": LIVE_OFF, "07_going_further": CLEANUP_OFF}
FAKE_PROJECT = "fake-project"
GET_PROJECT = ["gcloud", "config", "get-value", "project"]

# One script for both tools: it records its name and arguments, then answers like the real one would.
FAKE_TOOL = """#!{python}
import json, os, sys
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["FAKE_TOOLS_RECORD"], "a") as record:
    record.write(json.dumps([name, *args]) + "\\n")
if args[:3] == ["config", "get-value", "project"]:
    print(os.environ.get("FAKE_GCLOUD_PROJECT", "{project}"))
elif args[:3] == ["run", "services", "describe"] and os.environ.get("FAKE_NO_SERVICE"):
    sys.exit("ERROR: (gcloud.run.services.describe) Cannot find service [yolo-backend]")
elif args[:3] == ["run", "services", "describe"]:
    print(os.environ["FAKE_SERVICE_URL"])
elif args[:1] == ["info"]:
    print("27.3.1")
elif os.environ.get("FAKE_FAILING") and " ".join(args).startswith(os.environ["FAKE_FAILING"]):
    sys.exit("ERROR: (fake) this command fails")
else:
    print("fake " + name + ": ok")
"""


@pytest.fixture
def fake_tools(tmp_path, monkeypatch) -> Path:
    """Fake docker and gcloud first on PATH; returns the record file they append to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "gcloud"):
        tool = bin_dir / name
        tool.write_text(FAKE_TOOL.format(python=sys.executable, project=FAKE_PROJECT))
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TOOLS_RECORD", str(record))
    return record


@pytest.fixture(scope="module")
def deployed_backend():
    """A local backend standing in for the Cloud Run service the fake gcloud 'deployed'."""
    with LocalServer(
        ["yolo-service", "serve", "--host", "127.0.0.1"], env={"YOLO_SERVICE_ENGINE": "openvino"}
    ) as server:
        yield server


def recorded(record: Path) -> list[list[str]]:
    """The commands the fake tools received, in order."""
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def run_live_switch(name: str, tmp_path: Path, *, live: bool, failing: bool = False) -> nbformat.NotebookNode:
    """Run a copy of ``notebooks/NAME.ipynb`` with its switch set to ``live``; fail on any error or leftover.

    The copy runs in an empty working directory with the notebook tests' runner: no cell may fail (unless
    ``failing``: the caller checks where), the notebook must stop every process it started, and none may
    outlive the kernel or leave a file behind.
    """
    notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    off = SWITCHES[name]
    switches = [cell for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip() == off]
    assert len(switches) == 1, f"{name}: exactly one visible switch cell `{off}`"
    if live:
        switches[0].source = off.replace("False", "True", 1)
    copy, workdir = tmp_path / f"{name}.ipynb", tmp_path / "work"
    nbformat.write(notebook, copy)
    workdir.mkdir()
    tag = run_tag()
    executed = run_notebook(copy, workdir, timeout=240)
    assert bool(errors(executed)) == failing, errors(executed)
    assert left_running(executed) == [], f"{name} did not stop the processes it started"
    assert tagged_processes(tag) == [], f"{name} left processes running"
    assert list(workdir.iterdir()) == [], f"{name} left files in its working directory"
    return executed


def printed(notebook: nbformat.NotebookNode) -> str:
    """Everything the notebook's cells printed."""
    return "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)


def compose_commands() -> list[list[str]]:
    """What notebook 05 runs with Docker: up, ps, the check from inside the UI container; the stack stays up."""
    compose = ["docker", "compose", "-f", "docker-compose.yml"]
    return [
        deploy.compose_up_command(),
        [*compose, "ps"],
        [*compose, "exec", "-T", "frontend", "yolo-service", "check", "http://backend:8000"],
    ]


def cloud_run_commands(config: deploy.DeployConfig, backend_url: str, request_id: str) -> list[list[str]]:
    """The whole path of notebook 06, in order: the workshop's documented commands; nothing is deleted.

    ``request_id``: the id the deployed backend answered to the notebook's prediction, whose entries it reads.
    """
    return [
        GET_PROJECT,
        *deploy.enable_apis_commands(config),
        deploy.create_repository_command(config),
        deploy.docker_auth_command(config),
        *deploy.build_push_commands(config),
        deploy.deploy_backend_command(config),
        deploy.backend_url_command(config),
        deploy.deploy_frontend_command(config, backend_url),
        deploy.service_logs_command(config, limit=20),
        deploy.service_logs_command(config, severity="WARNING", limit=20),
        deploy.logging_read_command(config, deploy.trace_filter(config, request_id)),
    ]


def deletes_or_stops(commands: list[list[str]]) -> list[list[str]]:
    """The recorded commands that delete or stop something."""
    return [c for c in commands if "delete" in c or "down" in c or "rm" in c]


def test_compose_notebook_live_runs_exactly_the_documented_docker_commands(fake_tools, tmp_path):
    notebook = run_live_switch("05_compose", tmp_path, live=True)
    assert recorded(fake_tools) == compose_commands()
    assert shlex.join(deploy.compose_down_command()) in printed(notebook)  # said, for when you are done


def test_cloud_run_notebook_live_runs_the_whole_path_and_calls_the_url_gcloud_gave(
    fake_tools, tmp_path, monkeypatch, deployed_backend
):
    monkeypatch.setenv("FAKE_SERVICE_URL", deployed_backend.url)
    notebook = run_live_switch("06_cloud_run", tmp_path, live=True)
    config = deploy.DeployConfig(project=FAKE_PROJECT)
    output = printed(notebook)
    request_id = output.split("request id: ", 1)[1].split()[0]  # the deployed backend's answer
    assert re.fullmatch(r"[0-9a-f]{32}", request_id) and "the same in the answer: True" in output
    assert recorded(fake_tools) == cloud_run_commands(config, deployed_backend.url, request_id)
    assert deletes_or_stops(recorded(fake_tools)) == []  # LIVE = True leaves the deployment up, to be used
    assert f"checking {deployed_backend.url}" in output and "all checks passed" in output
    assert "stand-in" not in output.split("calling ", 1)[1].splitlines()[0]


def test_going_further_notebook_with_cleanup_on_deletes_everything(fake_tools, tmp_path):
    notebook = run_live_switch("07_going_further", tmp_path, live=True)
    config = deploy.DeployConfig(project=FAKE_PROJECT)
    assert recorded(fake_tools) == [GET_PROJECT, deploy.compose_down_command(), *deploy.cleanup_commands(config)]
    assert recorded(fake_tools)[-1][:4] == ["gcloud", "storage", "rm", "--recursive"]  # Cloud Build's bucket
    assert "If you built with Cloud Build" not in printed(notebook)  # deleted, not left to the learner


@pytest.mark.parametrize("name", ["06_cloud_run", "07_going_further"])
def test_with_no_gcloud_project_nothing_runs_with_a_placeholder(name, fake_tools, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_GCLOUD_PROJECT", "(unset)")
    notebook = run_live_switch(name, tmp_path, live=True, failing=True)
    first_error = errors(notebook)[0]
    assert first_error[1] == "RuntimeError" and "gcloud has no project configured: run `gcloud init`" in first_error[2]
    assert [c for c in recorded(fake_tools) if c[0] == "gcloud" and "your-project-id" in " ".join(c)] == []


def test_cloud_run_notebook_stops_with_gclouds_reason_when_the_service_has_no_url(fake_tools, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_NO_SERVICE", "1")
    notebook = run_live_switch("06_cloud_run", tmp_path, live=True, failing=True)
    index, name, message = errors(notebook)[0]
    assert "deploy.service_url(config)" in notebook.cells[index].source and name == "RuntimeError"
    assert "Cannot find service [yolo-backend]" in printed(notebook)  # gcloud's own reason, not "LIVE is False"
    assert "LIVE is False" not in printed(notebook)


def test_a_live_command_that_fails_stops_its_cell_with_one_line(fake_tools, tmp_path, monkeypatch):
    """The failed command's cell stops there (Jupyter's Run All with it; this runner goes on to the end)."""
    monkeypatch.setenv("FAKE_FAILING", "artifacts repositories create")
    notebook = run_live_switch("06_cloud_run", tmp_path, live=True, failing=True)
    index, name, message = errors(notebook)[0]  # the first: this runner goes on, so later cells fail too
    assert name == "CommandFailed" and "deploy.create_repository_command(config)" in notebook.cells[index].source
    failed = shlex.join(deploy.create_repository_command(deploy.DeployConfig(project=FAKE_PROJECT)))
    assert message == f"`{failed}` exited with code 1: its output above says why"
    assert "deploy.docker_auth_command(config)" in notebook.cells[index].source  # the next line did not run:
    assert ["gcloud", "auth", "configure-docker"] not in [c[:3] for c in recorded(fake_tools)]


def test_only_the_going_further_notebook_deletes_anything():
    """One clean-up: no other notebook builds a delete or stop command into a cell."""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        uses = ("cleanup_commands(" in code, "deploy.run(deploy.compose_down_command()" in code)
        assert uses == ((True, True) if path.stem == "07_going_further" else (False, False)), path.name


@pytest.mark.parametrize("name", ["05_compose", "06_cloud_run", "07_going_further"])
def test_with_the_switch_off_no_tool_is_ever_called(name, fake_tools, tmp_path):
    notebook = run_live_switch(name, tmp_path, live=False)
    assert recorded(fake_tools) == []
    assert "not run" in printed(notebook)
