"""Helpers for tests: free ports, real server processes, box matching."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from yolo_service import Detection, Shape, box_iou

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def executable(name: str) -> str:
    """The path of a console script installed next to this Python (the venv's bin)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


class Server:
    """A real server process on 127.0.0.1, started on enter and stopped (SIGTERM) on exit."""

    def __init__(self, argv: list[str], port: int, env: dict[str, str] | None = None,
                 ready_path: str = "/health", timeout: float = 90.0, wait: bool = True) -> None:
        self.argv = [executable(argv[0]), *argv[1:]]
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, **(env or {})}
        self.ready_path, self.timeout, self.wait = ready_path, timeout, wait
        self.log_path = ARTIFACTS / f"server-{port}.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        if self.wait:
            self.wait_for(self.ready_path)
        return self

    def wait_for(self, path: str, status: int = 200) -> None:
        """Poll ``path`` until it answers ``status``; fail with the server's log if it dies or times out."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == status:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.url}{path} did not answer {status} in {self.timeout} s:\n{self.log()}")

    def log(self) -> str:
        """What the process has printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait, kill if needed; the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __exit__(self, *exc: object) -> None:
        self.stop()


def best_match(shape: Shape, detections: list[Detection]) -> float:
    """The best IoU of ``shape`` with a detection of the same class (0 if none)."""
    return max((box_iou(shape.box, d.box) for d in detections if d.class_name == shape.class_name), default=0.0)


def assert_finds(shapes: list[Shape], detections: list[Detection], min_iou: float = 0.7) -> None:
    """Each shape is detected with its class at IoU >= ``min_iou``, and nothing else is."""
    for shape in shapes:
        iou = best_match(shape, detections)
        assert iou >= min_iou, f"{shape.class_name} at {shape.box}: best IoU {iou:.2f} in {detections}"
    assert sorted(d.class_name for d in detections) == sorted(s.class_name for s in shapes), detections
