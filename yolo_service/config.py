"""Settings: one class, read from ``YOLO_SERVICE_*`` environment variables (and ``$PORT``).

Nothing runs at import; :func:`get_settings` builds and caches the settings on first
call. Apps take a ``Settings`` argument so tests pass their own instead of patching
globals.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "ENGINE_CHOICES",
    "ENGINE_NAMES",
    "EngineChoice",
    "EngineName",
    "Precision",
    "Settings",
    "available_cpus",
    "get_settings",
]

MiB = 1024 * 1024

#: The engines. ultralytics: PyTorch, the reference (any ``.pt``); openvino / onnxruntime: the
#: model's exported ``NAME.onnx`` with no torch (``yolo-service export NAME``, or made on first load).
#: Written here, in the torch-free core, because the settings validate against it; the engine
#: registry (:data:`yolo_service.engines.ENGINES`) maps each name to its loader and refuses to import
#: if the two disagree, and the CLI and the benchmark read the names from there.
EngineName = Literal["ultralytics", "openvino", "onnxruntime"]
ENGINE_NAMES: tuple[EngineName, ...] = get_args(EngineName)
#: The values of ``YOLO_SERVICE_ENGINE``: ``auto`` (the fastest engine that can serve each model
#: here, :func:`yolo_service.engines.choose_engine`) or one engine, forced.
EngineChoice = Literal["auto", "ultralytics", "openvino", "onnxruntime"]
ENGINE_CHOICES: tuple[EngineChoice, ...] = get_args(EngineChoice)
#: ``YOLO_SERVICE_PRECISION``: what the exported engines compute in. auto: OpenVINO's default (bf16
#: where the CPU has it, else f32); int8: the model's quantized file (``yolo-service export NAME --int8``).
Precision = Literal["auto", "f32", "bf16", "f16", "int8"]


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota.

    ``os.cpu_count()`` counts the host's CPUs; in a container (Cloud Run ``--cpu=2`` on a
    large host, ``docker run --cpus``) that oversubscribes threads.
    """
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = None
    try:
        if (cgroup_root / "cpu.max").is_file():  # cgroup v2: "max 100000" or "200000 100000"
            max_text, period_text = (cgroup_root / "cpu.max").read_text().split()[:2]
            quota = None if max_text == "max" else int(max_text) / int(period_text)
        elif (cgroup_root / "cpu" / "cpu.cfs_quota_us").is_file():  # cgroup v1
            limit = int((cgroup_root / "cpu" / "cpu.cfs_quota_us").read_text())
            period = int((cgroup_root / "cpu" / "cpu.cfs_period_us").read_text())
            quota = None if limit <= 0 else limit / period
    except (OSError, ValueError):
        quota = None
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def _default_weights_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "yolo-service" / "weights"


