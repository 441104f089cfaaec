"""yolo-service: a YOLO detection library, API, UI and teaching kit.

The public API is below. Importing it needs neither torch nor Ultralytics: the model
code imports them on first use, so the frontend and the client stay light.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("yolo-service")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

from .client import Client
from .config import Settings, get_settings
from .drawing import color_for, draw_detections
from .errors import (
    BackendUnreachable,
    ImageTooLarge,
    InvalidImage,
    InvalidRequest,
    ModelUnavailable,
    NotReady,
    Overloaded,
    ServiceUnavailable,
    Unauthorized,
    UnknownModel,
    UnsupportedImageFormat,
    YoloServiceError,
)
from .images import decode_base64, encode_base64, encode_image, load_image
from .models import COCO_MODELS, ModelCatalog, ModelRegistry, download, predict
from .samples import sample_files, sample_photos
from .schema import Detection, ImageInfo, ModelInfo, PredictOptions, PredictRequest, PredictResponse, box_iou
from .shapes import SHAPE_CLASSES, Shape, draw_scene, random_scene, sample_scene, sample_scenes

__all__ = [
    "__version__",
    "BackendUnreachable",
    "box_iou",
    "Client",
    "COCO_MODELS",
    "color_for",
    "decode_base64",
    "Detection",
    "download",
    "draw_detections",
    "draw_scene",
    "encode_base64",
    "encode_image",
    "get_settings",
    "ImageInfo",
    "ImageTooLarge",
    "InvalidImage",
    "InvalidRequest",
    "load_image",
    "ModelCatalog",
    "ModelInfo",
    "ModelRegistry",
    "ModelUnavailable",
    "NotReady",
    "Overloaded",
    "predict",
    "PredictOptions",
    "PredictRequest",
    "PredictResponse",
    "random_scene",
    "sample_files",
    "sample_photos",
    "sample_scene",
    "sample_scenes",
    "ServiceUnavailable",
    "Settings",
    "Shape",
    "SHAPE_CLASSES",
    "Unauthorized",
    "UnknownModel",
    "UnsupportedImageFormat",
    "YoloServiceError",
]
