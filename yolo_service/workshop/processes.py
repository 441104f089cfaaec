"""Run the API or the UI as a background process: for notebooks, tests and benchmarks.

``LocalServer`` starts a command on a free loopback port, waits until a path answers
200, and stops the process (SIGTERM, then kill) on exit, so a notebook cell or a test
never leaves a server behind, even when the server never becomes ready.

A notebook is not a ``with`` block: a learner re-runs a cell, or runs all cells twice after a
checkpoint stopped the first run before the clean-up cell. So a server given a ``name`` is the only
one of that name in this process: starting it stops the one started before under the same name.
Every server still running when this Python exits is stopped by an ``atexit`` handler (a script, a
test session; a Jupyter kernel that shuts down or restarts also stops its child processes itself).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import BinaryIO

import httpx

__all__ = ["TORCH_MODULES", "LocalServer", "executable", "free_port", "import_blocker", "running_servers", "stop_all"]

#: What a torch-free process must not import: torch, its vision package, Ultralytics, and OpenCV.
TORCH_MODULES = ("torch", "torchvision", "ultralytics", "cv2")


def import_blocker(modules: tuple[str, ...] = TORCH_MODULES) -> str:
    """Python source that makes ``modules`` (and their submodules) unimportable in the process that runs it.

    Put it before the code of ``python -c``: a torch-free server, or a test that the core imports
    without torch, then fails at the first import of a blocked module instead of silently loading it.
    """
    return textwrap.dedent(
        f"""
        import sys
        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {sorted(modules)!r}:
                    raise ImportError(f"{{name}} is blocked: this process must run without it")
        sys.meta_path.insert(0, _Block())
        """
    )


#: The servers this process started and has not stopped yet, oldest first.
_STARTED: list[LocalServer] = []
#: The named ones among them: one server per name.
_NAMED: dict[str, LocalServer] = {}


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def executable(name: str) -> str:
    """A console script next to this Python (the venv's bin), else on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


class LocalServer:
    """A server process on 127.0.0.1, started on enter and stopped on exit.

    Args:
        argv: the command; its first word is looked up next to this Python first.
        port: the port it listens on (default: a free one, passed as ``$PORT``).
        env: extra environment variables.
        ready_path: the path that answers 200 once it serves (``/ready`` for the API).
        timeout: seconds to wait for it.
        log_path: where its output goes (default: a temporary file).
        wait: wait for ``ready_path`` in :meth:`start`.
        cwd: the working directory of the process.
        show_output: let the process write to this terminal instead of the log (``yolo-service up``).
        name: the server's role in this process (``"backend"``, ``"ui"``): starting it stops the server
            started before under the same name, so a re-run notebook cell replaces its server.
    """

    def __init__(
        self,
        argv: list[str] | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        ready_path: str = "/ready",
        timeout: float = 120.0,
        log_path: Path | None = None,
        wait: bool = True,
        cwd: Path | None = None,
        show_output: bool = False,
        name: str | None = None,
    ) -> None:
        self.port = port or free_port()
        argv = argv or ["yolo-service", "serve", "--host", "127.0.0.1"]
        self.argv = [executable(argv[0]), *argv[1:]]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PORT": str(self.port), **(env or {})}
        self.ready_path, self.timeout, self.wait, self.cwd = ready_path, timeout, wait, cwd
        self.show_output, self.name = show_output, name
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="yolo-service-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    def start(self) -> LocalServer:
        """Start the process and, unless ``wait=False``, wait until it is ready.

        If it never becomes ready (it exits, or ``timeout`` passes), the process is
        stopped before the error is raised: a failed start leaves nothing running.
        Starting stops first the process this server started before, and the server of the same ``name``.
        """
        self.stop()
        previous = _NAMED.get(self.name) if self.name else None
        if previous is not None and previous is not self:
            previous.stop()
        if self.show_output:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd)
        else:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("wb")
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.cwd
            )
        _STARTED.append(self)
        if self.name:
            _NAMED[self.name] = self
        if self.wait:
            try:
                self.wait_for(self.ready_path)
            except BaseException:  # RuntimeError, TimeoutError, Ctrl-C: stop it, then let the error through
                self.stop()
                raise
        return self

    @property
    def pid(self) -> int:
        """The process id of the started server."""
        if self.proc is None:
            raise RuntimeError("the server is not started: call start() first")
        return self.proc.pid

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def wait_for(self, path: str, status: int = 200) -> None:
        """Poll ``path`` until it answers ``status``; raise with the process's output if it dies or times out."""
        if self.proc is None:
            raise RuntimeError("the server is not started: call start() first")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{' '.join(self.argv)} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == status:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.url}{path} did not answer {status} in {self.timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        """What the process has printed so far."""
        if self.show_output:
            return "(the output went to the terminal)"
        if self._log is not None and not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then kill; return the exit code."""
        if self in _STARTED:
            _STARTED.remove(self)
        if self.name and _NAMED.get(self.name) is self:
            del _NAMED[self.name]
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "not started" if self.proc is None else ("running" if self.running else "stopped")
        return f"LocalServer({self.url}, {state})"


def running_servers() -> list[LocalServer]:
    """The servers this process started and has not stopped, oldest first."""
    return [server for server in _STARTED if server.running]


def stop_all(timeout: float = 15.0) -> None:
    """Stop every server this process started: all are sent SIGTERM first, so they stop side by side."""
    servers = list(_STARTED)
    for server in servers:
        if server.running and server.proc is not None:
            server.proc.terminate()
    for server in servers:
        server.stop(timeout)


atexit.register(stop_all)  # a Python that exits takes its servers with it
