"""Speed and memory figures of the engines and the server: ``yolo-service bench [--out DIR] [--quick]``.

A benchmark, not a test: it prints figures and writes ``bench.json`` and a plot ``bench.png``;
it asserts nothing. Everything runs on this machine over loopback (127.0.0.1): in-process
latency per engine, input size and thread count; per engine and precision (INT8 included), the
accuracy on held-out scenes (mAP50, mAP50-95: :mod:`.accuracy`), p50 and throughput; the server a
user meets (``make run``'s defaults, engine ``auto``) side by side with ``YOLO_SERVICE_ENGINE=ultralytics``
at 320 and 640 px; ``/predict`` against the inference alone; throughput and p50/p99 latency at
1, 2, 4 and 8 concurrent clients; cold start (process start to ``/ready``), whether torch was
loaded, and peak resident memory (``VmHWM``); and 32 concurrent 6000x6000 JPEGs. The CPU's
flags that decide the exported engines' speed (bf16, VNNI, AVX-512, AVX2) are recorded with the
figures. Notebook 07 calls :func:`measure_concurrency` and :func:`plot_concurrency`.

Fair on a shared machine: figures that are compared (engines against each other, ``/predict``
against the same engine in-process) are measured in turns, and the clients use a lean
keep-alive connection, since they share the CPUs with the server they measure.

Needs the ``bench`` extra (matplotlib, requests), to export the 640 px model the ``serve`` extra,
and for the INT8 rows the ``export`` extra (NNCF; without it they are skipped, and the JSON says so).
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

from ..config import EngineChoice, EngineName, Settings, available_cpus
from ..engines import ENGINES
from ..errors import YoloServiceError
from .processes import TORCH_MODULES, LocalServer, import_blocker

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
    "measure_big_images",
    "measure_inprocess",
    "measure_server",
    "measure_default_vs_pytorch",
    "measure_precisions",
    "cpu_flags",
    "torch_loaded",
    "run_bench",
]

#: The servers measured: what a user meets (``make run``'s defaults: engine ``auto``), then PyTorch.
SERVED: tuple[EngineChoice, ...] = ("auto", "ultralytics")
REFERENCE: EngineName = next(name for name, engine in ENGINES.items() if engine.torch)  # PyTorch: the reference
MODEL_640 = "shapes640"  # the bundled weights served at the default 640 px
MODELS = {320: "shapes", 640: MODEL_640}  # input size -> the model measured at it
#: Engine and precision pairs scored for accuracy and speed: PyTorch's float model is the reference.
VARIANTS: tuple[tuple[EngineName, str], ...] = (
    ("ultralytics", "f32"),
    ("openvino", "auto"),
    ("onnxruntime", "auto"),
    ("openvino", "int8"),
)
#: /proc/cpuinfo flags that decide what OpenVINO computes in: bf16 and VNNI (INT8 dot products) or neither.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, bool]:
    """Which of :data:`CPU_FLAGS` this CPU has (Linux; all False where /proc/cpuinfo cannot be read)."""
    try:
        line = next(x for x in cpuinfo.read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return dict.fromkeys(CPU_FLAGS, False)
    present = set(line.split(":", 1)[1].split())
    return {flag: flag in present for flag in CPU_FLAGS}


def torch_loaded(pid: int) -> bool:
    """Whether a process has torch's shared library mapped (``/proc/PID/maps``): it imported torch."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


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


