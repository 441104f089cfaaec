"""INT8 quantization of an exported model (``yolo-service export NAME --int8``): NNCF, into an OpenVINO IR.

NNCF comes with the ``export`` extra, never with the runtime image: quantizing is a build step,
serving the result needs OpenVINO only (:mod:`.exported`, ``YOLO_SERVICE_PRECISION=int8``). NNCF
and OpenVINO are imported inside :func:`export_int8` only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelUnavailable
from .exported import _geometry, import_openvino, letterbox

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["export_int8"]

logger = logging.getLogger(__name__)


def export_int8(onnx: Path, calibration: Iterable[Image.Image], out: Path | None = None) -> Path:
    """Quantize a model's ONNX export to INT8 with NNCF; write the OpenVINO IR ``NAME.int8.xml`` (and ``.bin``).

    ``calibration``: images like those the model will see (a few hundred); each is letterboxed as
    the server letterboxes it, and NNCF measures the activations' ranges on them.

    What stays in float, because the held-out mAP drops without it: the detection head (its box
    regression and DFL decoding need more than 256 levels) and the SiLU activations' ``Sigmoid``
    and ``Multiply`` (in float OpenVINO fuses each into the convolution before it; quantized, they
    cost accuracy and time). The IR, not an ONNX file with QuantizeLinear/DequantizeLinear pairs:
    OpenVINO runs its own INT8 graph faster, and that is the runtime that serves it.

    Raises:
        ModelUnavailable: no calibration image.
    """
    ov = import_openvino()  # before NNCF imports it: no usage report
    import nncf

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
