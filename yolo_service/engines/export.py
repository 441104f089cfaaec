"""Export a model's ``.pt`` weights to ONNX (``yolo-service export NAME``), for the exported-model engines.

Ultralytics does the export, so this step needs torch (the ``serve`` extra); serving the file
does not (:mod:`.exported`). Both are imported inside the functions only. The ``auto`` engine calls
:func:`export_onnx` on a model's first load; INT8 quantization is :mod:`.quantize`'s.

This module imports nothing from the kit at module level: the backend Dockerfile copies this one file
into its export stage and runs it as a script (``python export.py WEIGHTS.pt OUT.onnx``), so that
editing the rest of the kit does not re-run the export (only an edit of this file does).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import ModelSpec

__all__ = ["export_onnx", "export_weights"]

_ABSOLUTE_PATH = re.compile(r"(?<![\w:/])/(?:[\w.-]+/)+")
DEFAULT_IMGSZ = 640  # the COCO models' training size (ModelSpec's default)


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

    Raises:
        ModelUnavailable: the model has no ``.pt`` weights.
    """
    from ..errors import ModelUnavailable
    from .ultralytics import import_ultralytics

    if spec.path.suffix != ".pt":
        raise ModelUnavailable(f"model {spec.name!r} has no .pt weights to export ({spec.path.name})")
    import_ultralytics()
    return export_weights(spec.path, out or spec.exported, imgsz or spec.imgsz, simplify, nms_free)


def export_weights(
    weights: Path, out: Path, imgsz: int = DEFAULT_IMGSZ, simplify: bool = True, nms_free: bool = False
) -> Path:
    """Export the ``.pt`` file ``weights`` to the ONNX file ``out`` (what :func:`export_onnx` does for a spec)."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")  # never pip-install onnx at run time
    out.parent.mkdir(parents=True, exist_ok=True)
    # On a copy in a scratch folder next to ``out``: Ultralytics writes next to the weights it reads (the
    # bundled folder may be read-only), and the file appears at ``out`` whole, by one rename, so a server
    # starting meanwhile (the auto engine exports on first load) never reads half of it.
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as scratch:
        copy = Path(scratch) / weights.name
        shutil.copyfile(weights, copy)
        with contextlib.redirect_stdout(sys.stderr):  # Ultralytics prints its report; stdout is the command's
            from ultralytics import YOLO

            model = YOLO(str(copy), task="detect")
            options = {"nms": False} if nms_free else {}
            written = Path(model.export(format="onnx", imgsz=imgsz, dynamic=True, simplify=simplify, **options))
        _clean_metadata(written)
        os.replace(written, out)
    return out


def _clean_metadata(path: Path) -> None:
    """Make the file depend on the weights only: no absolute paths, no date, no intermediate shape hints.

    Absolute paths (directories of the exporting machine) and the export date are stripped from the
    metadata. The graph's ``value_info`` (shapes of intermediate tensors, optional hints that both
    runtimes infer again) came out different from one export of the same weights to the next (2400 or
    1701 entries): without it, the same weights give the same bytes, so a rebuilt image ships no new layer.
    """
    import onnx

    model = onnx.load(str(path))
    kept = [(p.key, _ABSOLUTE_PATH.sub("", p.value)) for p in model.metadata_props if p.key != "date"]
    del model.metadata_props[:]
    for key, value in kept:
        model.metadata_props.add(key=key, value=value)
    del model.graph.value_info[:]
    onnx.save(model, str(path))


def main(argv: list[str] | None = None) -> int:
    """``python export.py WEIGHTS.pt OUT.onnx [--imgsz N]``: the backend image's export step."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("weights", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--imgsz", type=int, default=DEFAULT_IMGSZ)
    args = parser.parse_args(argv)
    print(f"ok: {export_weights(args.weights, args.out, args.imgsz)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
