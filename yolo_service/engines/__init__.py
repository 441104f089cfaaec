"""The engines: what runs a model's weights, one registry from engine name to loader.

An engine is a :class:`~yolo_service.engines.base.DetectorBase` subclass (it writes the one
inference step; thresholds, class filters, timing, detections and box mapping are the base's)
plus an entry in :data:`ENGINES`. ``load_detector`` is the only place an engine is chosen.

- :mod:`.base`: the model spec and the detector's contract;
- :mod:`.ultralytics`: PyTorch through Ultralytics, the reference (any ``.pt``);
- :mod:`.exported`: a model's ONNX file on OpenVINO or ONNX Runtime, no torch;
- :mod:`.export`: ``.pt`` to ONNX (needs torch).

Imports run one way: the catalog (:mod:`yolo_service.models`) imports this package, which imports
the core (settings, errors, schema) and never the catalog, the API or the workshop's helpers.
Nothing heavy at import: each engine imports its runtime when it loads a model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import ENGINE_NAMES, EngineName, Settings
from .base import DetectorBase, ModelSpec
from .exported import ExportedDetector, compile_onnxruntime, compile_openvino
from .ultralytics import UltralyticsDetector

__all__ = ["ENGINES", "ENGINE_NAMES", "DetectorBase", "Engine", "ModelSpec", "load_detector"]


@dataclass(frozen=True)
class Engine:
    """One engine as the registry knows it: how it loads a model and which file it serves."""

    load: Callable[[ModelSpec, Settings], DetectorBase]
    weights: Callable[[ModelSpec], Path]  # the file this engine loads for a model
    torch: bool  # needs torch and Ultralytics: it can download COCO weights and export; without, it cannot


def _pt_weights(spec: ModelSpec) -> Path:
    return spec.path  # the .pt (or a user's .onnx, which Ultralytics runs too)


def _exported_weights(spec: ModelSpec) -> Path:
    return spec.exported


#: Engine name (``YOLO_SERVICE_ENGINE``) -> engine; a new engine goes here and in config.EngineName.
ENGINES: dict[EngineName, Engine] = {
    "ultralytics": Engine(UltralyticsDetector, _pt_weights, torch=True),
    "openvino": Engine(functools.partial(ExportedDetector, runtime=compile_openvino), _exported_weights, torch=False),
    "onnxruntime": Engine(
        functools.partial(ExportedDetector, runtime=compile_onnxruntime), _exported_weights, torch=False
    ),
}
if tuple(ENGINES) != ENGINE_NAMES:  # the settings validate against one list, the registry serves another
    raise ImportError(f"the engine registry {tuple(ENGINES)} and config.ENGINE_NAMES {ENGINE_NAMES} differ")


def load_detector(spec: ModelSpec, settings: Settings) -> DetectorBase:
    """A detector for ``spec`` on the configured engine (``settings.engine``).

    Raises:
        ModelUnavailable: the engine's runtime is not installed, or the model's file for it is missing.
    """
    return ENGINES[settings.engine].load(spec, settings)
