"""Speed and memory figures of the engines and the server: ``yolo-service bench [--out DIR] [--quick]``.

A benchmark, not a test: it prints figures and writes ``bench.json`` and a plot ``bench.png``;
it asserts nothing. Everything runs on this machine over loopback (127.0.0.1): in-process
latency per engine, input size and thread count; ``/predict`` and ``/predict/file`` over a real
uvicorn process; throughput and p50/p99 latency at 1, 2, 4 and 8 concurrent clients; cold start
(process start to ``/ready``) and peak resident memory (``VmHWM``) of a torch-free server; and 32
concurrent 6000x6000 JPEGs. Notebook 07 calls :func:`measure_concurrency` and :func:`plot_concurrency`.

Fair on a shared machine: figures that are compared (engines against each other, ``/predict``
against the same engine in-process) are measured in turns, and the clients use a lean
keep-alive connection, since they share the CPUs with the server they measure.

Needs the ``bench`` extra (matplotlib, requests) and, to export the 640 px model, the ``serve`` extra.
"""

from __future__ import annotations

import base64
import functools
import http.client
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import available_cpus
from .processes import LocalServer

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "big_image",
    "jpeg_bytes",
    "measure_concurrency",
    "measure_requests",
    "cpu_seconds",
    "peak_rss_mib",
    "percentiles",
    "plot_concurrency",
    "run_bench",
    "torch_free_server",
]

ENGINES = ("ultralytics", "openvino", "onnxruntime")
SERVED = ("openvino", "onnxruntime", "ultralytics")  # the servers measured: both torch-free engines, then PyTorch
#: Makes torch, torchvision, Ultralytics and OpenCV unimportable in the process that runs it first.
BLOCK_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision", "ultralytics", "cv2"}:
            raise ImportError(f"{name} is blocked: this server must run without torch")
