"""The detector's contract: what every engine shares, and the one step each engine writes.

:class:`DetectorBase` is a template method. Its :meth:`~DetectorBase.predict` fills in the
request's thresholds from the settings, turns class names into ids, times the inference, builds
the API's :class:`~yolo_service.schema.Detection` objects and maps their boxes back to the
original image's pixels, once for every engine. An engine implements :meth:`~DetectorBase.infer`
only: boxes, scores and class ids for one image, in that image's pixels.

No torch, no runtime here: this module is the engines' common ground, imported by all of them.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..errors import InvalidRequest
from ..schema import Detection

if TYPE_CHECKING:
    from PIL import Image

    from ..config import Settings

__all__ = ["DetectorBase", "Found", "ModelSpec", "Query"]


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

    def exported_files(self, weights_dir: Path, int8: bool = False) -> list[Path]:
        """Where the model's exported file may be, best first: next to its weights, then in ``weights_dir``.

        The second place holds the export of weights in a folder that cannot be written (the bundled
        model in a read-only install). Float: ``NAME.onnx``. INT8 (``yolo-service export NAME --int8``):
        the OpenVINO IR ``NAME.int8.xml`` (with its ``.bin``), or a quantized ``NAME.int8.onnx``.
        """
        names = [f"{self.name}.int8.xml", f"{self.name}.int8.onnx"] if int8 else [f"{self.name}.onnx"]
        folders = [self.path.parent] + ([weights_dir] if weights_dir.resolve() != self.path.parent.resolve() else [])
        return [folder / name for folder in folders for name in names]


@dataclass(frozen=True)
class Query:
    """What one prediction asks the engine for, every default already filled in from the settings."""

    confidence: float
    iou: float
    class_ids: list[int] | None  # None: every class
    max_detections: int


class Found(NamedTuple):
    """An engine's answer for one image: parallel lists, boxes as xyxy in the image's pixels."""

    boxes: list[list[float]]
    scores: list[float]
    class_ids: list[int]


class DetectorBase(ABC):
    """One loaded model on one engine. ``predict`` is safe to call from many threads at once.

    Subclasses set ``spec``, ``settings``, ``names`` (class id -> name), ``imgsz`` (the longest
    side of the model's input), ``engine`` (its name in the engine registry) and ``precision`` (what
    it computes in: f32, bf16, int8 …) and implement :meth:`infer`.
    """

    spec: ModelSpec
    settings: Settings
    names: dict[int, str]
    imgsz: int
    engine: str
    precision: str

    @abstractmethod
    def infer(self, image: Image.Image, query: Query) -> Found:
        """Run the model on an RGB image: the boxes (its pixels), scores and class ids that ``query`` keeps."""

    def predict(
        self,
        image: Image.Image,
        *,
        confidence: float | None = None,
        iou: float | None = None,
        classes: list[str] | None = None,
        max_detections: int | None = None,
        original_size: tuple[int, int] | None = None,
    ) -> tuple[list[Detection], float]:
        """Detect objects in an RGB image; return the detections and the seconds the engine took.

        Thresholds not given come from :class:`~yolo_service.config.Settings` (the one place defaults
        live). ``original_size``: the (width, height) of the image ``image`` was reduced from; the
        boxes come back in its pixels (else in ``image``'s). The time counts from the request reaching
        the engine, a wait for a free model copy or CPU included, to the boxes decoded.

        Raises:
            InvalidRequest: a class name the model does not have.
        """
        query = self.query(confidence, iou, classes, max_detections)
        started = time.perf_counter()
        found = self.infer(image, query)
        elapsed = time.perf_counter() - started
        detections = self.detections(*found)
        width, height = original_size or image.size
        if (width, height) != image.size:
            sx, sy = width / image.width, height / image.height
            detections = [d.scaled(sx, sy, bounds=(width, height)) for d in detections]
        return detections, elapsed

    @property
    def classes(self) -> list[str]:
        """Class names in id order."""
        return [self.names[i] for i in sorted(self.names)]

    @property
    def inferences(self) -> dict[str, int]:
        """Inferences run so far by mode (exported engines: ``latency``, ``throughput``); empty if not counted."""
        return {}

    def detections(self, boxes: list[list[float]], scores: list[float], classes: list[int]) -> list[Detection]:
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

    def query(
        self, confidence: float | None, iou: float | None, classes: list[str] | None, max_detections: int | None
    ) -> Query:
        """The request's :class:`Query`: each threshold not given from :class:`~yolo_service.config.Settings`.

        Raises:
            InvalidRequest: a class name the model does not have.
        """
        s = self.settings
        return Query(
            confidence=s.confidence if confidence is None else confidence,
            iou=s.iou if iou is None else iou,
            class_ids=self.class_ids(classes),
            max_detections=s.max_detections if max_detections is None else max_detections,
        )

    def class_ids(self, classes: list[str] | None) -> list[int] | None:
        """Ids of the class names ``classes``, each once (None: all classes).

        Never more ids than the model has classes: Ultralytics' NMS builds an anchors x classes
        matrix: a million names would cost 1.7 GB.

        Raises:
            InvalidRequest: names the model does not have; the message shows at most five of them.
        """
        if not classes:
            return None
        by_name = {name: i for i, name in self.names.items()}
        unique = list(dict.fromkeys(classes))
        unknown = [c for c in unique if c not in by_name]
        if unknown:
            shown = ", ".join(repr(name[:40]) for name in unknown[:5])
            more = f" and {len(unknown) - 5:,} more" if len(unknown) > 5 else ""
            ordered = self.classes
            raise InvalidRequest(
                f"model {self.spec.name!r} has no class {shown}{more}; "
                f"its classes are: {', '.join(ordered[:20])}{' …' if len(ordered) > 20 else ''}"
            )
        return [by_name[c] for c in unique]
