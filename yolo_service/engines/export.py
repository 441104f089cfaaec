"""Export a model's ``.pt`` weights to ONNX (``yolo-service export NAME``), for the exported-model engines.

Ultralytics does the export, so this step needs torch (the ``serve`` extra); serving the file
does not (:mod:`.exported`). Both are imported inside :func:`export_onnx` only.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

from ..errors import ModelUnavailable
from .base import ModelSpec
from .ultralytics import import_ultralytics

__all__ = ["export_onnx"]

_ABSOLUTE_PATH = re.compile(r"(?<![\w:/])/(?:[\w.-]+/)+")


def export_onnx(
    spec: ModelSpec, out: Path | None = None, imgsz: int | None = None, simplify: bool = True, nms_free: bool = False
) -> Path:
    """Export ``spec``'s ``.pt`` weights to ONNX with Ultralytics (needs torch); return the file.

    The input shape is dynamic: each image is padded only to a multiple of the stride
    (:func:`~yolo_service.engines.exported.letterbox`), so a 4:3 photo costs three quarters of a
    square one; ``imgsz`` is the longest side. The file goes next to the weights (``NAME.onnx``)
    unless ``out`` is given. Absolute paths of the exporting machine (e.g. the training data's
    location) are removed from its metadata.
    ``nms_free``: export a YOLO26 model's one-to-one head (``[1, 300, 6]``, no NMS to run).
    """
    import shutil

    os.environ.setdefault("YOLO_AUTOINSTALL", "false")  # never pip-install onnx at run time
    import_ultralytics()
    from ultralytics import YOLO

    if spec.path.suffix != ".pt":
        raise ModelUnavailable(f"model {spec.name!r} has no .pt weights to export ({spec.path.name})")
    target = out or spec.exported
    model = YOLO(str(spec.path), task="detect")
    with contextlib.redirect_stdout(sys.stderr):  # Ultralytics prints its report; stdout is the command's
        options = {"nms": False} if nms_free else {}
        written = Path(
            model.export(format="onnx", imgsz=imgsz or spec.imgsz, dynamic=True, simplify=simplify, **options)
        )
    _clean_metadata(written)
    if written.resolve() != target.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(written, target)
    return target


def _clean_metadata(path: Path) -> None:
    """Strip absolute paths (directories of the exporting machine) and the date from an ONNX file's metadata."""
    import onnx

    model = onnx.load(str(path))
    kept = [(p.key, _ABSOLUTE_PATH.sub("", p.value)) for p in model.metadata_props if p.key != "date"]
    del model.metadata_props[:]  # the export date too: the same weights give the same file
    for key, value in kept:
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
