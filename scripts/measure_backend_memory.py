"""The backend's peak resident memory under load, to size Cloud Run's ``--memory`` (yolo_service.workshop.deploy).

Starts ``yolo-service serve`` (the backend image's CMD) on loopback with a yolo26n-sized model
(the stand-in of tests/deploy/conftest.py: Ultralytics' architecture, random weights; exported to
ONNX for the exported-model engines), then sends ``--concurrency`` concurrent requests (as many as
Cloud Run may send one instance: ``--concurrency``), first 640x480 scenes, then 4000x3000 photos,
and samples the server's RSS every 20 ms. Prints the peak per engine and phase.

Usage::

    PYTHONPATH=. python scripts/measure_backend_memory.py [--engines ultralytics openvino] [--rounds 4]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.deploy.conftest import build_standin, export_like_the_builder  # noqa: E402
from yolo_service import encode_base64, sample_scene  # noqa: E402
from yolo_service.workshop.deploy import backend_concurrency  # noqa: E402
from yolo_service.workshop.processes import LocalServer, free_port  # noqa: E402


def jpeg(width: int, height: int) -> str:
    """A generated scene resized to ``width`` x ``height``, as base64 JPEG."""
    image, _ = sample_scene()
    buffer = io.BytesIO()
    image.resize((width, height)).save(buffer, "JPEG", quality=90)
    return encode_base64(buffer.getvalue())


class PeakRSS:
    """Samples a process tree's resident memory in a thread; ``peak`` in bytes."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = sum(p.memory_info().rss for p in [self.process, *self.process.children(recursive=True)])
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            time.sleep(0.02)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(engine: str, weights: Path, concurrency: int, rounds: int) -> dict[str, float]:
    """Peak RSS (MB) of one engine's server: idle, under small images, under big images."""
    port = free_port()
    env = {
        "PORT": str(port),
        "YOLO_SERVICE_ENGINE": engine,
        "YOLO_SERVICE_WEIGHTS_DIR": str(weights),
        "YOLO_SERVICE_OFFLINE": "1",
        "YOLO_OFFLINE": "1",
    }
    figures = {}
    with LocalServer(["yolo-service", "serve", "--host", "127.0.0.1"], port, env=env, ready_path="/ready") as server:
        figures["idle_MB"] = psutil.Process(server.proc.pid).memory_info().rss / 1e6
        with httpx.Client(timeout=120) as client, ThreadPoolExecutor(concurrency) as pool:
            for phase, (w, h) in (("640x480", (640, 480)), ("4000x3000", (4000, 3000))):
                body = {"image": jpeg(w, h)}
                statuses: list[int] = []
                with PeakRSS(server.proc.pid) as peak:
                    for _ in range(rounds):
                        responses = pool.map(
                            lambda b: client.post(server.url + "/predict", json=b), [body] * concurrency
                        )
                        statuses += [r.status_code for r in responses]
                figures[f"peak_{phase}_MB"] = peak.peak / 1e6
                figures[f"ok_{phase}"] = statuses.count(200) / len(statuses)
    return figures


def main(argv: list[str] | None = None) -> int:
    """Build the stand-in, measure each engine, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["ultralytics", "openvino"])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    concurrency = backend_concurrency()
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights"
        build_standin(weights / "yolo26n.pt")
        export_like_the_builder(weights)
        print(f"{concurrency} concurrent requests x {args.rounds} rounds per phase, yolo26n-sized stand-in")
        for engine in args.engines:
            figures = measure(engine, weights, concurrency, args.rounds)
            print(engine, "  ".join(f"{k}={v:.0f}" if k.endswith("MB") else f"{k}={v:.0%}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
