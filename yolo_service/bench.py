"""Stand-in for perf's bench.py (concurrency sweep against a running backend); replaced by perf's version on merge."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from .images import encode_base64

__all__ = ["measure_concurrency", "plot_concurrency"]


def measure_concurrency(
    url: str, image: Any, levels: tuple[int, ...] = (1, 2, 4, 8), requests_per_level: int = 16
) -> list[dict]:
    """POST /predict ``requests_per_level`` times at each concurrency; latency percentiles and throughput."""
    body = {"image": encode_base64(image)}
    results = []
    with httpx.Client(timeout=60) as client:
        client.post(f"{url}/predict", json=body).raise_for_status()  # warm-up

        def one(_: int) -> float:
            start = time.perf_counter()
            client.post(f"{url}/predict", json=body).raise_for_status()
            return time.perf_counter() - start

        for level in levels:
            start = time.perf_counter()
            with ThreadPoolExecutor(level) as pool:
                latencies = sorted(pool.map(one, range(requests_per_level)))
            wall = time.perf_counter() - start
            results.append(
                {
                    "concurrency": level,
                    "requests": requests_per_level,
                    "p50_ms": statistics.median(latencies) * 1000,
                    "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000,
                    "throughput_rps": requests_per_level / wall,
                }
            )
    return results


def plot_concurrency(results: list[dict], ax: Any = None) -> Any:
    """Latency (p50, p99) and throughput against concurrency, on two y axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(7, 4))[1]
    levels = [r["concurrency"] for r in results]
    ax.plot(levels, [r["p50_ms"] for r in results], "o-", label="p50 latency")
    ax.plot(levels, [r["p99_ms"] for r in results], "s--", label="p99 latency")
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("latency (ms)")
    ax.legend(loc="upper left")
    right = ax.twinx()
    right.plot(levels, [r["throughput_rps"] for r in results], "^-", color="tab:green", label="throughput")
    right.set_ylabel("throughput (requests/s)")
    right.legend(loc="lower right")
    return ax
