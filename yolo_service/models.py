"""The model catalog and registry: which models exist, which one is the default, and the loaded ones.

Names, never paths: a model is ``yolo26n`` (COCO, downloaded by Ultralytics on first
use), ``shapes`` (bundled with this package), or ``NAME`` for a ``NAME.pt`` file in the
weights directory. A name is checked before any file is touched, so no request can
open a file outside the weights directory.

How a model runs is the engines' business (:mod:`yolo_service.engines`): this module imports
them, never the reverse. Torch and Ultralytics are imported inside functions only: importing
this module is cheap, and the rest of the package (UI, client) works without them.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings, get_settings
from .engines import DetectorBase, ModelSpec, choose_engine, load_detector, torch_usable, weights_file
from .engines.ultralytics import configure_ultralytics, import_ultralytics
from .errors import ModelUnavailable, UnknownModel
from .schema import ImageInfo, ModelInfo, PredictResponse
from .shapes import SHAPE_CLASSES

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["COCO_MODELS", "ModelCatalog", "ModelRegistry", "download", "predict"]

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


class ModelCatalog:
    """The models this installation can serve, by name."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        configure_ultralytics(self.settings)

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
        name = _bare_name(name)
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
        return self._weights(self.spec(name)) is not None

    def state(self, name: str) -> str:
        """Whether the configured engine can serve ``name``, in a few words (``yolo-service models``).

        ``on disk``: the file this engine loads is there. Else what it takes: a COCO model downloads on
        first use (PyTorch, online); an exported-model engine needs ``yolo-service export NAME`` first.
        """
        spec = self.spec(name)
        if self._weights(spec) is not None:
            return "on disk"
        if not torch_usable(self.settings):
            return "not exported yet"
        if spec.source != "coco":
            return "weights missing"
        return "not available offline" if self.settings.offline else "downloads on first use"

    def _weights(self, spec: ModelSpec) -> Path | None:
        """The file the configured engine loads, if on disk: the ``.pt`` (or a user's ``.onnx``), or the export."""
        return weights_file(spec, self.settings)

    def engine(self, name: str) -> str:
        """The engine that serves (or would serve) ``name`` with these settings (``auto`` resolved)."""
        return choose_engine(self.spec(name), self.settings)

    def download(self, name: str) -> Path:
        """Make sure ``name``'s weights are on disk, downloading COCO weights if needed.

        Raises:
            ModelUnavailable: offline, or the download failed; the message says what to do.
        """
        spec = self.spec(name)
        if (found := self._weights(spec)) is not None:
            return found
        if not torch_usable(self.settings):  # an exported-model engine: no torch here to export with
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
        if not _online():  # before importing Ultralytics and torch (seconds) only to learn there is no network
            raise ModelUnavailable(
                f"could not download model {name!r} (no network: {DOWNLOAD_HOST} is unknown): {hint}"
            )
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        import_ultralytics()
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
            available_offline=self._weights(spec) is not None,
            default=default,
            engine=self.engine(name),
        )


DOWNLOAD_HOST = "github.com"  # where Ultralytics downloads COCO weights from


def _online() -> bool:
    """Whether the weights' host has an address: a DNS lookup, milliseconds, where importing torch takes seconds."""
    import socket

    try:
        socket.getaddrinfo(DOWNLOAD_HOST, 443)
    except OSError:
        return False
    return True


def _bare_name(name: str) -> str:
    """A model's name without the file suffix a user may add (``yolo26n.pt`` is ``yolo26n``)."""
    return name.removesuffix(".pt").removesuffix(".onnx")


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
        import_ultralytics()
        from ultralytics.utils import ROOT, YAML
    except ImportError:
        return None
    names = YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"]
    return [names[i] for i in sorted(names)]


class ModelRegistry:
    """Loads models lazily, once each, and keeps at most ``max_models`` of them; resolves the default model.

    A bounded cache: when a load would make more than ``max_models`` loaded, the least recently
    used model goes first (the default model always stays: it is what ``/ready`` promises). A
    model loads once however many threads ask for it at once, and one load runs at a time, so
    the memory of models is at most ``max_models`` of them plus the one loading. A model that
    goes is only forgotten here: requests using it finish with it, then its memory is freed.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.catalog = ModelCatalog(self.settings)
        self._detectors: OrderedDict[str, DetectorBase] = OrderedDict()  # least recently used first
        self._loading = threading.Lock()  # one load at a time, each model once
        self._guard = threading.Lock()
        self._default: str | None = None
        self.on_predict: list[Callable[[PredictResponse], None]] = []  # observers, e.g. the /metrics histograms

    def loaded(self, name: str | None) -> bool:
        """True while ``name`` (None: the default model, once resolved) is loaded in this process; reads no file."""
        return self._loaded_name(name) in self._detectors

    def _loaded_name(self, name: str | None) -> str:
        """The name a loaded model of this name is kept under (not checked against the catalog)."""
        if name is None:
            return self._default or ""
        return _bare_name(name)

    def detectors(self) -> dict[str, DetectorBase]:
        """The models loaded now, by name."""
        with self._guard:
            return dict(self._detectors)

    def get(self, name: str | None = None) -> DetectorBase:
        """The detector for ``name`` (the default model when None), loading it on first use."""
        if (detector := self._use(self._loaded_name(name))) is not None:  # loaded: no file to look at
            return detector
        spec = self.catalog.spec(name) if name else self.catalog.spec(self.default_model())
        if (detector := self._use(spec.name)) is not None:
            return detector
        with self._loading:  # one load at a time: a second thread asking for the same model finds it loaded
            if (detector := self._use(spec.name)) is not None:
                return detector
            self.catalog.download(spec.name)
            self._make_room(spec.name)
            started = time.perf_counter()
            detector = load_detector(spec, self.settings)
            logger.info("loaded model %s in %.2f s", spec.name, time.perf_counter() - started)
            with self._guard:
                self._detectors[spec.name] = detector
            return detector

    def _use(self, name: str) -> DetectorBase | None:
        """The loaded detector ``name``, now the most recently used; None if it is not loaded."""
        with self._guard:
            detector = self._detectors.get(name)
            if detector is not None:
                self._detectors.move_to_end(name)
            return detector

    def _make_room(self, name: str) -> None:
        """Before loading ``name``: unload the least recently used (never the default) until one more fits."""
        default = self._default if self._default is not None else self.settings.default_model
        with self._guard:
            for victim in [n for n in self._detectors if n not in (default, name)]:
                if len(self._detectors) < self.settings.max_models:
                    break
                del self._detectors[victim]
                logger.info(
                    "unloaded model %s (least recently used; at most %d stay loaded)", victim, self.settings.max_models
                )

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
            picture,
            confidence=confidence,
            iou=iou,
            classes=classes,
            max_detections=max_detections,
            original_size=original_size,
        )
        width, height = original_size or picture.size
        response = PredictResponse(
            model=detector.spec.name,
            engine=detector.engine,
            detections=detections,
            time=round(elapsed, 4),
            image=ImageInfo(width=width, height=height),
        )
        for observe in self.on_predict:
            observe(response)
        return response


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
