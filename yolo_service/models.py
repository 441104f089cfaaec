"""The model catalog and the detector: which models exist, how they load, how they predict.

Names, never paths: a model is ``yolo26n`` (COCO, downloaded by Ultralytics on first
use), ``shapes`` (bundled with this package), or ``NAME`` for a ``NAME.pt`` file in the
weights directory. A name is checked before any file is touched, so no request can
open a file outside the weights directory.

Torch and Ultralytics are imported inside functions only: importing this module is
cheap, and the rest of the package (UI, client) works without them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings, get_settings
from .errors import InvalidRequest, ModelUnavailable, UnknownModel
from .schema import Detection, ImageInfo, ModelInfo, PredictResponse
from .shapes import SHAPE_CLASSES

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "COCO_MODELS",
    "Detector",
    "ModelCatalog",
    "ModelRegistry",
    "ModelSpec",
    "download",
    "predict",
]

logger = logging.getLogger(__name__)

#: COCO-pretrained models that Ultralytics downloads on first use.
COCO_MODELS: dict[str, str] = {
    "yolo26n": "YOLO26 nano: fastest, the default with internet",
    "yolo26s": "YOLO26 small: more accurate, ~3x slower",
    "yolo11n": "YOLO11 nano",
    "yolo11s": "YOLO11 small",
    "yolo11m": "YOLO11 medium: slow on CPU",
}
PREFERRED_DEFAULT = "yolo26n"
BUNDLED_DIR = Path(__file__).parent / "weights"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ModelSpec:
    """A catalog entry: where a model's weights live and what it detects."""

    name: str
    source: str  # "coco" | "bundled" | "local"
    path: Path
    description: str
    imgsz: int = 640
    classes: tuple[str, ...] | None = None

    @property
    def exported(self) -> Path:
        """The model's ONNX file (``NAME.onnx`` next to its weights), which the exported-model engines run."""
        return self.path.with_suffix(".onnx")


class ModelCatalog:
    """The models this installation can serve, by name."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        _configure_ultralytics(self.settings)

    @property
    def weights_dir(self) -> Path:
        """Where COCO downloads and user ``.pt`` files live."""
        return self.settings.weights_dir

    def names(self) -> list[str]:
        """All model names: COCO models, ``shapes``, then the user's ``.pt`` and ``.onnx`` files, sorted."""
        local = []
        if self.weights_dir.is_dir():
            local = sorted(
                {
                    p.stem
                    for pattern in ("*.pt", "*.onnx")
                    for p in self.weights_dir.glob(pattern)
                    if p.stem not in COCO_MODELS and p.stem != "shapes" and _SAFE_NAME.match(p.stem)
                }
            )
        return [*COCO_MODELS, "shapes", *local]

    def spec(self, name: str) -> ModelSpec:
        """The catalog entry for ``name``.

        Raises:
            UnknownModel: the name is unsafe (``/``, ``\\``, ``..``) or not in the catalog.
        """
        name = name.removesuffix(".pt").removesuffix(".onnx")
        if not _SAFE_NAME.match(name) or ".." in name:
            raise UnknownModel(
                f"invalid model name {name!r}: use a name from GET /models (letters, digits, '.', '_', '-'), not a path"
            )
        if name == "shapes":
            return ModelSpec(
                "shapes",
                "bundled",
                BUNDLED_DIR / "shapes.pt",
                "bundled demo: circles, squares and triangles (works offline)",
                imgsz=_bundled_imgsz(),
                classes=SHAPE_CLASSES,
            )
        if name in COCO_MODELS:
            return ModelSpec(name, "coco", self.weights_dir / f"{name}.pt", COCO_MODELS[name])
        for path in (self.weights_dir / f"{name}.pt", self.weights_dir / f"{name}.onnx"):
            if path.is_file():
                return ModelSpec(name, "local", path, f"your model: {path.name} in the weights directory")
        raise UnknownModel(f"unknown model {name!r}; choose one of: {', '.join(self.names())}")

    def available(self, name: str) -> bool:
        """True when the weights are on disk (the ONNX file for an exported-model engine), so it loads offline."""
        return self._weights(self.spec(name)).is_file()

    def _weights(self, spec: ModelSpec) -> Path:
        """The file the configured engine loads: the ``.pt`` (or a user's ``.onnx``) for Ultralytics, else ONNX."""
        return spec.path if self.settings.engine == "ultralytics" else spec.exported

    def download(self, name: str) -> Path:
        """Make sure ``name``'s weights are on disk, downloading COCO weights if needed.

        Raises:
            ModelUnavailable: offline, or the download failed; the message says what to do.
        """
        spec = self.spec(name)
        if self._weights(spec).is_file():
            return self._weights(spec)
        if self.settings.engine != "ultralytics":  # an exported-model engine: no torch here to export with
            raise ModelUnavailable(
                f"model {name!r} has no exported file {spec.exported.name} for the {self.settings.engine} engine: "
                f"run `yolo-service export {name}` where the serve extra is installed, or choose one of: "
                + ", ".join(n for n in self.names() if self.available(n))
            )
        if spec.source != "coco":  # bundled or local weights that vanished
            raise ModelUnavailable(f"the weights of model {name!r} are missing: {spec.path}")
        hint = self._offline_hint(name)
        if self.settings.offline:
            raise ModelUnavailable(f"model {name!r} is not available offline: {hint}")
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        _import_ultralytics()
        from ultralytics.utils.downloads import attempt_download_asset  # shows a progress bar

        try:
            attempt_download_asset(spec.path)
        except Exception as exc:  # Ultralytics raises many types (ConnectionError, OSError, …); all mean "no weights"
            raise ModelUnavailable(f"could not download model {name!r} ({exc}): {hint}") from exc
        if not spec.path.is_file():
            raise ModelUnavailable(f"model {name!r} is not available offline: {hint}")
        return spec.path

    def _offline_hint(self, name: str) -> str:
        """What to do when ``name`` cannot be had: download it, or use a model that is on disk."""
        on_disk = ", ".join(n for n in self.names() if self.available(n))
        return f"run `yolo-service download {name}` with internet, or choose one of: {on_disk}"

    def info(self, name: str, loaded: bool = False, default: bool = False) -> ModelInfo:
        """What GET /models/{name} reports."""
        spec = self.spec(name)
        classes = list(spec.classes) if spec.classes else (_coco_classes() if spec.source == "coco" else None)
        return ModelInfo(
            name=spec.name,
            source=spec.source,
            description=spec.description,
            classes=classes,
            loaded=loaded,
            available_offline=self._weights(spec).is_file(),
            default=default,
        )