class Settings(BaseSettings):
    """Every tunable of the library, the API and the apps, with its environment variable."""

    # populate_by_name: Settings(port=…, gcp_project=…) in code, next to their environment aliases.
    model_config = SettingsConfigDict(env_prefix="YOLO_SERVICE_", extra="ignore", populate_by_name=True)

    # Serving
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535, validation_alias=AliasChoices("PORT", "YOLO_SERVICE_PORT"))
    log_level: str = "info"
    log_format: Literal["auto", "text", "json"] = Field(
        "auto",
        description="text: readable lines; json: one Cloud Logging entry per line; auto: json on Cloud Run "
        "(K_SERVICE set), else text",
    )
    gcp_project: str | None = Field(
        None,
        validation_alias=AliasChoices("YOLO_SERVICE_GCP_PROJECT", "GOOGLE_CLOUD_PROJECT"),
        description="the Google Cloud project: JSON log entries then name their trace "
        "(projects/PROJECT/traces/ID), which ties them to Cloud Run's request log",
    )
    max_queue: int = Field(32, ge=1, description="predict requests in flight or queued before a fast 503")
    retry_after: int = Field(2, ge=1, description="seconds a 503 asks the client to wait")
    preload: bool = Field(True, description="load the default model at start-up")
    # Requests still running when the grace period ends get a JSON 503.
    shutdown_timeout: float = Field(8.0, ge=0, description="seconds to finish in-flight requests on SIGTERM")
    workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description="requests decoded, predicted and annotated at once; None: one per replica (PyTorch), "
        "two per thread (exported engines)",
    )
    api_key: SecretStr | None = Field(None, description="when set, requests must send it in the X-API-Key header")
    max_classes: int = Field(
        1000,
        ge=1,
        description="class names one request may filter on (each model bounds them further: its own classes)",
    )
    # Slow and silent clients: what a connection may hold, and for how long.
    body_timeout: float = Field(
        10.0, gt=0, description="seconds a request body may pause between two chunks before a 408 closes it"
    )
    body_min_rate: int = Field(
        16 * 1024,
        ge=1,
        description="bytes per second a body must average once body_timeout has passed (a trickle gets its 408 too)",
    )
    idle_timeout: int = Field(
        5,
        ge=1,
        description="seconds a connection may stay open without sending a complete request head "
        "(before its first request, between requests, or while the head trickles in)",
    )
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, description="bytes of a request line plus headers; more is a 400 and the connection closes"
    )
    max_header_count: int = Field(100, ge=8, description="headers in one request; more is a 431")
    max_connections: int = Field(
        1000,
        ge=8,
        description="open connections; beyond it the longest idle one is closed (capped below the process's "
        "file-descriptor limit)",
    )
    annotate_max_side: int = Field(1920, ge=64, le=8192, description="longest side of the annotated image, pixels")
    ui_timeout: float = Field(120.0, gt=0, description="seconds the UI waits for the backend's whole answer")
    ui_backend_editable: bool = Field(
        True,
        description="visitors may type another backend URL in the UI (the workshop: learners point it at their "
        "Cloud Run URL); false: the UI talks only to BACKEND_URL, for a UI open to the public",
    )
    client_max_response_bytes: int = Field(
        16 * MiB, ge=1024, description="the largest answer the client (UI, CLI, widgets) reads from a backend"
    )

    # Models
    weights_dir: Path = Field(default_factory=_default_weights_dir)
    default_model: str | None = Field(None, description="None: yolo26n if it can be loaded, else shapes")
    offline: bool = Field(False, description="never try to download weights")
    max_models: int = Field(
        2, ge=1, description="models kept loaded; loading one more unloads the least recently used (never the default)"
    )
    threads: int = Field(default_factory=available_cpus, ge=1, description="torch threads in all")
    # Copies of each model serving requests in parallel, each on threads // replicas torch threads.
    # One copy per core measured best under concurrent load (benchmarks/bench_predict.py).
    replicas: int = Field(default_factory=lambda: min(available_cpus(), 4), ge=1, le=16)
    # See EngineChoice: auto serves each model on the fastest engine that can serve it here.
    engine: EngineChoice = "auto"
    # OpenVINO's compiled models in WEIGHTS_DIR/openvino-cache, when it can be written: the next start compiles
    # in a third of the time. The images turn it off: a container starts with an empty filesystem (in memory
    # on Cloud Run), so a cache would cost RAM and never be reused.
    compile_cache: bool = True
    # See Precision: int8 serves NAME.int8.xml (or NAME.int8.onnx), written by `yolo-service export NAME --int8`.
    precision: Precision = "auto"
    confidence: float = Field(0.25, ge=0.0, le=1.0)
    iou: float = Field(0.7, ge=0.0, le=1.0)
    max_detections: int = Field(300, ge=1, le=1000)

    # Images
    max_image_bytes: int = Field(20 * MiB, ge=1)
    max_image_pixels: int = Field(40_000_000, ge=1)
    # What decoding may cost, checked before the pixels exist (yolo_service/images.py).
    max_decode_bytes: int = Field(
        128 * MiB,
        ge=1 * MiB,
        description="memory one image's decoding may allocate: pixels as decoded (mode and bit depth count, "
        "a JPEG at its draft scale), plus the decoder's own buffers and one working copy",
    )
    max_decode_seconds: float = Field(5.0, gt=0, description="CPU seconds one image's decoding may take")
    max_jpeg_scans: int = Field(
        64, ge=1, description="scans of a progressive JPEG (encoders write about 10); each one costs a pass"
    )
    max_image_metadata_bytes: int = Field(
        1 * MiB, ge=1024, description="bytes a PNG's compressed text (zTXt, iTXt, iCCP) may inflate to, each and in all"
    )
    allowed_formats: Annotated[frozenset[str], NoDecode] = frozenset(
        {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO"}
    )

    @field_validator("allowed_formats", mode="before")
    @classmethod
    def _split_formats(cls, value: object) -> object:
        """Accept ``PNG,JPEG`` from the environment; store upper-case names."""
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        parts = value if isinstance(value, list | tuple | set | frozenset) else [value]
        return frozenset(str(part).strip().upper() for part in parts)

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        levels = {"critical", "error", "warning", "info", "debug"}
        if value.lower() not in levels:
            raise ValueError(f"log_level must be one of {sorted(levels)}")
        return value.lower()

    @field_validator("api_key", mode="after")
    @classmethod
    def _empty_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        """``YOLO_SERVICE_API_KEY=`` (empty) means no key, not a key that is the empty string."""
        return value if value is not None and value.get_secret_value().strip() else None

    @property
    def json_logs(self) -> bool:
        """Whether logs are JSON entries: ``log_format=json``, or ``auto`` on Cloud Run (which sets ``K_SERVICE``)."""
        return self.log_format == "json" or (self.log_format == "auto" and bool(os.environ.get("K_SERVICE")))

    @property
    def worker_slots(self) -> int:
        """How many requests may hold decoded pixels at once: ``workers``, else a default per engine.

        PyTorch: one per model replica. Exported engines (and ``auto``, which picks one wherever it
        can): two per thread, so that while every CPU
        runs an inference, the next images are already decoded and waiting (with one per thread,
        a CPU idled while the next request was read and decoded: 17 instead of 19 requests/s at
        4 clients on 2 CPUs).
        """
        if self.workers:
            return self.workers
        return self.replicas if self.engine == "ultralytics" else 2 * self.threads

    @property
    def max_body_bytes(self) -> int:
        """The largest request body: a base64 image of ``max_image_bytes`` plus the JSON around it."""
        return self.max_image_bytes * 4 // 3 + 64 * 1024

    @property
    def max_json_values(self) -> int:
        """The most values a predict JSON body may hold: ``max_classes`` class names and the other fields.

        Counted before parsing (commas and brackets outside the base64 image), so a body of millions of
        small numbers in a field the contract ignores is refused before it becomes millions of objects.
        """
        return self.max_classes + 64


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
