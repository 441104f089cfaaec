"""Speed figures of the API (a benchmark, not a test): prints numbers, asserts nothing.

- p50/p95 of in-process ``predict`` vs ``POST /predict`` and ``POST /predict/file`` on the same 640x480 JPEG;
- requests/s with 1 and 4 concurrent clients against a real uvicorn process on 127.0.0.1;
- the server's resident memory.

Run:  .venv/bin/python benchmarks/bench_predict.py --requests 60   (the full benchmark: `make bench`)
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("YOLO_SERVICE_OFFLINE", "1")

import httpx  # noqa: E402

import yolo_service as ys  # noqa: E402
from yolo_service.workshop.processes import LocalServer  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="requests per measurement")
    parser.add_argument("--model", default="shapes")
    args = parser.parse_args()

    image, _ = ys.sample_scene()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    jpeg = buffer.getvalue()
    payload = {"model": args.model, "image": ys.encode_base64(jpeg)}
    print(
        f"image: 640x480 JPEG, {len(jpeg):,} bytes; model {args.model}; {args.requests} requests each; "
        f"{os.cpu_count()} CPUs"
    )

    registry = ys.ModelRegistry()
    registry.predict(jpeg, args.model)  # load + warm up
    rows = [("in-process predict (decode + model)", timed(lambda: registry.predict(jpeg, args.model), args.requests))]
    model_times = [registry.predict(jpeg, args.model).time for _ in range(args.requests)]
    rows.append(("  of which the model (`time` field)", model_times))

    with (
        LocalServer(["yolo-service", "serve", "--host", "127.0.0.1"]) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        for _ in range(3):
            http.post("/predict", json=payload)
        rows.append(("POST /predict (JSON base64)", timed(lambda: http.post("/predict", json=payload), args.requests)))
        rows.append(
            (
                "POST /predict/file (multipart)",
                timed(
                    lambda: http.post("/predict/file", files={"image": ("a.jpg", jpeg)}, data={"model": args.model}),
                    args.requests,
                ),
            )
        )
        print(f"\n{'latency':<40}{'p50 ms':>9}{'p95 ms':>9}")
        for name, values in rows:
            print(f"{name:<40}{percentile(values, 50) * 1000:>9.1f}{percentile(values, 95) * 1000:>9.1f}")

        print(f"\n{'server memory after the latency runs':<40}{rss_mib(server.proc.pid):>9.0f} MiB RSS")
        print(f"\n{'throughput':<40}{'req/s':>9}{'p50 ms':>9}")
        for clients in (1, 4):

            def one(_: int) -> float:
                began = time.perf_counter()
                assert http.post("/predict", json=payload).status_code == 200
                return time.perf_counter() - began

            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                latencies = list(pool.map(one, range(args.requests)))
            elapsed = time.perf_counter() - started
            print(
                f"{f'{clients} concurrent client(s)':<40}{args.requests / elapsed:>9.1f}"
                f"{percentile(latencies, 50) * 1000:>9.1f}"
            )


if __name__ == "__main__":
    main()