@functools.cache
def _bundled_imgsz() -> int:
    """The input size the bundled model was trained at (read once, not per request)."""
    import json

    record = BUNDLED_DIR / "shapes.json"
    if record.is_file():
        return int(json.loads(record.read_text())["config"]["imgsz"])
    return 320


@functools.cache
def _coco_classes() -> list[str] | None:
    try:
        _import_ultralytics()
        from ultralytics.utils import ROOT, YAML
    except ImportError:
        return None
    names = YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"]
    return [names[i] for i in sorted(names)]


class DetectorBase:
    """What every engine's detector shares: class names, class filters, default thresholds.

    Subclasses set ``spec``, ``names`` (class id -> name) and ``settings``, and implement ``predict``.
    """

    spec: ModelSpec
    names: dict[int, str]
    settings: Settings

    @property
    def classes(self) -> list[str]:
        """Class names in id order."""
        return [self.names[i] for i in sorted(self.names)]

    def detections(self, boxes: list[list[float]], scores: list[float], classes: list[float]) -> list[Detection]:
        """The API's detections from parallel lists: xyxy boxes (pixels), confidences, class ids."""
        return [
            Detection(
                x_min=round(x0),
                y_min=round(y0),
                x_max=round(x1),
                y_max=round(y1),
                class_name=self.names.get(int(cls), str(int(cls))),
                class_id=int(cls),
                confidence=round(float(conf), 4),
            )
            for (x0, y0, x1, y1), conf, cls in zip(boxes, scores, classes, strict=True)
        ]

    @property
    def inferences(self) -> dict[str, int]:
        """Inferences run so far by mode (exported engines: ``latency``, ``throughput``); empty if not counted."""
        return {}

    def class_ids(self, classes: list[str] | None) -> list[int] | None:
        """Ids of the class names ``classes`` (None: all classes).

        Raises:
            InvalidRequest: a name the model does not have.
        """
        if not classes:
            return None
        by_name = {name: i for i, name in self.names.items()}
        unknown = [c for c in classes if c not in by_name]
        if unknown:
            ordered = self.classes
            raise InvalidRequest(
                f"model {self.spec.name!r} has no class {', '.join(map(repr, unknown))}; "
                f"its classes are: {', '.join(ordered[:20])}{' …' if len(ordered) > 20 else ''}"
            )
        return [by_name[c] for c in classes]

    def thresholds(
        self, confidence: float | None, iou: float | None, max_detections: int | None
    ) -> tuple[float, float, int]:
        """The request's thresholds, each missing one from :class:`~yolo_service.config.Settings` (one place)."""
        s = self.settings
        return (
            s.confidence if confidence is None else confidence,
            s.iou if iou is None else iou,
            s.max_detections if max_detections is None else max_detections,
        )


