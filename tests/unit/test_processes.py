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
from yolo_service.workshop.processes import LocalServer, running_servers


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
@pytest.mark.parametrize(
    "signals",
    [
        pytest.param([signal.SIGINT], id="ctrl-c"),
        # `kill` of make's process group: make passes its own SIGTERM on, so `up` gets two at once
        pytest.param([signal.SIGTERM, signal.SIGTERM], id="sigterm-twice"),
    ],
)
def test_up_runs_the_api_and_the_ui_and_a_signal_stops_both(signals):
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
        for sent in signals:
            proc.send_signal(sent)
            time.sleep(0.3)  # the second arrives while `up` stops the servers, as make's does
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read()
    assert f"API: http://localhost:{api_port}/docs   UI: http://localhost:{ui_port}" in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-2000:]
    for url in urls:
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=2)


SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def sleeper(tmp_path, name: str | None = None) -> LocalServer:
    """A stand-in server that needs no port: a process that sleeps (started with ``wait=False``)."""
    return LocalServer(SLEEPER, wait=False, name=name, log_path=tmp_path / f"{name}-{free_port()}.log")


def mine(*servers: LocalServer) -> list[LocalServer]:
    """The running servers among these, in the registry's order: other tests' session servers are left out."""
    return [server for server in running_servers() if any(server is own for own in servers)]


def stop(*servers: LocalServer) -> None:
    """Stop only these (``stop_all`` would also stop the servers of other tests in this process)."""
    for server in servers:
        server.stop()


def test_starting_a_named_server_stops_the_one_started_before_under_that_name(tmp_path):
    # Names of their own: a session fixture of another test module may run a server named "backend".
    role, other_role = f"backend-{free_port()}", f"ui-{free_port()}"
    first, second, other = sleeper(tmp_path, role), sleeper(tmp_path, role), sleeper(tmp_path, other_role)
    try:
        first.start(), other.start()
        second.start()  # a re-run notebook cell: a new LocalServer, the same role

        assert first.proc.returncode == -signal.SIGTERM and gone(first.pid)
        assert second.running and other.running
        assert mine(first, second, other) == [other, second]
        first.start()  # and back: the second one is stopped in turn
        assert not second.running and mine(first, second, other) == [other, first]
    finally:
        stop(first, second, other)
    assert mine(first, second, other) == [] and not first.running and not other.running


def test_starting_a_server_again_stops_its_own_process_first(tmp_path):
    server = sleeper(tmp_path)
    try:
        old = server.start().pid
        new = server.start().pid
        assert new != old and gone(old) and server.running
        assert mine(server) == [server]
    finally:
        server.stop()
    assert mine(server) == []


def test_servers_without_a_name_run_side_by_side(tmp_path):
    servers = [sleeper(tmp_path).start() for _ in range(2)]
    try:
        assert all(server.running for server in servers) and mine(*servers) == servers
    finally:
        stop(*servers)
    assert all(server.proc.returncode == -signal.SIGTERM for server in servers)


def test_the_servers_a_process_started_stop_when_it_exits(tmp_path):
    """What a kernel does when it shuts down or restarts: its Python exits, atexit stops the servers."""
    script = (
        "import sys\n"
        "from yolo_service.workshop.processes import LocalServer\n"
        f"server = LocalServer({SLEEPER!r}, wait=False, name='backend').start()\n"
        "print(server.pid, flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert gone(int(done.stdout))
