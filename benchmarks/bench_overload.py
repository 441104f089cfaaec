"""Overload and fault figures: unexpected exceptions, and a full queue (a benchmark: prints numbers, asserts nothing).

(a) From a fresh start, N requests that raise an unexpected exception inside a route (the
    test-only fault injection of ``tests/e2e/faulty_app.py``), the server's output a pipe
    nobody reads; then how long ``/health`` takes, and whether a prediction is correct.
(b) Queue bound 4, C concurrent ~7 MB JSON requests: p50/p90 latency of the 503s, how many
    got 200, and the server's peak resident memory (VmHWM from /proc).

Run from the repository root:

    PYTHONPATH=$PWD YOLO_SERVICE_OFFLINE=1 .venv/bin/python benchmarks/bench_overload.py --failures 1000
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.faulty_app import FAILURE_HEADER  # noqa: E402
from yolo_service import encode_base64, sample_scene  # noqa: E402
from yolo_service.schema import box_iou  # noqa: E402
from yolo_service.workshop.processes import LocalServer, free_port  # noqa: E402


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def correct(url: str) -> bool:
    """A prediction on a generated scene finds every shape at IoU >= 0.7."""
    image, shapes = sample_scene()
    body = httpx.post(url + "/predict", json={"image": encode_base64(image), "model": "shapes"}, timeout=60).json()
    found = body.get("detections", [])
    return all(
        max((box_iou(s.box, (d["x_min"], d["y_min"], d["x_max"], d["y_max"])) for d in found), default=0) >= 0.7
        for s in shapes
    )


def unexpected_exceptions(count: int) -> None:
    """(a): ``count`` injected failures from a fresh start, then /health and a prediction."""
    port = free_port()
    env = {**os.environ, "PORT": str(port)}
    command = [sys.executable, "-m", "tests.e2e.faulty_app", "--host", "127.0.0.1"]
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise SystemExit("the server died")
            time.sleep(0.2)
        statuses: dict[int, int] = {}
        started = time.perf_counter()
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(count):
                status = http.post("/predict", json={"image": "x"}, headers={FAILURE_HEADER: "1"}).status_code
                statuses[status] = statuses.get(status, 0) + 1
        spent = time.perf_counter() - started
        t0 = time.perf_counter()
        health = httpx.get(url + "/health", timeout=10).status_code
        health_s = time.perf_counter() - t0
        print(f"(a) {count} unexpected exceptions in {spent:.1f} s: statuses {statuses}")
        print(f"    then GET /health -> {health} in {health_s * 1000:.1f} ms; prediction correct: {correct(url)}")
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def big_body() -> bytes:
    """A ~7 MB JSON body: a ~5.2 MB incompressible PNG as base64."""
    from PIL import Image

    noise = Image.frombytes("RGB", (1320, 1320), os.urandom(1320 * 1320 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG", compress_level=1)
    image = base64.b64encode(buffer.getvalue()).decode()
    return ('{"model": "shapes", "image": "' + image + '"}').encode()


def post_expecting_continue(url: str, body: bytes) -> int:
    """POST with ``Expect: 100-continue`` (what curl does for large bodies): the body goes only after a 100."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        head = (
            f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.sendall(head.encode())
        answer = sock.recv(65536)
        if answer.startswith(b"HTTP/1.1 100"):
            sock.sendall(body)
            answer = answer.partition(b"\r\n\r\n")[2] or sock.recv(65536)
        return int(answer.split()[1])


def at_once(target: Callable[[], None], count: int) -> None:
    """Run ``target`` in ``count`` threads and wait for all of them."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def status_counts(results: list[tuple[int, float]]) -> dict[int, int]:
    """How many (status, seconds) results had each status."""
    return dict(sorted(Counter(status for status, _ in results).items()))


def overload(concurrent: int, queue: int = 4) -> None:
    """(b): ``concurrent`` 7 MB requests at once against max_queue=``queue``."""
    body = big_body()
    env = {"YOLO_SERVICE_MAX_QUEUE": str(queue)}
    with LocalServer(env=env, timeout=300) as server:
        rss_before = peak_rss_mb(server.proc.pid)
        results: list[tuple[int, float]] = []
        barrier = threading.Barrier(concurrent)

        def post() -> None:
            with httpx.Client(timeout=120) as http:
                barrier.wait()
                started = time.perf_counter()
                try:
                    status = http.post(
                        server.url + "/predict", content=body, headers={"content-type": "application/json"}
                    ).status_code
                except httpx.HTTPError as exc:
                    status = -1
                    print("   ", type(exc).__name__, exc)
                results.append((status, time.perf_counter() - started))

        at_once(post, concurrent)
        refused = sorted(seconds for status, seconds in results if status == 503)
        counts = status_counts(results)
        print(f"(b) max_queue={queue}, {concurrent} concurrent {len(body) / 1e6:.1f} MB JSON requests: {counts}")
        if refused:
            p50 = statistics.median(refused) * 1000
            p90 = refused[int(0.9 * (len(refused) - 1))] * 1000
            print(
                f"    503 latency at the client (incl. uploading its 7 MB): p50 {p50:.0f} ms, p90 {p90:.0f} ms, "
                f"max {refused[-1] * 1000:.0f} ms"
            )
        # A client that says "Expect: 100-continue" never uploads a refused body: time to its answer.
        expecting: list[tuple[int, float]] = []
        barrier = threading.Barrier(concurrent)

        def post_expect() -> None:
            barrier.wait()
            started = time.perf_counter()
            status = post_expecting_continue(server.url, body)
            expecting.append((status, time.perf_counter() - started))

        at_once(post_expect, concurrent)
        refused_fast = sorted(seconds for status, seconds in expecting if status == 503)
        counts = status_counts(expecting)
        print(f"    the same with Expect: 100-continue: {counts}")
        if refused_fast:
            print(
                f"    503 latency at the client: p50 {statistics.median(refused_fast) * 1000:.0f} ms, "
                f"max {refused_fast[-1] * 1000:.0f} ms"
            )
        # The server's own view (its request log): from the request's headers to the 503 sent, body unread.
        served = sorted(
            float(line.split()[-2])
            for line in server.log().splitlines()
            if "yolo_service.api: POST /predict 503" in line
        )
        if served:
            print(
                f"    503 latency in the server (headers in -> answer out): p50 {statistics.median(served):.1f} ms, "
                f"max {served[-1]:.1f} ms"
            )
        print(f"    server peak RSS (VmHWM): {peak_rss_mb(server.proc.pid):.0f} MB (after start: {rss_before:.0f} MB)")


def main() -> None:
    """Run (a) and (b)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--failures", type=int, default=1000)
    parser.add_argument("--concurrent", type=int, default=40)
    args = parser.parse_args()
    unexpected_exceptions(args.failures)
    overload(args.concurrent)


if __name__ == "__main__":
    main()
