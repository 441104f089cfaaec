"""Helpers for tests: free ports, real server processes, box matching."""

from __future__ import annotations

from pathlib import Path

from yolo_service import Detection, Shape, box_iou
from yolo_service.workshop.processes import LocalServer, executable, free_port

__all__ = [
    "ARTIFACTS",
    "REPORT",
    "ROOT",
    "Server",
    "api_server",
    "assert_finds",
    "best_match",
    "executable",
    "free_port",
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


def best_match(shape: Shape, detections: list[Detection]) -> float:
    """The best IoU of ``shape`` with a detection of the same class (0 if none)."""
    return max((box_iou(shape.box, d.box) for d in detections if d.class_name == shape.class_name), default=0.0)


def assert_finds(shapes: list[Shape], detections: list[Detection], min_iou: float = 0.7) -> None:
    """Each shape is detected with its class at IoU >= ``min_iou``, and nothing else is."""
    for shape in shapes:
        iou = best_match(shape, detections)
        assert iou >= min_iou, f"{shape.class_name} at {shape.box}: best IoU {iou:.2f} in {detections}"
    assert sorted(d.class_name for d in detections) == sorted(s.class_name for s in shapes), detections
