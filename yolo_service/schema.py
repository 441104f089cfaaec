"""The API contract: what ``/predict`` and friends take and return (pydantic models).

Wire-compatible with the workshop's backend: ``{"model", "image"}`` in,
``{"model", "detections": [{"x_min", "y_min", "x_max", "y_max", "class_name",
"confidence"}], "time"}`` out; every field added since is optional on input and
extra on output. No torch here: the frontend and the client import it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Detection",
    "ErrorResponse",
    "FieldError",
    "HealthResponse",
    "ImageInfo",
    "ModelInfo",
    "PredictOptions",
    "PredictRequest",
    "PredictResponse",
    "ReadyResponse",
    "box_iou",
]

Box = tuple[float, float, float, float]


class Detection(BaseModel):
    """One detected object: a box in the original image's pixels, its class and confidence."""

    x_min: int = Field(description="left edge, pixels from the image's left")
    y_min: int = Field(description="top edge, pixels from the image's top")
    x_max: int = Field(description="right edge (exclusive)")
    y_max: int = Field(description="bottom edge (exclusive)")
    class_name: str
    class_id: int
    confidence: float = Field(ge=0.0, le=1.0)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x_min, y_min, x_max, y_max)``."""
        return (self.x_min, self.y_min, self.x_max, self.y_max)

    def scaled(self, sx: float, sy: float, bounds: tuple[int, int] | None = None) -> Detection:
        """This detection with its box scaled by ``sx`` and ``sy``, within ``bounds`` (width, height) if given.

        One mapping between an image's sizes: a reduced image's boxes back to the original's pixels
        (the detectors), or the original's boxes onto a smaller annotated copy (the API).
        """
        width, height = bounds or (None, None)
        return self.model_copy(
            update={
                "x_min": _within(self.x_min * sx, width),
                "y_min": _within(self.y_min * sy, height),
                "x_max": _within(self.x_max * sx, width),
                "y_max": _within(self.y_max * sy, height),
            }
        )


def _within(value: float, limit: int | None) -> int:
    return round(value) if limit is None else min(limit, round(value))


class ImageInfo(BaseModel):
    """Size of the image as the model saw it (after EXIF orientation)."""

    width: int
    height: int


def _example(schema: dict[str, Any]) -> None:
    """A small generated scene as the /docs example, so "Try it out" returns real boxes."""
    import base64
    import io

    from .shapes import Shape, draw_scene

    image = draw_scene(
        [Shape("square", 20, 20, 80, 80, (220, 30, 30)), Shape("circle", 100, 40, 150, 90, (30, 70, 220))],
        size=(160, 120),
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    schema["examples"] = [{"image": base64.b64encode(buffer.getvalue()).decode(), "model": "shapes"}]


class PredictOptions(BaseModel):
    """How to predict: the model and its thresholds. ``None`` means the server's default (its settings).

    Both predict routes validate their options with this one model: ``/predict`` as JSON
    fields next to ``image``, ``/predict/file`` as form fields.
    """

    # Strict: `"annotate": 0` or `"iou": false` is a client bug to report (422), not to guess at.
    # Finite: NaN, Infinity and 1e309 (which JSON parsers read as infinity) are refused, not compared.
    model_config = ConfigDict(strict=True, allow_inf_nan=False, protected_namespaces=())

    model: str | None = Field(None, description="a name from GET /models; None: the server's default model")
    confidence: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="minimum confidence of a detection; None: the server's YOLO_SERVICE_CONFIDENCE",
    )
    iou: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="IoU threshold of non-maximum suppression; None: the server's YOLO_SERVICE_IOU",
    )
    classes: list[str] | None = Field(None, description="keep only these class names; None: all")
    max_detections: int | None = Field(
        None, ge=1, le=1000, description="at most this many detections; None: the server's YOLO_SERVICE_MAX_DETECTIONS"
    )
    annotate: bool = Field(
        False, description="also return the image with the boxes drawn, as base64 JPEG (longest side bounded)"
    )


class PredictRequest(PredictOptions):
    """A prediction request: a base64 image and, optionally, the model and its thresholds."""

    model_config = ConfigDict(json_schema_extra=_example)

    image: str = Field(
        min_length=1, description="the image file (PNG, JPEG, …) as base64; a data: URL prefix is accepted"
    )

    @property
    def options(self) -> PredictOptions:
        """The options without the image."""
        return PredictOptions.model_validate(self.model_dump(exclude={"image"}))


class PredictResponse(BaseModel):
    """The detections, the model that made them and its processing time in seconds."""

    model_config = ConfigDict(protected_namespaces=())

    model: str
    engine: str | None = Field(None, description="the engine that ran the model: openvino, onnxruntime or ultralytics")
    detections: list[Detection] = []
    time: float = Field(description="the model's processing time, seconds")
    image: ImageInfo
    annotated_image: str | None = Field(
        None,
        description="base64 JPEG with the boxes drawn, when asked; longest side at most YOLO_SERVICE_ANNOTATE_MAX_SIDE",
    )
    request_id: str | None = Field(
        None, description="this request's id, as in the X-Request-ID header: its entries in the server's log carry it"
    )


class HealthResponse(BaseModel):
    """Liveness: the process serves."""

    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    """Readiness: the default model is loaded."""

    model_config = ConfigDict(protected_namespaces=())

    status: Literal["ready"] = "ready"
    default_model: str
    # Optional, like every field added to an answer: a client of this version still reads an older server's.
    engine: str | None = Field(None, description="the engine serving the default model: openvino, onnxruntime …")
    precision: str | None = Field(None, description="what that engine computes in: f32, bf16, int8 …")


class ModelInfo(BaseModel):
    """What the service knows about one model."""

    model_config = ConfigDict(protected_namespaces=())

    name: str
    source: Literal["coco", "bundled", "local"]
    description: str
    classes: list[str] | None = Field(None, description="class names; None for a local model not yet loaded")
    loaded: bool
    available_offline: bool = Field(description="its weights are on disk, so it loads with no internet")
    default: bool = False
    engine: str | None = Field(None, description="its engine (openvino, onnxruntime, ultralytics), chosen or in use")
    precision: str | None = Field(
        None, description="what its engine computes in (f32, bf16, int8 …); None until loaded"
    )


class FieldError(BaseModel):
    """One problem with one field of a request that does not match the schema."""

    loc: list[str | int] = Field(description="where: e.g. ['body', 'confidence']")
    msg: str
    type: str = Field(description="pydantic's error type, e.g. finite_number, missing")


class ErrorResponse(BaseModel):
    """Every error answer: a message for people, the error class's name for programs, and the request's id."""

    detail: str = Field(description="what went wrong and what to do")
    error: str = Field(description="the error's class in yolo_service.errors, e.g. InvalidImage")
    fields: list[FieldError] | None = Field(None, description="schema errors only: one entry per problem")
    request_id: str | None = Field(
        None, description="this request's id, as in the X-Request-ID header: its entries in the server's log carry it"
    )


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x_min, y_min, x_max, y_max)`` boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
