"""What one hostile request can cost the server, and what slow clients can hold (a benchmark: prints, asserts nothing).

For each engine (the exported model on OpenVINO, as the slim image deploys it with 1 GiB; PyTorch
through Ultralytics, deployed with 2 GiB), a real ``yolo-service serve`` with the default limits:

(a) The format battery (``tests/e2e/battery.py``): the images the last round found (1 x 40,000,000
    PNG, RGBA / 16-bit / float 6300² TIFFs, 3,000 progressive scans, PNG text bombs …) and the
    largest image of each format the decode budget accepts. For each, the server's peak memory
    above its resident memory during that one request (VmHWM, reset through /proc/PID/clear_refs)
    and its CPU time; then the worst, against the deployment's memory: the idle server plus every
    worker slot holding the worst image at once, measured with that many sent together.
(b) Silent bodies: ``max_queue`` + 8 requests that send their headers and a Content-Length, then
    nothing. How long each holds a place in the queue (its depth, read from /metrics), how long
    the connection stays open (until its 408), and whether a normal prediction is served meanwhile.
(c) ``/health`` latency (p50, p99 of 200 sequential requests) alone, then while 4 connections each
    stream a 64 MB header value.

Run from the repository root (the machine may be shared: the figures say so when it is):

    PYTHONPATH=$PWD YOLO_SERVICE_OFFLINE=1 .venv/bin/python benchmarks/bench_limits.py
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e import battery  # noqa: E402
from yolo_service import Settings, encode_base64, sample_scene  # noqa: E402
from yolo_service.workshop.bench import cpu_seconds, peak_rss_mib, rss_mib  # noqa: E402
from yolo_service.workshop.processes import LocalServer  # noqa: E402

MiB = 1024 * 1024
DEPLOYED_MB = {"openvino": 1024, "ultralytics": 2048}  # --memory of each image on Cloud Run (README)


def measured(pid: int, action: Callable[[], object]) -> tuple[float, float, object]:
    """(peak MB above the resident memory before, CPU seconds, result) of ``action``."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")
    before, cpu = rss_mib(pid), cpu_seconds(pid)
    result = action()
    return peak_rss_mib(pid) - before, cpu_seconds(pid) - cpu, result


def load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def post_file(url: str, data: bytes) -> int:
    files = {"image": ("image", data)}
    return httpx.post(url + "/predict/file", files=files, data={"model": "shapes"}, timeout=120).status_code


def formats(server: LocalServer, engine: str, images: dict[str, bytes]) -> None:
    """(a): each image alone, then the worst one in every worker slot at once."""
    pid = server.pid
    rows = []
    for name, data in images.items():
        peak, cpu, status = measured(pid, lambda data=data: post_file(server.url, data))
        rows.append((peak, cpu, status, name, len(data)))
        print(f"    {name:34s} {len(data):>9,} bytes -> {status}  +{peak:6.0f} MB  {cpu:5.2f} s CPU")
    worst_peak, _, _, worst_name, _ = max(rows)
    worst_cpu = max(rows, key=lambda row: row[1])
    slots = Settings(engine=engine).worker_slots
    idle = rss_mib(pid)
    with ThreadPoolExecutor(slots) as pool:
        together, _, statuses = measured(
            pid, lambda: list(pool.map(lambda _: post_file(server.url, images[worst_name]), range(slots)))
        )
    print(
        f"  worst single request: +{worst_peak:.0f} MB ({worst_name}); most CPU: {worst_cpu[1]:.2f} s ({worst_cpu[3]})"
    )
    print(
        f"  {slots} worker slots each holding it ({statuses}): peak {idle + together:.0f} MB resident "
        f"(idle {idle:.0f} MB + {together:.0f} MB) of the {DEPLOYED_MB[engine]} MiB deployed"
    )


def silent_bodies(server: LocalServer) -> None:
    """(b): silent bodies hold a connection until their 408, never a place in the queue."""
    settings = Settings()
    count = settings.max_queue + 8
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    host, port = server.url.removeprefix("http://").split(":")
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=60)
        sock.sendall(head)
        sockets.append(sock)
    started = time.monotonic()
    depth = max(_queue_depth(server.url) for _ in range(10))
    image = encode_base64(sample_scene()[0])
    t0 = time.monotonic()
    normal = httpx.post(server.url + "/predict", json={"image": image, "model": "shapes"}, timeout=60).status_code
    normal_s = time.monotonic() - t0
    held = []
    for sock in sockets:
        answer = sock.recv(64)
        held.append(time.monotonic() - started)
        sock.close()
    print(
        f"  {count} silent bodies: queue depth while they wait {depth:.0f} (a place held for 0 s); "
        f"each connection closed with {answer[:12].decode()!r} after {min(held):.1f}-{max(held):.1f} s "
        f"(YOLO_SERVICE_BODY_TIMEOUT={settings.body_timeout:g}); a normal prediction meanwhile: {normal} "
        f"in {normal_s:.2f} s"
    )


def _queue_depth(url: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("yolo_service_queue_depth "):
            return float(line.split()[1])
    return 0.0


def health_latency(url: str, requests: int = 200) -> tuple[float, float]:
    """p50 and p99 of ``requests`` sequential GET /health on a fresh connection each (ms)."""
    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        httpx.get(url + "/health", timeout=30)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


def huge_headers(server: LocalServer) -> None:
    """(c): /health alone, then while 4 connections stream 64 MB header values."""
    p50, p99 = health_latency(server.url)
    print(f"  /health alone: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    host, port = server.url.removeprefix("http://").split(":")
    stop = threading.Event()
    accepted: list[int] = []

    def stream() -> None:
        while not stop.is_set():  # reconnect each time the server closes: the attack never stops
            sent = 0
            try:
                with socket.create_connection((host, int(port)), timeout=30) as sock:
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
                    while sent < 64 * MiB and not stop.is_set():
                        sock.sendall(b"a" * 65536)
                        sent += 65536
            except OSError:
                pass
            accepted.append(sent)

    threads = [threading.Thread(target=stream) for _ in range(4)]
    peak_before = rss_mib(server.pid)
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    p50, p99 = health_latency(server.url)
    stop.set()
    for thread in threads:
        thread.join()
    print(
        f"  /health under 4 connections streaming 64 MB headers: p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
        f"{len(accepted)} attempts, each cut after at most {max(accepted) / MiB:.1f} MB; "
        f"resident {peak_before:.0f} -> {rss_mib(server.pid):.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", nargs="+", default=["openvino", "ultralytics"])
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {load_average()} (1/5/15 min): others may be using this machine")
    print("building the format battery ...", flush=True)
    images = {**battery.declared(), **{name: build() for name, build in battery.largest().items()}}
    for engine in args.engines:
        env = {"YOLO_SERVICE_ENGINE": engine, "YOLO_SERVICE_DEFAULT_MODEL": "shapes", "YOLO_SERVICE_OFFLINE": "1"}
        with LocalServer(env=env, timeout=300) as server:
            post_file(server.url, battery.png_header(8, 8))  # warm up the request path
            print(f"\n{engine}: idle server {rss_mib(server.pid):.0f} MB resident")
            print(" (a) the format battery, one request at a time:")
            formats(server, engine, images)
            if engine == args.engines[0]:  # the server's own limits, not the engine's
                print(" (b) silent bodies:")
                silent_bodies(server)
                print(" (c) huge headers:")
                huge_headers(server)
    print(f"\nload average at the end {load_average()}")


if __name__ == "__main__":
    main()
