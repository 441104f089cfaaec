"""Helpers for tests: free ports, real server processes, box matching."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from yolo_service import Detection, Shape, box_iou
from yolo_service.workshop.processes import LocalServer, executable, free_port

__all__ = [
    "ARTIFACTS",
    "REPORT",
    "ROOT",
    "JupyterLab",
    "Server",
    "api_server",
    "assert_finds",
    "best_match",
    "executable",
    "free_port",
    "logged_line",
]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
#: Lines a test wants people to read (which engine built the images, their sizes…): printed after the run.
REPORT: list[str] = []


class Server(LocalServer):
    """A :class:`~yolo_service.workshop.processes.LocalServer` whose log is kept under ``test-artifacts/``."""

    def __init__(
        self,
        argv: list[str],
        port: int,
        env: dict[str, str] | None = None,
        ready_path: str = "/health",
        timeout: float = 90.0,
        wait: bool = True,
    ) -> None:
        super().__init__(argv, port, env, ready_path, timeout, ARTIFACTS / f"server-{port}.log", wait, cwd=ROOT)


def api_server(env: dict[str, str] | None = None) -> Server:
    """``yolo-service serve`` on a free loopback port with ``env``; ready when ``/ready`` answers. A context manager."""
    return Server(["yolo-service", "serve", "--host", "127.0.0.1"], free_port(), env=env, ready_path="/ready")


def logged_line(server: LocalServer, *parts: str, timeout: float = 10.0) -> str | None:
    """The first line of ``server``'s log holding every one of ``parts``, waiting up to ``timeout`` s; else None.

    A server writes its log from a thread, after the response: the line may come a moment after the answer.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in server.log().splitlines() if all(part in line for part in parts)]
        if found or time.monotonic() > deadline:
            return found[0] if found else None
        time.sleep(0.1)


class JupyterLab(Server):
    """``jupyter lab`` on a free loopback port with a fresh token; its settings and runtime files under ``home``.

    Args:
        options: the lab's options (``--ServerApp.root_dir=...``); ``--ip``/``--port`` among them are replaced.
        home: a temporary folder for what JupyterLab writes (workspaces, settings, connection files).
        cwd: where it runs (a relative ``root_dir`` is relative to it).
    """

    #: No request leaves the machine: no update check, no extension catalogue from PyPI.
    OFFLINE = [
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]

    def __init__(self, options: list[str], home: Path, cwd: Path = ROOT) -> None:
        port, self.token = free_port(), secrets.token_hex(16)
        options = [o for o in options if not o.startswith(("--ip=", "--port=", "--no-browser"))]
        argv = ["jupyter", "lab", *options, "--ip=127.0.0.1", f"--port={port}", "--no-browser", *self.OFFLINE]
        if os.geteuid() == 0:  # a test container's root (the Codespace's user is not root)
            argv.append("--allow-root")
        env = {
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_DATA_DIR": str(home / "data"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
            "JUPYTER_TOKEN": self.token,
        }
        super().__init__([*argv, f"--IdentityProvider.token={self.token}"], port, env, ready_path="/api", timeout=120)
        self.cwd = cwd

    @property
    def headers(self) -> dict[str, str]:
        """What a call to its REST API sends to be let in."""
        return {"Authorization": f"token {self.token}"}


def best_match(shape: Shape, detections: list[Detection]) -> float:
    """The best IoU of ``shape`` with a detection of the same class (0 if none)."""
    return max((box_iou(shape.box, d.box) for d in detections if d.class_name == shape.class_name), default=0.0)


def assert_finds(shapes: list[Shape], detections: list[Detection], min_iou: float = 0.7) -> None:
    """Each shape is detected with its class at IoU >= ``min_iou``, and nothing else is."""
    for shape in shapes:
        iou = best_match(shape, detections)
        assert iou >= min_iou, f"{shape.class_name} at {shape.box}: best IoU {iou:.2f} in {detections}"
    assert sorted(d.class_name for d in detections) == sorted(s.class_name for s in shapes), detections