sys.meta_path.insert(0, _Block())
"""


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50, p95 and p99 of durations, in milliseconds."""
    if len(seconds) == 1:
        value = round(seconds[0] * 1000, 2)
        return {"p50_ms": value, "p95_ms": value, "p99_ms": value}
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {
        "p50_ms": round(statistics.median(seconds) * 1000, 2),
        "p95_ms": round(cuts[94] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
    }


def jpeg_bytes(image: Image.Image | bytes | str | Path, quality: int = 90) -> bytes:
    """A JPEG file's bytes (bytes and paths are read as they are)."""
    if isinstance(image, bytes):
        return image
    if isinstance(image, str | Path):
        return Path(image).read_bytes()
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _post(
    session: Any, url: str, route: str, data: bytes, model: str | None, timeout: float
) -> tuple[int, float, bool]:
    """One predict request with ``requests``: status, seconds, and whether a 503 said when to retry.

    For bursts that may be refused: unlike http.client, ``requests`` still reads a 503 the server
    sent (and closed the connection after) before the upload was finished.
    """
    started = time.perf_counter()
    if route == "/predict":
        body: dict[str, Any] = {"image": base64.b64encode(data).decode("ascii")}
        if model:
            body["model"] = model
        response = session.post(url + route, json=body, timeout=timeout)
    else:
        form = {"model": model} if model else None
        response = session.post(
            url + route, files={"image": ("image.jpg", data, "image/jpeg")}, data=form, timeout=timeout
        )
    return response.status_code, time.perf_counter() - started, "Retry-After" in response.headers


def _body(route: str, data: bytes, model: str | None) -> tuple[bytes, dict[str, str]]:
    """A predict request's body and headers, built once: JSON with base64 for /predict, else a multipart form."""
    if route == "/predict":
        fields = {"image": base64.b64encode(data).decode("ascii"), **({"model": model} if model else {})}
        return json.dumps(fields).encode(), {"Content-Type": "application/json"}
    boundary = "yolo-service-bench-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'] if model else []
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="image.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    body = "".join(parts).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


class _Connection:
    """One keep-alive HTTP connection (http.client) that sends the same predict request again and again.

    The clients share this machine's CPUs with the server they measure: ``requests`` spends about
    2.5 ms of CPU per call, this 0.7 ms, so the figures are the server's, not the load generator's.
    """

    def __init__(self, url: str, route: str, data: bytes, model: str | None, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        self.address, self.timeout = (parts.hostname or "127.0.0.1", parts.port or 80), timeout
        self.route, (self.body, self.headers) = route, _body(route, data, model)
        self.connection: http.client.HTTPConnection | None = None

    def post(self) -> tuple[int, float, bool]:
        """Send the request: status (0: the connection failed twice), seconds, and whether a 503 said when to retry."""
        started = time.perf_counter()
        for attempt in (1, 2):  # the server may have closed an idle keep-alive connection: reconnect once
            if self.connection is None:
                self.connection = http.client.HTTPConnection(*self.address, timeout=self.timeout)
            try:
                self.connection.request("POST", self.route, self.body, self.headers)
                response = self.connection.getresponse()
                response.read()
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    return 0, time.perf_counter() - started, False
                continue
            if response.will_close:
                self.close()
            return response.status, time.perf_counter() - started, response.getheader("Retry-After") is not None
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def measure_requests(
    url: str, image: Image.Image | bytes, n: int = 20, route: str = "/predict/file", model: str | None = None
) -> dict[str, Any]:
    """p50/p95/p99 of ``n`` sequential predict requests (after one warm-up), one client."""
    connection = _Connection(url, route, jpeg_bytes(image), model, 60)
    connection.post()
    results = [connection.post() for _ in range(n)]
    connection.close()
    return {
        "route": route,
        "requests": n,
        "ok": sum(s == 200 for s, _, _ in results),
        **percentiles([t for _, t, _ in results]),
    }


def measure_concurrency(
    url: str,
    image: Image.Image | bytes | str | Path,
    levels: tuple[int, ...] = (1, 2, 4, 8),
    requests_per_level: int = 40,
    *,
    model: str | None = None,
    route: str = "/predict/file",
    timeout: float = 60.0,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Throughput and latency of a server with 1, 2, 4, 8 … clients sending requests at once.

    Each level sends ``requests_per_level`` requests from ``concurrency`` threads (one
    keep-alive connection each), after one warm-up request per client.

    Returns:
        One dict per level: ``concurrency, requests, p50_ms, p99_ms, throughput_rps`` (and ``ok``,
        the requests answered 200).
    """
    data = jpeg_bytes(image)
    local = threading.local()

    def call() -> tuple[int, float, bool]:
        if not hasattr(local, "connection"):
            local.connection = _Connection(url, route, data, model, timeout)
        return local.connection.post()  # type: ignore[no-any-return]

    results = []
    for concurrency in levels:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(lambda _: call(), range(concurrency)))  # warm-up: connections, caches
            started = time.perf_counter()
            done = list(pool.map(lambda _: call(), range(requests_per_level)))
            wall = time.perf_counter() - started
        stats = percentiles([t for _, t, _ in done])
        results.append(
            {
                "concurrency": concurrency,
                "requests": requests_per_level,
                "p50_ms": stats["p50_ms"],
                "p99_ms": stats["p99_ms"],
                "throughput_rps": round(requests_per_level / wall, 2),
                "ok": sum(status == 200 for status, _, _ in done),
            }
        )
        if progress:
            progress(1)
    return results


def plot_concurrency(results: list[dict[str, Any]], ax: Any = None, label: str | None = None) -> Any:
    """Plot throughput (bars) and p50/p99 latency (lines) against the number of concurrent clients."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    levels = [r["concurrency"] for r in results]
    positions = range(len(levels))
    ax.bar(positions, [r["throughput_rps"] for r in results], color="#9ecae1", label="throughput")
    ax.set_xticks(list(positions), [str(level) for level in levels])
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("requests / s")
    ax.set_title(label or "throughput and latency under concurrent load")
    latency = ax.twinx()
    latency.plot(positions, [r["p50_ms"] for r in results], "o-", color="#08519c", label="p50")
    latency.plot(positions, [r["p99_ms"] for r in results], "s--", color="#de2d26", label="p99")
    latency.set_ylabel("latency (ms)")
    latency.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + latency.get_legend_handles_labels()[0]
    ax.legend(handles, ["throughput", "p50", "p99"], loc="upper left")
    return ax


def _proc_status(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a process so far (``VmHWM``, Linux), in MiB."""
    return _proc_status(pid, "VmHWM")


def rss_mib(pid: int) -> float:
    """Resident memory of a process now (``VmRSS``, Linux), in MiB."""
    return _proc_status(pid, "VmRSS")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far: a start-up cost that does not depend on other load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def torch_free_server(env: dict[str, str], port: int | None = None) -> LocalServer:
    """A ``yolo-service serve`` process in which torch and Ultralytics cannot be imported (not started)."""
    code = BLOCK_TORCH + "from yolo_service.cli import main\nsys.exit(main(['serve', '--host', '127.0.0.1']))\n"
    return LocalServer([sys.executable, "-c", code], port=port, env=env, wait=False)


def big_image(size: int = 6000, target_bytes: int = 600_000) -> bytes:
    """A ``size`` x ``size`` JPEG of about ``target_bytes``: shapes on a textured background."""
    from PIL import Image, ImageFilter

    from ..shapes import Shape, draw_scene

    texture = Image.effect_noise((size // 60, size // 60), 60).filter(ImageFilter.GaussianBlur(2)).convert("RGB")
    step = size // 6
    shapes = [Shape(("circle", "square", "triangle")[i % 3], x, y, x + step, y + step, (200, 30, 30))
              for i, (x, y) in enumerate([(step, step), (3 * step, 2 * step), (2 * step, 4 * step)])]  # fmt: skip
    image = draw_scene(shapes, (size, size), background=texture)
    best = b""
    for quality in (90, 85, 80, 75, 70, 60, 50, 40, 30, 20):
        data = jpeg_bytes(image, quality)
        best = data
        if len(data) <= target_bytes * 1.1:
            break
    return best


def _concurrent_burst(url: str, data: bytes, clients: int, model: str | None) -> dict[str, Any]:
    """``clients`` requests at once (one thread each): statuses, Retry-After on every 503, latencies."""
    import requests

    barrier = threading.Barrier(clients)

    def one(_: int) -> tuple[int, float, bool]:
        with requests.Session() as session:
            barrier.wait()
            return _post(session, url, "/predict/file", data, model, 120)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        done = list(pool.map(one, range(clients)))
    statuses: dict[str, int] = {}
    for status, _, _ in done:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "clients": clients,
        "statuses": statuses,
        "all_answered": all(s == 200 or (s == 503 and retry) for s, _, retry in done),
        "wall_s": round(time.perf_counter() - started, 2),
        **percentiles([t for _, t, _ in done]),
    }


def _interleaved(calls: Mapping[str, Callable[[], Any]], n: int) -> dict[str, dict[str, Any]]:
    """p50/p95 and CPU time of each call, measured in turns (a, b, c, a, b, c …) after three warm-ups each.

    Ratios of figures measured minutes apart on a shared machine swing by ±15 %; measured in
    turns, a slow spell slows every side alike and the ratio holds.
    """
    for call in calls.values():
        for _ in range(3):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    cpu = dict.fromkeys(calls, 0.0)
    for _ in range(n):
        for name, call in calls.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            call()
            times[name].append(time.perf_counter() - started)
            cpu[name] += time.process_time() - cpu_started
    # CPU time per call (this process's threads): unlike wall time, barely moved by other processes' load
    return {name: {**percentiles(times[name]), "cpu_ms_per_call": round(cpu[name] / n * 1000, 2)} for name in calls}


def _predict_vs_inprocess(
    url: str, jpeg: bytes, image: Image.Image, engine: str, settings: Any, n: int
) -> dict[str, Any]:
    """``/predict`` (JSON, base64) against the same engine in this process, one request at a time, in turns."""
    from ..models import ModelRegistry

    registry = ModelRegistry(settings.model_copy(update={"engine": engine}))
    connection = _Connection(url, "/predict", jpeg, "shapes640", 60)
    calls: dict[str, Callable[[], Any]] = {
        "inprocess": functools.partial(registry.predict_image, image, "shapes640"),
        "predict": connection.post,
    }
    stats = _interleaved(calls, n)
    connection.close()
    return {"inprocess_p50_ms": stats["inprocess"]["p50_ms"], "predict_p50_ms": stats["predict"]["p50_ms"]}


def run_bench(out: Path, quick: bool = False) -> dict[str, Any]:
    """Run every measurement, print a summary, write ``out/bench.json`` and ``out/bench.png``; return the figures."""
    from tqdm import tqdm

    from ..config import Settings
    from ..engines.export import export_onnx
    from ..models import BUNDLED_DIR, ModelCatalog, ModelRegistry
    from ..shapes import sample_scene

    os.environ.setdefault("YOLO_SERVICE_OFFLINE", "1")
    out.mkdir(parents=True, exist_ok=True)
    cpus = available_cpus()
    n = 10 if quick else 50
    per_level = 8 if quick else 40
    big_clients = 8 if quick else 32
    image, _ = sample_scene()
    jpeg = jpeg_bytes(image)
    figures: dict[str, Any] = {
        "machine": {
            "cpus": cpus,
            "python": platform.python_version(),
            "processor": platform.processor(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],  # others' load inflates wall times
        },
        "quick": quick,
        "image": {"size": list(image.size), "jpeg_bytes": len(jpeg)},
    }
    weights = Path(tempfile.mkdtemp(prefix="yolo-service-bench-"))
    steps = 1 + 2 * len(ENGINES) * len({1, cpus}) + len(SERVED) * (2 + 4 + 1)
    bar = tqdm(total=steps, desc="bench", unit="step", file=sys.stderr)

    def step(what: str) -> None:  # names the step that starts now
        bar.set_description(what)

    try:
        # The same weights at 640 px: a local copy of shapes is served at the default 640.
        shutil.copy(BUNDLED_DIR / "shapes.pt", weights / "shapes640.pt")
        base: dict[str, Any] = {"weights_dir": weights, "offline": True}
        step("export the 640 px model")
        export_onnx(ModelCatalog(Settings(**base)).spec("shapes640"), imgsz=640)
        bar.update(1)
        inprocess = []
        for imgsz, model in ((320, "shapes"), (640, "shapes640")):
            for threads in sorted({1, cpus}):
                step(f"in-process, the {len(ENGINES)} engines in turns, {imgsz}px {threads} threads")
                registries = {
                    e: ModelRegistry(Settings(**base, engine=e, threads=threads, replicas=1)) for e in ENGINES
                }
                calls = {e: functools.partial(r.predict_image, image, model) for e, r in registries.items()}
                for engine, stats in _interleaved(calls, n).items():
                    inprocess.append({"engine": engine, "imgsz": imgsz, "threads": threads, **stats})
                bar.update(len(ENGINES))
                del registries, calls
        inprocess.sort(key=lambda r: (r["imgsz"], ENGINES.index(r["engine"]), r["threads"]))
        figures["inprocess"] = inprocess

        env = {
            "YOLO_SERVICE_WEIGHTS_DIR": str(weights),
            "YOLO_SERVICE_DEFAULT_MODEL": "shapes640",
            "YOLO_SERVICE_OFFLINE": "1",
            "YOLO_SERVICE_LOG_LEVEL": "warning",
        }
        servers: dict[str, Any] = {}
        for engine in SERVED:
            server_env = {**env, "YOLO_SERVICE_ENGINE": engine}
            server = torch_free_server(server_env) if engine != "ultralytics" else LocalServer(
                ["yolo-service", "serve", "--host", "127.0.0.1"], env=server_env, wait=False
            )  # fmt: skip
            step(f"{engine} server: cold start")
            started = time.perf_counter()
            with server:
                server.wait_for("/ready")
                cold = time.perf_counter() - started
                cold_cpu = cpu_seconds(server.pid)
                idle = rss_mib(server.pid)
                bar.update(1)
                step(f"{engine} server: sequential requests")
                sequential = [
                    measure_requests(server.url, jpeg, n, route, "shapes640") for route in ("/predict", "/predict/file")
                ]
                paired = _predict_vs_inprocess(server.url, jpeg, image, engine, Settings(**base), n) if (
                    engine != "ultralytics"
                ) else None  # fmt: skip
                bar.update(1)
                step(f"{engine} server: 1-8 clients")
                levels = measure_concurrency(
                    server.url, jpeg, (1, 2, 4), per_level, model="shapes640", progress=lambda _: bar.update(1)
                )
                peak_at_4 = peak_rss_mib(server.pid)
                levels += measure_concurrency(
                    server.url, jpeg, (8,), per_level, model="shapes640", progress=lambda _: bar.update(1)
                )
                servers[engine] = {
                    "torch_free": engine != "ultralytics",
                    "cold_start_s": round(cold, 2),
                    "cold_start_cpu_s": cold_cpu,
                    "rss_idle_mib": idle,
                    "sequential": sequential,
                    "predict_vs_inprocess": paired,
                    "concurrency": levels,
                    "peak_rss_mib_4_clients": peak_at_4,  # after 1, 2 and 4 clients
                    "peak_rss_mib": peak_rss_mib(server.pid),  # after 8 clients too
                }
        figures["servers"] = servers

        data = big_image()
        big: dict[str, Any] = {"image_bytes": len(data), "size": [6000, 6000]}
        for engine in SERVED:
            server_env = {**env, "YOLO_SERVICE_ENGINE": engine, "YOLO_SERVICE_DEFAULT_MODEL": "shapes"}
            server = torch_free_server(server_env) if engine != "ultralytics" else LocalServer(
                ["yolo-service", "serve", "--host", "127.0.0.1"], env=server_env, wait=False
            )  # fmt: skip
            step(f"big images: {engine}")
            with server:
                server.wait_for("/ready")
                single = measure_requests(server.url, data, 3 if quick else 5, "/predict/file", "shapes")
                burst = _concurrent_burst(server.url, data, big_clients, "shapes")
                big[engine] = {"single": single, "burst": burst, "peak_rss_mib": peak_rss_mib(server.pid)}
            bar.update(1)
        figures["big_images"] = big
    finally:
        bar.close()
        shutil.rmtree(weights, ignore_errors=True)

    figures["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["targets"] = _targets(figures)
    (out / "bench.json").write_text(json.dumps(figures, indent=2))
    _plot(figures, out / "bench.png")
    _print_summary(figures)
    print(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
    return figures


def _row(figures: dict[str, Any], engine: str, imgsz: int, threads: int) -> dict[str, Any]:
    return next(r for r in figures["inprocess"] if (r["engine"], r["imgsz"], r["threads"]) == (engine, imgsz, threads))


def _targets(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Each figure of issue 10 against its target, for each torch-free engine."""
    cpus = figures["machine"]["cpus"]

    def at_most(name: str, value: float, limit: float, unit: str) -> dict[str, Any]:
        return {"figure": name, "value": round(value, 3), "target": f"<= {limit:.3g}", "unit": unit,
                "met": value <= limit}  # fmt: skip

    def at_least(name: str, value: float, limit: float, unit: str) -> dict[str, Any]:
        return {"figure": name, "value": round(value, 3), "target": f">= {limit:.3g}", "unit": unit,
                "met": value >= limit}  # fmt: skip

    pytorch = _row(figures, "ultralytics", 640, cpus)["p50_ms"]
    targets = []
    for engine in ("openvino", "onnxruntime"):
        server = figures["servers"][engine]
        paired = server["predict_vs_inprocess"]  # measured in turns: the ratio of two p50s taken together
        at4 = next(r for r in server["concurrency"] if r["concurrency"] == 4)
        exported = _row(figures, engine, 640, cpus)["p50_ms"]
        single_thread = _row(figures, engine, 640, 1)["p50_ms"]
        big = figures["big_images"][engine]
        answered = float(big["burst"]["all_answered"])
        targets += [
            at_most(f"{engine}: 32 big images, peak RSS", big["peak_rss_mib"], 1536, "MiB"),
            at_least(f"{engine}: 32 big images, all 200 or 503 + Retry-After", answered, 1, "(1 = all)"),
            at_most(f"{engine}: one big image alone, p50", big["single"]["p50_ms"] / 1000, 0.25, "s"),
            at_most(f"{engine}: in-process p50 / PyTorch's (640 px, same threads)", exported / pytorch, 0.5, "x"),
            at_most(
                f"{engine}: /predict p50 / in-process p50 (in turns)",
                paired["predict_p50_ms"] / paired["inprocess_p50_ms"],
                1.15,
                "x",
            ),
            at_least(
                f"{engine}: throughput at 4 clients",
                at4["throughput_rps"],
                0.9 * cpus / (single_thread / 1000),
                "req/s",
            ),  # fmt: skip
            at_most(f"{engine}: torch-free cold start to /ready", server["cold_start_s"], 2.0, "s"),
            at_most(f"{engine}: torch-free peak RSS under 4 clients", server["peak_rss_mib_4_clients"], 400, "MiB"),
        ]
    return targets


def _print_summary(figures: dict[str, Any]) -> None:
    machine = figures["machine"]
    print(
        f"\n{machine['cpus']} usable CPUs; load average {machine['load_average_at_start'][0]} at the start, "
        f"{machine['load_average_at_end'][0]} at the end (above {machine['cpus']}, other processes inflate wall times)"
    )
    print(f"\nin-process predict_image on a {figures['image']['size'][0]}x{figures['image']['size'][1]} image (ms):")
    print(f"{'engine':<13}{'imgsz':>6}{'threads':>8}{'p50':>9}{'p95':>9}{'CPU/call':>10}")
    for r in figures["inprocess"]:
        print(
            f"{r['engine']:<13}{r['imgsz']:>6}{r['threads']:>8}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}"
            f"{r['cpu_ms_per_call']:>10.1f}"
        )
    for engine, server in figures["servers"].items():
        print(f"\nserver, engine {engine} (torch-free: {server['torch_free']}): cold start {server['cold_start_s']} s "
              f"({server['cold_start_cpu_s']} s CPU), "
              f"RSS idle {server['rss_idle_mib']} MiB, peak {server['peak_rss_mib_4_clients']} MiB "
              f"after 4 clients, {server['peak_rss_mib']} MiB after 8")  # fmt: skip
        for r in server["sequential"]:
            print(f"  {r['route']:<14} p50 {r['p50_ms']:.1f} ms  p95 {r['p95_ms']:.1f} ms")
        if server.get("predict_vs_inprocess"):
            paired = server["predict_vs_inprocess"]
            print(f"  /predict and in-process in turns: p50 {paired['predict_p50_ms']:.1f} vs "
                  f"{paired['inprocess_p50_ms']:.1f} ms")  # fmt: skip
        for r in server["concurrency"]:
            print(f"  {r['concurrency']} clients: {r['throughput_rps']:.1f} req/s, p50 {r['p50_ms']:.0f} ms, "
                  f"p99 {r['p99_ms']:.0f} ms, {r['ok']}/{r['requests']} ok")  # fmt: skip
    big = figures["big_images"]
    for engine in SERVED:
        b = big[engine]
        print(f"\n{b['burst']['clients']} concurrent 6000x6000 JPEGs ({big['image_bytes']:,} bytes), {engine}: "
              f"statuses {b['burst']['statuses']}, peak RSS {b['peak_rss_mib']} MiB; one alone p50 "
              f"{b['single']['p50_ms']:.0f} ms")  # fmt: skip
    print("\ntargets (issue 10):")
    for t in figures["targets"]:
        print(f"  [{'met' if t['met'] else 'MISSED'}] {t['figure']}: {t['value']} {t['unit']} (target {t['target']})")


def _plot(figures: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = [1.3] + [1] * len(SERVED)
    fig, axes = plt.subplots(1, len(ratios), figsize=(6 * len(ratios), 5.2), gridspec_kw={"width_ratios": ratios})
    rows = figures["inprocess"]
    labels = [f"{r['engine']} {r['imgsz']}px, {r['threads']} thread{'s' if r['threads'] > 1 else ''}" for r in rows]
    colors = {"ultralytics": "#fdae6b", "openvino": "#74c476", "onnxruntime": "#6baed6"}
    axes[0].barh(range(len(rows)), [r["p50_ms"] for r in rows], color=[colors[r["engine"]] for r in rows])
    axes[0].set_yticks(range(len(rows)), labels, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("p50 latency (ms), in-process")
    axes[0].set_title("per engine, input size and threads")
    servers = figures["servers"]
    for ax, engine in zip(axes[1:], SERVED, strict=True):
        kind = "torch-free" if servers[engine]["torch_free"] else "PyTorch"
        plot_concurrency(servers[engine]["concurrency"], ax, f"server, {engine} ({kind}), 640 px")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
