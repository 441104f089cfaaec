"""The engines: what runs a model's weights, one registry from engine name to loader.

An engine is a :class:`~yolo_service.engines.base.DetectorBase` subclass (it writes the one
inference step; thresholds, class filters, timing, detections and box mapping are the base's)
plus an entry in :data:`ENGINES`. ``load_detector`` is the only place an engine is chosen.

``YOLO_SERVICE_ENGINE=auto`` (the default) serves each model on the fastest engine that can serve
it here (:func:`choose_engine`): OpenVINO, else ONNX Runtime, when the model's ONNX file exists or
can be made (its ``.pt`` exported once, on first load, when torch is installed); PyTorch only when
neither can. Any other value forces that engine.

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
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import ENGINE_NAMES, EngineName, Settings
from ..errors import ModelUnavailable
from .base import DetectorBase, ModelSpec
from .exported import ExportedDetector, compile_onnxruntime, compile_openvino, exported_file
from .ultralytics import UltralyticsDetector

__all__ = [
    "ENGINES",
    "ENGINE_NAMES",
    "DetectorBase",
    "Engine",
    "ModelSpec",
    "choose_engine",
    "export_target",
    "load_detector",
    "torch_usable",
    "weights_file",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Engine:
    """One engine as the registry knows it: how it loads a model, which file it serves, what it imports."""

    load: Callable[[ModelSpec, Settings], DetectorBase]
    weights: Callable[[ModelSpec, Settings], Path | None]  # the file this engine loads for a model, None: none yet
    torch: bool  # needs torch and Ultralytics: it can download COCO weights and export; without, it cannot
    modules: tuple[str, ...]  # what it imports to run

    @property
    def installed(self) -> bool:
        """Its runtime can be imported here (looked up, not imported: no second of start-up spent)."""
        return all(_importable(module) for module in self.modules)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a blocked module (a torch-free test) raises instead of answering None
        return False


def _pt_weights(spec: ModelSpec, settings: Settings) -> Path | None:
    return spec.path if spec.path.is_file() else None  # the .pt (or a user's .onnx, which Ultralytics runs too)


#: Engine name (``YOLO_SERVICE_ENGINE``) -> engine; a new engine goes here and in config.EngineName.
#: The exported engines come in the order ``auto`` prefers them: the faster first.
ENGINES: dict[EngineName, Engine] = {
    "ultralytics": Engine(UltralyticsDetector, _pt_weights, True, ("torch", "ultralytics")),
    "openvino": Engine(
        functools.partial(ExportedDetector, runtime=compile_openvino, engine="openvino"),
        functools.partial(exported_file, engine="openvino"),
        False,
        ("openvino", "numpy"),
    ),
    "onnxruntime": Engine(
        functools.partial(ExportedDetector, runtime=compile_onnxruntime, engine="onnxruntime"),
        functools.partial(exported_file, engine="onnxruntime"),
        False,
        ("onnxruntime", "numpy"),
    ),
}
if tuple(ENGINES) != ENGINE_NAMES:  # the settings validate against one list, the registry serves another
    raise ImportError(f"the engine registry {tuple(ENGINES)} and config.ENGINE_NAMES {ENGINE_NAMES} differ")
EXPORTED = tuple(name for name, engine in ENGINES.items() if not engine.torch)
_EXPORT_MODULES = ("torch", "ultralytics", "onnx")


def torch_usable(settings: Settings) -> bool:
    """Whether the configured engine may use torch here: to download COCO weights, to export, or to serve."""
    if settings.engine == "auto":
        return ENGINES["ultralytics"].installed
    return ENGINES[settings.engine].torch


def _can_export(spec: ModelSpec, settings: Settings) -> bool:
    """Whether ``auto`` can make the ONNX file: a ``.pt`` and torch are here, and the float model is asked for."""
    return (
        settings.precision != "int8"  # INT8 takes calibration images: `yolo-service export NAME --int8`, never implicit
        and spec.path.suffix == ".pt"
        and (spec.path.is_file() or spec.source == "coco")  # COCO weights are downloaded before the first load
        and all(_importable(m) for m in _EXPORT_MODULES)
    )


#: Seconds a ``.pt`` may be newer than its export before the export counts as one of earlier weights:
#: files copied together land a moment apart, a retrained model minutes after its last export.
STALE_AFTER = 2.0


def _older_than_weights(exported: Path, spec: ModelSpec) -> bool:
    """Whether ``exported`` is older than the model's ``.pt`` (retrained since it was exported).

    Not for the bundled model: the package ships both files, made together; their checkout times
    say nothing about which came first.
    """
    if spec.source == "bundled" or spec.path.suffix != ".pt" or not spec.path.is_file():
        return False
    return spec.path.stat().st_mtime - exported.stat().st_mtime > STALE_AFTER


def choose_engine(spec: ModelSpec, settings: Settings) -> EngineName:
    """The engine that serves ``spec``: the forced one, or for ``auto`` the fastest that can serve it here.

    ``auto``: the first exported engine (OpenVINO, then ONNX Runtime) that is installed and has the
    model's file, or could have it once the ``.pt`` is exported; else PyTorch. With
    ``YOLO_SERVICE_PRECISION=int8``, an exported engine always (PyTorch has no INT8 model).
    """
    if settings.engine != "auto":
        return settings.engine
    installed = [name for name in EXPORTED if ENGINES[name].installed]
    for name in installed:
        if ENGINES[name].weights(spec, settings) is not None:
            return name
    if installed and (_can_export(spec, settings) or settings.precision == "int8"):
        return installed[0]  # INT8 asked and no INT8 file: its loader says how to make one (never PyTorch's float)
    return "ultralytics"


def weights_file(spec: ModelSpec, settings: Settings) -> Path | None:
    """The file that will serve ``spec`` with these settings, if it is on disk (None: not yet)."""
    if settings.engine != "auto":
        return ENGINES[settings.engine].weights(spec, settings)
    engine = choose_engine(spec, settings)
    return ENGINES[engine].weights(spec, settings) or ENGINES["ultralytics"].weights(spec, settings)


def export_target(spec: ModelSpec, settings: Settings) -> Path:
    """Where a model's ONNX export goes: next to its weights, or in the weights directory.

    The weights directory for the bundled model (the package's folder holds what it ships, nothing
    made later) and for weights in a folder this process cannot write.
    """
    beside, cache = spec.exported_files(settings.weights_dir)[0], settings.weights_dir / f"{spec.name}.onnx"
    return beside if spec.source != "bundled" and os.access(beside.parent, os.W_OK) else cache


def load_detector(spec: ModelSpec, settings: Settings) -> DetectorBase:
    """A detector for ``spec`` on the engine :func:`choose_engine` picks.

    ``auto`` with an exported engine and no ONNX file yet: the ``.pt`` is exported first (once: the
    file is kept, see :func:`export_target`), and again when the ``.pt`` is newer than its export
    (retrained). If that fails, the model is served by PyTorch, and one log line says why. An export
    older than its ``.pt`` that cannot be made again here (a forced engine, no torch, INT8) is served
    with a warning that says how to export it again.

    Raises:
        ModelUnavailable: the engine's runtime is not installed, or the model's file for it is missing.
    """
    engine = choose_engine(spec, settings)
    exporting = settings.engine == "auto" and engine != "ultralytics" and _can_export(spec, settings)
    current = ENGINES[engine].weights(spec, settings) if engine in EXPORTED else None
    stale = current is not None and _older_than_weights(current, spec)
    if stale and not exporting:
        again = f"yolo-service export {spec.name}" + (" --int8" if settings.precision == "int8" else "")
        logger.warning(
            "model %s: %s is older than %s, an export of earlier weights? Served as it is; `%s` exports it again",
            spec.name,
            current,
            spec.path.name,
            again,
        )
    if exporting and (current is None or stale):
        from .export import export_onnx

        target = export_target(spec, settings)
        try:
            export_onnx(spec, target)
            why = "exported again (the .pt is newer than its last export)" if stale else "exported"
            logger.info("model %s: %s to %s, served by %s from now on", spec.name, why, target, engine)
        except Exception as exc:  # Ultralytics and torch raise many types; PyTorch still serves, and the log says why
            logger.warning("model %s runs on PyTorch: its ONNX export to %s failed (%s)", spec.name, target, exc)
            engine = "ultralytics"
    if settings.engine == "auto" and engine == "ultralytics" and not ENGINES[engine].installed:
        files = spec.exported_files(settings.weights_dir, settings.precision == "int8")
        if any(p.is_file() for p in files):
            raise ModelUnavailable(
                f"cannot load model {spec.name!r}: no engine is installed here, neither OpenVINO nor ONNX Runtime "
                "for its ONNX file, nor torch: install the runtime extra: pip install 'yolo-service[runtime]' "
                "(or PyTorch's, pip install 'yolo-service[serve]')"
            )
        names = "/".join(p.name for p in files)
        raise ModelUnavailable(
            f"model {spec.name!r} has no exported file ({names}) and torch is not installed to serve or export it: "
            f"run `yolo-service export {spec.name}` where the serve extra is installed and copy the file here, "
            "or install the serve extra: pip install 'yolo-service[serve]'"
        )
    return ENGINES[engine].load(spec, settings)
