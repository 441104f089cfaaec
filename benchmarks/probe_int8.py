"""Would INT8 make the exported engine twice as fast as PyTorch? The probe that chose the kit's INT8 recipe.

What it found is now ``yolo-service export NAME --int8`` (yolo_service/engines/export.py: the head
and the SiLU fusion in float, OpenVINO's IR), judged by held-out mAP in ``yolo-service bench``
rather than by per-box IoU with PyTorch, which INT8 cannot meet by construction. Kept as the record.

The target: the default exported engine's in-process p50 at most half PyTorch's, at a
precision whose boxes still match PyTorch's (IoU >= 0.95 per confident box). On a CPU with bf16
(AVX512-BF16 or AMX), OpenVINO's default precision gets there; on one without, float32 does not.
This probe quantizes the same weights to INT8 with NNCF (post-training, calibrated on generated
scenes) and prints, per variant: OpenVINO's inference p50 on 1 and 2 threads at 640x480, the ratio
to PyTorch's whole in-process call, and how far its boxes move from PyTorch's.

Variants: ``f32`` (what the kit serves); ``int8`` (every convolution, the SiLU activations left in
float so that OpenVINO fuses them); ``int8-head-f32`` (the detection head in float as well, as
Ultralytics' own OpenVINO INT8 export does).

Run (NNCF comes with the ``export`` extra, part of ``dev``; it pulls scikit-learn and scipy):

    PYTHONPATH=. .venv/bin/python benchmarks/probe_int8.py [--calibration 100] [--scenes 30]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_SERVICE_OFFLINE", "1")

import numpy as np  # noqa: E402

from yolo_service import ModelRegistry, Settings, box_iou, random_scene, sample_scene  # noqa: E402
from yolo_service.engines.export import export_onnx  # noqa: E402
from yolo_service.engines.exported import decode_output, letterbox  # noqa: E402
from yolo_service.models import BUNDLED_DIR, ModelCatalog  # noqa: E402

CONFIDENT = 0.6  # as tests/perf/test_engines.py: weaker boxes may fall either side of the threshold


def quantize(onnx_path: Path, calibration: list[np.ndarray], head_in_float: bool):  # noqa: ANN201 (ov.Model)
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(onnx_path))
    names = []
    if head_in_float:  # the last module (the Detect head: box and class branches, DFL, decoding)
        ops = [op.get_friendly_name() for op in model.get_ordered_ops()]
        head = max((name.split("/")[1] for name in ops if name.startswith("/model.")), key=lambda m: int(m[6:]))
        names = [name for name in ops if name.startswith(f"/{head}/")]
    scope = nncf.IgnoredScope(names=names, types=["Multiply", "Subtract", "Sigmoid"], validate=False)
    return nncf.quantize(
        model, nncf.Dataset(calibration), preset=nncf.QuantizationPreset.MIXED, ignored_scope=scope,
        subset_size=len(calibration),
    )  # fmt: skip


def p50_ms_of(call, n: int = 40) -> float:  # noqa: ANN001
    """Median wall time of ``call()`` in ms, after five warm-ups."""
    for _ in range(5):
        call()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def p50_ms(compiled, tensor: np.ndarray) -> float:  # noqa: ANN001 (ov.CompiledModel)
    request = compiled.create_infer_request()
    return p50_ms_of(lambda: request.infer({0: tensor}, share_inputs=True))


def box_agreement(compiled, scenes, reference) -> tuple[int, float, int]:  # noqa: ANN001
    """Confident boxes compared (each side's against the other's), the worst IoU, and how many are below 0.95."""
    names = ["circle", "square", "triangle"]
    ious = []
    for image, expected in zip(scenes, reference, strict=True):
        tensor, gain, (left, top) = letterbox(image, (640, 640), stride=32)
        boxes, scores, classes = decode_output(
            compiled(tensor)[0], confidence=0.25, iou=0.7, class_ids=None, max_detections=300
        )
        found = [
            (tuple(((b - [left, top, left, top]) / gain).round()), names[int(c)], float(s))
            for b, s, c in zip(boxes, scores, classes, strict=True)
        ]
        for d in expected:
            if d.confidence >= CONFIDENT:
                ious.append(max((box_iou(d.box, b) for b, c, _ in found if c == d.class_name), default=0.0))
        for b, c, s in found:
            if s >= CONFIDENT:
                ious.append(max((box_iou(d.box, b) for d in expected if d.class_name == c), default=0.0))
    return len(ious), min(ious), sum(iou < 0.95 for iou in ious)


def main() -> None:
    import openvino as ov

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibration", type=int, default=100, help="generated scenes to calibrate on")
    parser.add_argument("--scenes", type=int, default=30, help="generated scenes to compare boxes on")
    args = parser.parse_args()

    weights = Path(tempfile.mkdtemp(prefix="probe-int8-"))
    try:
        shutil.copy(BUNDLED_DIR / "shapes.pt", weights / "shapes640.pt")  # the bundled weights, served at 640
        settings = Settings(weights_dir=weights, offline=True, replicas=1)  # one model copy on every CPU
        onnx_path = export_onnx(ModelCatalog(settings).spec("shapes640"), imgsz=640)
        rng = random.Random(11)
        scenes = [random_scene(rng, (rng.randint(240, 640), rng.randint(240, 640)))[0] for _ in range(args.scenes)]
        pytorch = ModelRegistry(settings)
        reference = [pytorch.predict_image(image, "shapes640").detections for image in scenes]
        image = sample_scene()[0]  # 640x480
        tensor = letterbox(image, (640, 640), stride=32)[0]
        pytorch_p50 = p50_ms_of(lambda: pytorch.predict_image(image, "shapes640"))  # Ultralytics' whole call
        calibration = [letterbox(sample_scene()[0], (640, 640), stride=32)[0] for _ in range(args.calibration)]
        variants = {"f32": ov.Core().read_model(str(onnx_path))}
        variants["int8"] = quantize(onnx_path, calibration, head_in_float=False)
        variants["int8-head-f32"] = quantize(onnx_path, calibration, head_in_float=True)

        core = ov.Core()
        cpus = Settings().threads
        print(f"\nPyTorch (Ultralytics) in-process p50, 640x480, {cpus} threads: {pytorch_p50:.1f} ms")
        print(f"{'variant':<15}{'1 thread':>10}{f'{cpus} threads':>11}{'/ PyTorch':>11}   boxes vs PyTorch")
        for name, model in variants.items():
            one = p50_ms(core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1}), tensor)
            compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
            many = p50_ms(compiled, tensor)
            count, worst, below = box_agreement(compiled, scenes, reference)
            print(
                f"{name:<15}{one:>8.1f}ms{many:>9.1f}ms{many / pytorch_p50:>10.2f}x   "
                f"{count} boxes, worst IoU {worst:.3f}, {below} below 0.95"
            )
        print("(inference alone; the kit's letterbox and decoding add 2-3 ms)")
    finally:
        shutil.rmtree(weights, ignore_errors=True)


if __name__ == "__main__":
    main()
