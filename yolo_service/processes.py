"""Run the API or the UI as a background process: for notebooks, tests and benchmarks.

``LocalServer`` starts a command on a free loopback port, waits until a path answers
200, and stops the process (SIGTERM, then kill) on exit, so a notebook cell or a test
never leaves a server behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

__all__ = ["LocalServer", "executable", "free_port"]


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    ) -> None:
        self.port = port or free_port()
        argv = argv or ["yolo-service", "serve", "--host", "127.0.0.1"]
        self.argv = [executable(argv[0]), *argv[1:]]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PORT": str(self.port), **(env or {})}
        self.ready_path, self.timeout, self.wait, self.cwd = ready_path, timeout, wait, cwd
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="yolo-service-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    def start(self) -> LocalServer:
        """Start the process and, unless ``wait=False``, wait until it is ready."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.cwd)
        if self.wait:
            self.wait_for(self.ready_path)
        return self

    def wait_for(self, path: str, status: int = 200) -> None:
        """Poll ``path`` until it answers ``status``; raise with the process's output if it dies or times out."""
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
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then kill; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "not started" if self.proc is None else ("running" if self.proc.poll() is None else "stopped")
        return f"LocalServer({self.url}, {state})"