def big_image(size: int = 6000, target_bytes: int = 600_000) -> bytes:
    """A ``size`` x ``size`` JPEG of about ``target_bytes``: shapes on a textured background."""
    from PIL import Image, ImageFilter

    from ..shapes import Shape, draw_scene

    texture = Image.effect_noise((size // 60, size // 60), 60).filter(ImageFilter.GaussianBlur(2)).convert("RGB")
    step = size // 6
    corners = [(step, step), (3 * step, 2 * step), (2 * step, 4 * step)]
    kinds = ("circle", "square", "triangle")
    shapes = [Shape(kind, x, y, x + step, y + step, (200, 30, 30)) for kind, (x, y) in zip(kinds, corners, strict=True)]
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


def _predict_vs_inprocess(url: str, jpeg: bytes, image: Image.Image, settings: Settings, n: int) -> dict[str, Any]:
    """``/predict`` (JSON, base64) against the same engine in this process, one request at a time, in turns.

    Three calls in turns: the runtime's inference alone (on a tensor letterboxed once), the whole
    in-process ``predict_image`` (letterbox, inference, decoding, NMS, detections), and ``/predict``
    over HTTP. ``/predict`` minus the inference alone is what the request path costs around the model.
    """
    from ..engines.exported import ExportedDetector, letterbox
    from ..models import ModelRegistry

    registry = ModelRegistry(settings)
    detector = registry.get(MODEL_640)
    connection = _Connection(url, "/predict", jpeg, MODEL_640, 60)
    calls: dict[str, Callable[[], Any]] = {}
    if isinstance(detector, ExportedDetector):
        tensor = letterbox(image, detector.input_size, detector.stride, pixels=detector.pixels)[0]
        calls["inference"] = functools.partial(detector._run, tensor)
    calls["inprocess"] = functools.partial(registry.predict_image, image, MODEL_640)
    calls["predict"] = connection.post
    stats = _interleaved(calls, n)
    connection.close()
    figures = {f"{name}_p50_ms": stats[name]["p50_ms"] for name in calls}
    if "inference" in stats:
        figures["around_inference_ms"] = round(stats["predict"]["p50_ms"] - stats["inference"]["p50_ms"], 2)
    return figures


def _ready(url: str) -> dict[str, Any]:
    """The server's ``/ready`` answer (the engine and precision serving its default model)."""
    import urllib.request

    with urllib.request.urlopen(url + "/ready", timeout=10) as response:  # loopback: the server this run started
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def _throughput(call: Callable[[], Any], clients: int, n: int) -> float:
    """Calls per second of ``call`` from ``clients`` threads at once (``n`` calls after one warm-up each)."""
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(lambda _: call(), range(clients)))
        started = time.perf_counter()
        list(pool.map(lambda _: call(), range(n)))
        return round(n / (time.perf_counter() - started), 2)


class _Run:
    """One benchmark run's set-up: counts, the sample image, a weights directory with the 640 px model, progress."""

    def __init__(self, weights: Path, quick: bool, progress: Any) -> None:
        from ..shapes import sample_scene

        self.weights, self.quick, self.progress = weights, quick, progress
        self.cpus = available_cpus()
        self.n = 10 if quick else 50  # calls per figure of latency
        self.per_level = 8 if quick else 40  # requests per level of concurrency
        self.image = sample_scene()[0]
        self.jpeg = jpeg_bytes(self.image)

    def step(self, what: str, done: int = 0) -> None:
        """Count ``done`` steps finished, and name the one that starts now."""
        self.progress.update(done)
        self.progress.set_description(what)

    def done(self, steps: int = 1) -> None:
        """Count ``steps`` steps finished."""
        self.progress.update(steps)

    def settings(self, engine: EngineChoice, **fields: Any) -> Settings:
        """Settings for ``engine`` over this run's weights, offline."""
        return Settings(weights_dir=self.weights, offline=True, engine=engine, **fields)

    def server(self, engine: EngineChoice, default_model: str = MODEL_640) -> LocalServer:
        """A ``yolo-service serve`` process on ``engine`` over this run's weights (not started).

        A torch-free engine's server runs with torch made unimportable, so its figures are those of
        a server that could not have loaded it. ``auto`` runs as ``make run`` does, torch importable:
        whether it loaded it is measured (:func:`torch_loaded`).
        """
        env = {
            "YOLO_SERVICE_WEIGHTS_DIR": str(self.weights),
            "YOLO_SERVICE_DEFAULT_MODEL": default_model,
            "YOLO_SERVICE_OFFLINE": "1",
            "YOLO_SERVICE_LOG_LEVEL": "warning",
            "YOLO_SERVICE_ENGINE": engine,
        }
        blocked = () if engine == "auto" or ENGINES[engine].torch else TORCH_MODULES
        code = (
            import_blocker(blocked)
            + "from yolo_service.cli import main\nsys.exit(main(['serve', '--host', '127.0.0.1']))\n"
        )
        return LocalServer([sys.executable, "-c", code], env=env, wait=False)


def export_640(weights: Path) -> None:
    """The bundled weights at the default 640 px, as a local model ``shapes640`` with its ONNX export."""
    from ..engines.export import export_onnx
    from ..models import BUNDLED_DIR, ModelCatalog

    shutil.copy(BUNDLED_DIR / "shapes.pt", weights / f"{MODEL_640}.pt")
    export_onnx(ModelCatalog(Settings(weights_dir=weights, offline=True)).spec(MODEL_640), imgsz=640)


def measure_inprocess(run: _Run) -> list[dict[str, Any]]:
    """In-process ``predict_image`` latency of every engine, at 320 and 640 px, on one thread and on all, in turns."""
    from ..models import ModelRegistry

    rows = []
    for imgsz, model in ((320, "shapes"), (640, MODEL_640)):
        for threads in sorted({1, run.cpus}):
            run.step(f"in-process, the {len(ENGINES)} engines in turns, {imgsz}px {threads} threads")
            registries = {e: ModelRegistry(run.settings(e, threads=threads, replicas=1)) for e in ENGINES}
            calls: dict[str, Callable[[], Any]] = {
                e: functools.partial(r.predict_image, run.image, model) for e, r in registries.items()
            }
            for engine, stats in _interleaved(calls, run.n).items():
                rows.append({"engine": engine, "imgsz": imgsz, "threads": threads, **stats})
            run.done(len(ENGINES))
            del registries, calls
    return sorted(rows, key=lambda r: (r["imgsz"], list(ENGINES).index(r["engine"]), r["threads"]))


def measure_server(run: _Run, engine: EngineChoice) -> dict[str, Any]:
    """A server on ``engine``: cold start, memory, sequential requests, /predict against in-process, 1-8 clients."""
    server = run.server(engine)
    run.step(f"{engine} server: cold start")
    started = time.perf_counter()
    with server:
        server.wait_for("/ready")
        cold = time.perf_counter() - started
        ready = _ready(server.url)
        figures: dict[str, Any] = {
            "engine": ready.get("engine"),
            "precision": ready.get("precision"),
            "torch_free": not torch_loaded(server.pid),
            "cold_start_s": round(cold, 2),
            "cold_start_cpu_s": cpu_seconds(server.pid),
            "rss_idle_mib": rss_mib(server.pid),
        }
        run.step(f"{engine} server: sequential requests", done=1)
        routes = ("/predict", "/predict/file")
        figures["sequential"] = [measure_requests(server.url, run.jpeg, run.n, r, MODEL_640) for r in routes]
        figures["predict_vs_inprocess"] = None  # measured for the exported engines, whose targets use it
        if figures["engine"] != REFERENCE:
            paired = _predict_vs_inprocess(server.url, run.jpeg, run.image, run.settings(engine), run.n)
            figures["predict_vs_inprocess"] = paired
        figures["torch_free"] = not torch_loaded(server.pid)  # after requests too: nothing imported it since
        run.step(f"{engine} server: 1-8 clients", done=1)
        clients = functools.partial(
            measure_concurrency, server.url, run.jpeg, requests_per_level=run.per_level, model=MODEL_640
        )
        levels = clients((1, 2, 4), progress=run.progress.update)
        figures["peak_rss_mib_4_clients"] = peak_rss_mib(server.pid)  # after 1, 2 and 4 clients
        figures["concurrency"] = levels + clients((8,), progress=run.progress.update)
        figures["peak_rss_mib"] = peak_rss_mib(server.pid)  # after 8 clients too
    return figures


def measure_big_images(run: _Run, engine: EngineChoice, data: bytes) -> dict[str, Any]:
    """One 6000x6000 JPEG at a time, then a burst of them at once, on a server running ``engine``."""
    run.step(f"big images: {engine}")
    with run.server(engine, default_model="shapes") as server:
        server.wait_for("/ready")
        single = measure_requests(server.url, data, 3 if run.quick else 5, "/predict/file", "shapes")
        burst = _concurrent_burst(server.url, data, 8 if run.quick else 32, "shapes")
        figures = {"single": single, "burst": burst, "peak_rss_mib": peak_rss_mib(server.pid)}
    run.done()
    return figures


def export_int8_models(run: _Run) -> str | None:
    """INT8 OpenVINO models of ``shapes`` and ``shapes640`` in the run's weights; None, or why there are none."""
    from ..engines import export_target
    from ..engines.quantize import export_int8
    from ..models import ModelCatalog
    from .accuracy import calibration_scenes

    try:
        import nncf  # noqa: F401
    except ImportError:
        return "NNCF is not installed (the export extra): no INT8 rows"
    catalog = ModelCatalog(run.settings("ultralytics"))
    calibration = calibration_scenes(60 if run.quick else 300)
    for model in MODELS.values():
        spec = catalog.spec(model)
        onnx = next(p for p in spec.exported_files(run.weights) if p.is_file())
        export_int8(onnx, calibration, export_target(spec, catalog.settings).with_suffix(".int8.xml"))
    return None


def _weak_detections(registry: Any, model: str, image: Image.Image) -> list[Any]:
    """Every detection down to confidence 0.001, as Ultralytics validates: the mAP needs the weak end of the curve."""
    detections: list[Any] = registry.predict_image(image, model, confidence=0.001).detections
    return detections


def measure_precisions(run: _Run) -> list[dict[str, Any]]:
    """Per engine and precision, at 320 and 640 px: mAP50 and mAP50-95 on held-out scenes, p50 (in turns), throughput.

    PyTorch's float model is the reference: each row says how far its mAP50-95 is from PyTorch's,
    in points (hundredths), and its p50 as a fraction of PyTorch's.
    """
    from ..models import ModelRegistry
    from .accuracy import evaluate, heldout_scenes

    scenes = heldout_scenes(60 if run.quick else None)
    rows = []
    for imgsz, model in MODELS.items():
        registries = {}
        for engine, precision in VARIANTS:
            settings = run.settings(engine, precision=precision, replicas=1)  # one copy on every thread: p50s compare
            try:
                registries[(engine, precision)] = ModelRegistry(settings)
                registries[(engine, precision)].get(model)
            except YoloServiceError as exc:  # e.g. no INT8 file: NNCF not installed
                run.step(f"skipped {engine} {precision}: {exc}")
                registries.pop((engine, precision))
        run.step(f"{imgsz}px: p50 of {len(registries)} engines and precisions, in turns")
        calls: dict[str, Callable[[], Any]] = {
            f"{e} {p}": functools.partial(r.predict_image, run.image, model) for (e, p), r in registries.items()
        }
        latency = _interleaved(calls, run.n)
        for (engine, precision), registry in registries.items():
            run.step(f"{imgsz}px {engine} {precision}: mAP on {len(scenes)} held-out scenes, throughput")
            detector = registry.get(model)
            call = functools.partial(registry.predict_image, run.image, model)
            scored = evaluate(functools.partial(_weak_detections, registry, model), scenes)
            rows.append(
                {
                    "imgsz": imgsz,
                    "engine": engine,
                    "precision": detector.precision,
                    **scored,
                    "p50_ms": latency[f"{engine} {precision}"]["p50_ms"],
                    "throughput_rps": _throughput(call, 2 * run.cpus, 2 * run.n),
                }
            )
        reference = next(r for r in rows if r["imgsz"] == imgsz and r["engine"] == REFERENCE)
        for row in rows:
            if row["imgsz"] == imgsz:
                row["map50_95_drop_points"] = round(100 * (reference["map50_95"] - row["map50_95"]), 2)
                row["p50_vs_pytorch"] = round(row["p50_ms"] / reference["p50_ms"], 3)
        del registries, calls
    return rows


def measure_default_vs_pytorch(run: _Run) -> dict[str, Any]:
    """``make run``'s server (default settings: engine ``auto``) and a PyTorch one, side by side, ``/predict`` in turns.

    Both servers run at once over the same weights; one request to each in turn, so a slow spell
    of the shared machine slows both alike. At 320 px (the bundled model) and 640 px.
    """
    figures: dict[str, Any] = {}
    run.step("make run's defaults and PyTorch, side by side")
    with run.server("auto") as default, run.server(REFERENCE) as pytorch:
        for server in (default, pytorch):
            server.wait_for("/ready")
        figures["engine"] = _ready(default.url).get("engine")
        time.sleep(2)  # the exported engine's throughput compilation finishes in the background
        for imgsz, model in MODELS.items():
            connections = {
                name: _Connection(server.url, "/predict", run.jpeg, model, 60)
                for name, server in (("default", default), ("ultralytics", pytorch))
            }
            stats = _interleaved({name: c.post for name, c in connections.items()}, run.n)
            for connection in connections.values():
                connection.close()
            figures[str(imgsz)] = {
                "default_p50_ms": stats["default"]["p50_ms"],
                "ultralytics_p50_ms": stats["ultralytics"]["p50_ms"],
                "ratio": round(stats["default"]["p50_ms"] / stats["ultralytics"]["p50_ms"], 3),
            }
        figures["default_torch_loaded"] = torch_loaded(default.pid)
    run.done()
    return figures


def run_bench(out: Path, quick: bool = False) -> dict[str, Any]:
    """Run every measurement, print a summary, write ``out/bench.json`` and ``out/bench.png``; return the figures."""
    from tqdm import tqdm

    os.environ.setdefault("YOLO_SERVICE_OFFLINE", "1")
    out.mkdir(parents=True, exist_ok=True)
    weights = Path(tempfile.mkdtemp(prefix="yolo-service-bench-"))
    cpus = available_cpus()
    steps = 3 + 2 * len(ENGINES) * len({1, cpus}) + len(SERVED) * (2 + 4 + 1)
    progress = tqdm(total=steps, desc="bench", unit="step", file=sys.stderr)
    run = _Run(weights, quick, progress)
    figures: dict[str, Any] = {
        "machine": {
            "cpus": cpus,
            "python": platform.python_version(),
            "processor": platform.processor(),
            "cpu_flags": cpu_flags(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],  # others' load inflates wall times
        },
        "quick": quick,
        "image": {"size": list(run.image.size), "jpeg_bytes": len(run.jpeg)},
    }
    try:
        run.step("export the 640 px model")
        export_640(weights)
        run.step("INT8 models (NNCF)", done=1)
        figures["int8_skipped"] = export_int8_models(run)
        run.done()
        figures["default_vs_pytorch"] = measure_default_vs_pytorch(run)
        figures["precisions"] = measure_precisions(run)
        figures["inprocess"] = measure_inprocess(run)
        figures["servers"] = {engine: measure_server(run, engine) for engine in SERVED}
        data = big_image()
        big: dict[str, Any] = {"image_bytes": len(data), "size": [6000, 6000]}
        big |= {engine: measure_big_images(run, engine, data) for engine in SERVED}
        figures["big_images"] = big
    finally:
        progress.close()
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


def _target(figure: str, value: float, limit: float, unit: str, *, at_least: bool = False) -> dict[str, Any]:
    """One figure against its target: at most ``limit`` (or at least, when ``at_least``)."""
    met = value >= limit if at_least else value <= limit
    sign = ">=" if at_least else "<="
    return {"figure": figure, "value": round(value, 3), "target": f"{sign} {limit:.3g}", "unit": unit, "met": met}


def _targets(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets, each figure against its own (see the README, "Engines, and the benchmark").

    What a user meets (``make run``'s defaults against ``YOLO_SERVICE_ENGINE=ultralytics``, in turns):
    ``/predict`` p50 at most 0.4x PyTorch's at 320 px, and at 640 px 0.35x on a CPU with bf16, 0.75x
    without; at most 3 ms around the inference; ready within 3 s with torch not loaded. INT8: mAP50-95
    within 1 point of the float model, p50 at most half PyTorch's. The served exported engine: at 4
    clients at least 90 % of one one-thread inference per CPU; 400 MiB under 4 clients; 32 concurrent
    big images all answered (200, or 503 with ``Retry-After``) within 1.5 GiB, one alone within 0.25 s.
    """
    cpus = figures["machine"]["cpus"]
    flags = figures["machine"]["cpu_flags"]
    bf16 = flags["avx512_bf16"] or flags["amx_bf16"]
    side = figures["default_vs_pytorch"]
    served = side["engine"]
    targets = [
        _target(f"make run's defaults ({served}): /predict p50 / PyTorch's, 320 px", side["320"]["ratio"], 0.4, "x"),
        _target(
            f"make run's defaults ({served}): /predict p50 / PyTorch's, 640 px ({'bf16' if bf16 else 'no bf16'})",
            side["640"]["ratio"],
            0.35 if bf16 else 0.75,
            "x",
        ),
    ]
    for row in figures["precisions"]:
        if row["precision"] == "int8":
            where = f"INT8 ({row['engine']}), {row['imgsz']} px"
            targets.append(_target(f"{where}: mAP50-95 below PyTorch's", row["map50_95_drop_points"], 1.0, "points"))
            targets.append(_target(f"{where}: in-process p50 / PyTorch's", row["p50_vs_pytorch"], 0.5, "x"))
    for engine in (name for name in SERVED if name != REFERENCE):
        server = figures["servers"][engine]
        paired = server["predict_vs_inprocess"]  # measured in turns
        at4 = next(r for r in server["concurrency"] if r["concurrency"] == 4)
        one_thread_rps = 1000 / _row(figures, server["engine"], 640, 1)["p50_ms"]
        big = figures["big_images"][engine]
        burst = big["burst"]["clients"]  # 32 (8 in a quick run)
        targets += [
            _target(
                f"{engine}: /predict p50 minus the inference alone (640x480, in turns)",
                paired.get("around_inference_ms", float("nan")),
                3.0,
                "ms",
            ),
            _target(f"{engine}: ready after start", server["cold_start_s"], 3.0, "s"),
            _target(f"{engine}: torch loaded in the server (0 = no)", float(not server["torch_free"]), 0, ""),
            _target(
                f"{engine}: throughput at 4 clients",
                at4["throughput_rps"],
                0.9 * cpus * one_thread_rps,
                "req/s",
                at_least=True,
            ),
            _target(f"{engine}: peak RSS under 4 clients", server["peak_rss_mib_4_clients"], 400, "MiB"),
            _target(f"{engine}: {burst} big images, peak RSS", big["peak_rss_mib"], 1536, "MiB"),
            _target(
                f"{engine}: {burst} big images, all 200 or 503 + Retry-After",
                float(big["burst"]["all_answered"]),
                1,
                "(1 = all)",
                at_least=True,
            ),
            _target(f"{engine}: one big image alone, p50", big["single"]["p50_ms"] / 1000, 0.25, "s"),
        ]
    return targets


def _print_summary(figures: dict[str, Any]) -> None:
    machine = figures["machine"]
    start, end, cpus = machine["load_average_at_start"][0], machine["load_average_at_end"][0], machine["cpus"]
    flags = ", ".join(f"{flag} {'yes' if present else 'no'}" for flag, present in machine["cpu_flags"].items())
    print(
        f"\n{cpus} usable CPUs ({flags}); load average {start} at the start, {end} at the end "
        f"(above {cpus}, other processes inflate wall times)"
    )
    side = figures["default_vs_pytorch"]
    print(f"\nmake run's defaults (engine auto: {side['engine']}) and PyTorch, /predict in turns (ms):")
    for imgsz in MODELS:
        r = side[str(imgsz)]
        print(f"  {imgsz} px: p50 {r['default_p50_ms']:.1f} vs {r['ultralytics_p50_ms']:.1f} ({r['ratio']:.2f}x)")
    if figures.get("int8_skipped"):
        print(f"\n{figures['int8_skipped']}")
    print("\nper engine and precision: held-out mAP, in-process p50 (in turns) and throughput:")
    print(
        f"{'imgsz':>5} {'engine':<12}{'precision':<10}{'mAP50':>7}{'mAP50-95':>9}{'drop':>7}"
        f"{'p50 ms':>8}{'x PT':>6}{'req/s':>7}"
    )
    for r in figures["precisions"]:
        print(
            f"{r['imgsz']:>5} {r['engine']:<12}{r['precision']:<10}{r['map50']:>7.4f}{r['map50_95']:>9.4f}"
            f"{r['map50_95_drop_points']:>7.2f}{r['p50_ms']:>8.1f}{r['p50_vs_pytorch']:>6.2f}{r['throughput_rps']:>7.1f}"
        )
    width, height = figures["image"]["size"]
    print(f"\nin-process predict_image on a {width}x{height} image (ms):")
    print(f"{'engine':<13}{'imgsz':>6}{'threads':>8}{'p50':>9}{'p95':>9}{'CPU/call':>10}")
    for r in figures["inprocess"]:
        print(
            f"{r['engine']:<13}{r['imgsz']:>6}{r['threads']:>8}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}"
            f"{r['cpu_ms_per_call']:>10.1f}"
        )
    for engine, server in figures["servers"].items():
        print(
            f"\nserver, engine {engine} (torch-free: {server['torch_free']}): cold start {server['cold_start_s']} s "
            f"({server['cold_start_cpu_s']} s CPU), RSS idle {server['rss_idle_mib']} MiB, "
            f"peak {server['peak_rss_mib_4_clients']} MiB after 4 clients, {server['peak_rss_mib']} MiB after 8"
        )
        for r in server["sequential"]:
            print(f"  {r['route']:<14} p50 {r['p50_ms']:.1f} ms  p95 {r['p95_ms']:.1f} ms")
        if paired := server.get("predict_vs_inprocess"):
            predict, inprocess = paired["predict_p50_ms"], paired["inprocess_p50_ms"]
            alone = paired.get("inference_p50_ms", float("nan"))
            print(
                f"  /predict, in-process, inference alone, in turns: p50 {predict:.1f}, {inprocess:.1f}, {alone:.1f} ms"
            )
        for r in server["concurrency"]:
            print(
                f"  {r['concurrency']} at once: {r['throughput_rps']:.1f} req/s, p50 {r['p50_ms']:.0f} ms, "
                f"p99 {r['p99_ms']:.0f} ms, {r['ok']}/{r['requests']} ok"
            )
    big = figures["big_images"]
    for engine in SERVED:
        b = big[engine]
        print(
            f"\n{b['burst']['clients']} concurrent 6000x6000 JPEGs ({big['image_bytes']:,} bytes), {engine}: "
            f"statuses {b['burst']['statuses']}, peak RSS {b['peak_rss_mib']} MiB; "
            f"one alone p50 {b['single']['p50_ms']:.0f} ms"
        )
    print("\ntargets:")
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
        kind = "torch-free" if servers[engine]["torch_free"] else "torch loaded"
        plot_concurrency(
            servers[engine]["concurrency"], ax, f"server, {engine}: {servers[engine]['engine']} ({kind}), 640 px"
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