class Detector(DetectorBase):
    """One loaded model. ``predict`` is safe to call from many threads at once.

    Ultralytics' predictor keeps per-call state on the model object, so one model
    object serves one call at a time. The detector holds ``replicas`` copies, each
    used by one call at a time (a queue hands them out): concurrent requests run in
    parallel on ``threads // replicas`` torch threads each. All copies hold the same
    weights and thread count, so every result is identical to a serial call.
    """

    def __init__(self, spec: ModelSpec, threads: int, replicas: int = 1, settings: Settings | None = None) -> None:
        try:
            _import_ultralytics()
            from ultralytics import YOLO
        except ImportError as exc:
            raise ModelUnavailable(
                f"cannot load model {spec.name!r}: Ultralytics is not installed ({exc}); "
                "install the serving extra: pip install 'yolo-service[serve]'"
            ) from exc

        self.spec = spec
        self.settings = settings or get_settings()  # the default thresholds
        self.imgsz = spec.imgsz
        self.replicas = max(1, replicas)
        self.threads = max(1, threads // self.replicas)
        self._pool: queue.SimpleQueue[Any] = queue.SimpleQueue()  # Ultralytics YOLO objects
        try:
            models = [YOLO(str(spec.path), task="detect") for _ in range(self.replicas)]
        except Exception as exc:  # a corrupt or foreign .pt file: tell the user which one
            raise ModelUnavailable(f"model {spec.name!r} could not be loaded from {spec.path.name}: {exc}") from exc
        self.names: dict[int, str] = dict(models[0].names)
        # Warm up each copy: Ultralytics builds its predictor on the first call (and pins
        # torch threads there); doing it now keeps the first real requests fast.
        from PIL import Image

        blank = Image.new("RGB", (spec.imgsz, spec.imgsz), (114, 114, 114))
        for model in models:
            self._pool.put(model)
            self.predict(blank)

    def predict(
        self,
        image: Image.Image,
        *,
        confidence: float | None = None,
        iou: float | None = None,
        classes: list[str] | None = None,
        max_detections: int | None = None,
    ) -> tuple[list[Detection], float]:
        """Detect objects in an RGB image; return detections (original pixels) and seconds taken.

        Thresholds not given come from :class:`~yolo_service.config.Settings` (the one place defaults live).
        """
        import torch

        confidence, iou, max_detections = self.thresholds(confidence, iou, max_detections)
        ids = self.class_ids(classes)
        model = self._pool.get()  # blocks while every copy is busy
        try:
            started = time.perf_counter()
            # Ultralytics' select_device pins torch to cores-1 threads; use this detector's share.
            torch.set_num_threads(self.threads)
            result = model.predict(
                image,
                imgsz=self.spec.imgsz,
                conf=confidence,
                iou=iou,
                classes=ids,
                max_det=max_detections,
                device="cpu",
                verbose=False,
            )[0]
            elapsed = time.perf_counter() - started
        finally:
            self._pool.put(model)
        boxes = result.boxes
        detections = self.detections(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist())
        return detections, elapsed


class ModelRegistry:
    """Loads models lazily, once each, and caches them by name; resolves the default model."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.catalog = ModelCatalog(self.settings)
        self._detectors: dict[str, Detector] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._default: str | None = None
        self.on_predict: list[Callable[[PredictResponse], None]] = []  # observers, e.g. the /metrics histograms

    def loaded(self, name: str) -> bool:
        """True once ``name`` is loaded in this process."""
        return self.catalog.spec(name).name in self._detectors

    def detectors(self) -> dict[str, Detector]:
        """The models loaded so far, by name."""
        return dict(self._detectors)

    def get(self, name: str | None = None) -> Detector:
        """The detector for ``name`` (the default model when None), loading it on first use."""
        spec = self.catalog.spec(name) if name else self.catalog.spec(self.default_model())
        if spec.name in self._detectors:
            return self._detectors[spec.name]
        with self._guard:
            lock = self._locks.setdefault(spec.name, threading.Lock())
        with lock:  # one load per model, however many threads ask at once
            if spec.name not in self._detectors:
                self.catalog.download(spec.name)
                started = time.perf_counter()
                from .engines import load_detector

                self._detectors[spec.name] = load_detector(spec, self.settings)
                logger.info("loaded model %s in %.2f s", spec.name, time.perf_counter() - started)
        return self._detectors[spec.name]

    def default_model(self) -> str:
        """The configured default, else ``yolo26n`` if it can be loaded, else ``shapes`` (logged once)."""
        if self._default is None:
            with self._guard:
                if self._default is None:
                    self._default = self._resolve_default()
        return self._default

    def _resolve_default(self) -> str:
        if self.settings.default_model:
            return self.catalog.spec(self.settings.default_model).name
        try:
            self.catalog.download(PREFERRED_DEFAULT)
            return PREFERRED_DEFAULT
        except ModelUnavailable as exc:
            logger.warning("default model: shapes, because %s", exc)
            return "shapes"

    def predict(
        self,
        image: Image.Image | bytes | str | Path,
        model: str | None = None,
        **options: Any,
    ) -> PredictResponse:
        """Decode and validate ``image`` (reduced to the input size), then run ``model``; see :func:`predict`."""
        from .images import load_reduced

        picture, original = load_reduced(image, self.input_size(model), settings=self.settings)
        return self.predict_image(picture, model, original_size=original, **options)

    def input_size(self, model: str | None = None) -> int:
        """The longest side of the model's input: images larger than this are reduced before prediction."""
        return self.get(model).imgsz

    def predict_image(
        self,
        picture: Image.Image,
        model: str | None = None,
        *,
        confidence: float | None = None,
        iou: float | None = None,
        classes: list[str] | None = None,
        max_detections: int | None = None,
        original_size: tuple[int, int] | None = None,
    ) -> PredictResponse:
        """Run ``model`` on an already decoded, upright RGB image (see :func:`~yolo_service.images.load_image`).

        ``original_size``: the (width, height) of the image ``picture`` was reduced from
        (:func:`~yolo_service.images.load_reduced`); boxes and the reported size are in its pixels.
        """
        detector = self.get(model)
        detections, elapsed = detector.predict(
            picture, confidence=confidence, iou=iou, classes=classes, max_detections=max_detections
        )
        width, height = original_size or picture.size
        if (width, height) != picture.size:
            detections = [_scaled(d, width / picture.width, height / picture.height, width, height) for d in detections]
        response = PredictResponse(
            model=detector.spec.name,
            detections=detections,
            time=round(elapsed, 4),
            image=ImageInfo(width=width, height=height),
        )
        for observe in self.on_predict:
            observe(response)
        return response


def _scaled(detection: Detection, sx: float, sy: float, width: int, height: int) -> Detection:
    """A detection in a reduced image mapped back to the original image's pixels."""
    return detection.model_copy(
        update={
            "x_min": min(width, round(detection.x_min * sx)),
            "y_min": min(height, round(detection.y_min * sy)),
            "x_max": min(width, round(detection.x_max * sx)),
            "y_max": min(height, round(detection.y_max * sy)),
        }
    )


_registry: ModelRegistry | None = None
_registry_lock = threading.Lock()


def _default_registry() -> ModelRegistry:
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = ModelRegistry()
        return _registry


def predict(image: Image.Image | bytes | str | Path, model: str | None = None, **options: Any) -> PredictResponse:
    """Detect objects in an image, in this process.

    Args:
        image: a PIL image, the file's bytes, or a file path (a ``str`` is always a path; decode
            base64 text with :func:`~yolo_service.images.decode_base64` first, or pass a ``data:`` URL).
        model: a catalog name (``shapes``, ``yolo26n`` …); the default model when None.
        **options: ``confidence``, ``iou``, ``classes`` (names), ``max_detections``.

    Returns:
        The detections in the original image's pixels, the model name and the time taken.
    """
    return _default_registry().predict(image, model, **options)


def download(*names: str, settings: Settings | None = None) -> list[Path]:
    """Fetch the weights of ``names`` into the weights directory (with a progress bar)."""
    catalog = ModelCatalog(settings)
    return [catalog.download(name) for name in names]


def _import_ultralytics() -> None:
    """Import Ultralytics with its console handler bound to stderr.

    Its logger writes to the ``sys.stdout`` of import time (e.g. "Creating new
    Ultralytics Settings"); stdout belongs to the app (``yolo-service predict --json``).
    """
    if "ultralytics" not in sys.modules:
        with contextlib.redirect_stdout(sys.stderr):
            import ultralytics  # noqa: F401


def _configure_ultralytics(settings: Settings) -> None:
    """Tell Ultralytics, before it is imported: never pip-install at run time; no network offline."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    if settings.offline:
        os.environ.setdefault("YOLO_OFFLINE", "1")
