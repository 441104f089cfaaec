"""``LocalServer`` and ``yolo-service up``: a server that fails to start, or is stopped, leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers import ROOT, executable, free_port
from yolo_service.workshop.processes import LocalServer


def gone(pid: int) -> bool:
    """True when no process has this id any more (a zombie of ours has been reaped by wait())."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_server_that_exits_at_start_is_reported_with_its_output(tmp_path):
    server = LocalServer(
        [sys.executable, "-c", "print('no model here'); raise SystemExit(3)"], log_path=tmp_path / "a.log"
    )
    with pytest.raises(RuntimeError, match="exited with 3:\nno model here"):
        server.start()
    assert server.proc.returncode == 3 and server._log.closed
    assert not server.running


def test_a_server_that_never_becomes_ready_is_stopped(tmp_path):
    server = LocalServer(
        [sys.executable, "-c", "import time; print('starting', flush=True); time.sleep(120)"],
        timeout=1.5,
        log_path=tmp_path / "b.log",
    )
    # __exit__ never runs when __enter__ raises: start() itself must clean up.
    with pytest.raises(TimeoutError, match="did not answer 200 in 2 s:\nstarting"), server:
        pass
    assert server.proc.returncode == -signal.SIGTERM  # terminated, not left sleeping
    assert gone(server.proc.pid) and server._log.closed
    assert "starting" in server.log()  # the log stays readable after the failure


@pytest.mark.slow
def test_up_runs_the_api_and_the_ui_and_ctrl_c_stops_both():
    api_port, ui_port = free_port(), free_port()
    env = {**os.environ, "YOLO_SERVICE_PRELOAD": "false", "YOLO_SERVICE_HOST": "127.0.0.1"}
    proc = subprocess.Popen(
        [executable("yolo-service"), "up", "--api-port", str(api_port), "--ui-port", str(ui_port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        urls = (f"http://127.0.0.1:{api_port}/health", f"http://127.0.0.1:{ui_port}/_stcore/health")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if all(httpx.get(url, timeout=2).status_code == 200 for url in urls):
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail(f"{urls} did not both answer in 90 s")
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the command
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read()
    assert f"API: http://localhost:{api_port}/docs   UI: http://localhost:{ui_port}" in output
    for url in urls:
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=2)
