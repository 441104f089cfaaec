"""Export a model for the exported-model engines: ``.pt`` to ONNX, and ONNX to an INT8 OpenVINO IR.

``yolo-service export NAME`` (and the ``auto`` engine, on a model's first load) calls
:func:`export_onnx`: Ultralytics does the export, so it needs torch (the ``serve`` extra).
``yolo-service export NAME --int8`` then calls :func:`export_int8`: NNCF's post-training
quantization (the ``export`` extra, never in the runtime image). Serving either file needs
neither (:mod:`.exported`). Every heavy import is inside the function that needs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelUnavailable
from .base import ModelSpec
from .ultralytics import import_ultralytics

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["export_int8", "export_onnx"]

logger = logging.getLogger(__name__)

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

    The export runs on a copy of the weights in a scratch folder next to ``out``: Ultralytics writes
    next to the weights it reads (the bundled folder may be read-only), and the file appears at
    ``out`` whole, by one rename, so a server starting meanwhile never reads half of it.
    """
    import shutil

    os.environ.setdefault("YOLO_AUTOINSTALL", "false")  # never pip-install onnx at run time
    import_ultralytics()
    from ultralytics import YOLO

    if spec.path.suffix != ".pt":
        raise ModelUnavailable(f"model {spec.name!r} has no .pt weights to export ({spec.path.name})")
    target = out or spec.exported
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=target.parent) as scratch:
        weights = Path(scratch) / spec.path.name
        shutil.copyfile(spec.path, weights)
        model = YOLO(str(weights), task="detect")
        with contextlib.redirect_stdout(sys.stderr):  # Ultralytics prints its report; stdout is the command's
            options = {"nms": False} if nms_free else {}
            written = Path(
                model.export(format="onnx", imgsz=imgsz or spec.imgsz, dynamic=True, simplify=simplify, **options)
            )
        _clean_metadata(written)
        os.replace(written, target)
    return target


def export_int8(onnx: Path, calibration: Iterable[Image.Image], out: Path | None = None) -> Path:
    """Quantize a model's ONNX export to INT8 with NNCF; write the OpenVINO IR ``NAME.int8.xml`` (and ``.bin``).

    ``calibration``: images like those the model will see (a few hundred); each is letterboxed as
    the server letterboxes it, and NNCF measures the activations' ranges on them.

    What stays in float, because the held-out mAP drops without it: the detection head (its box
    regression and DFL decoding need more than 256 levels) and the SiLU activations' ``Sigmoid``
    and ``Multiply`` (in float OpenVINO fuses each into the convolution before it; quantized, they
    cost accuracy and time). The IR, not an ONNX file with QuantizeLinear/DequantizeLinear pairs:
    OpenVINO runs its own INT8 graph faster, and that is the runtime that serves it.
    """
    import nncf
    import openvino as ov

    from .exported import _geometry, letterbox

    logging.getLogger("nncf").setLevel(logging.WARNING)  # else a line per operation it leaves in float

    model = ov.Core().read_model(str(onnx))
    info = model.get_rt_info()
    metadata = {str(k): v.astype(str) for k, v in info["framework"].items()} if "framework" in info else {}
    dims = [d.get_length() if d.is_static else -1 for d in model.input(0).get_partial_shape()]
    size, stride = _geometry(dims, metadata)
    tensors = [letterbox(image.convert("RGB"), size, stride)[0] for image in calibration]
    if not tensors:
        raise ModelUnavailable("no calibration images: INT8 quantization needs a few hundred images like the real ones")
    quantized = nncf.quantize(
        model,
        nncf.Dataset(tensors),
        preset=nncf.QuantizationPreset.MIXED,
        ignored_scope=nncf.IgnoredScope(
            names=_head_operations(model), types=["Multiply", "Subtract", "Sigmoid"], validate=False
        ),
        subset_size=len(tensors),
    )
    target = out or onnx.with_name(onnx.name.removesuffix(".onnx") + ".int8.xml")
    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(target), compress_to_fp16=False)
    return target


def _head_operations(model: Any) -> list[str]:
    """The names of the operations of an Ultralytics model's last module (``/model.N/…``, the Detect head)."""
    names = [op.get_friendly_name() for op in model.get_ordered_ops()]
    modules = {name.split("/")[1] for name in names if name.startswith("/model.")}
    numbered = [m for m in modules if m[6:].isdigit()]
    if not numbered:
        logger.warning("no /model.N/ operations: the detection head cannot be told apart and is quantized too")
        return []
    head = max(numbered, key=lambda m: int(m[6:]))
    return [name for name in names if name.startswith(f"/{head}/")]


def _clean_metadata(path: Path) -> None:
    """Strip absolute paths (directories of the exporting machine) and the date from an ONNX file's metadata."""
    import onnx

    model = onnx.load(str(path))
    kept = [(p.key, _ABSOLUTE_PATH.sub("", p.value)) for p in model.metadata_props if p.key != "date"]
    del model.metadata_props[:]  # the export date too: the same weights give the same file
    for key, value in kept:
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
