"""Exported-model engines: run a model's ONNX file with OpenVINO or ONNX Runtime, no torch.

``yolo-service export NAME`` writes ``NAME.onnx`` next to the weights (:mod:`.export`; that step
needs torch; the ``auto`` engine does it on a model's first load), ``--int8`` a quantized OpenVINO
IR ``NAME.int8.xml`` (served with ``YOLO_SERVICE_PRECISION=int8``). Serving either needs only NumPy,
Pillow and one runtime: the letterbox, the box decoding and the NMS below are plain NumPy, and
neither torch nor Ultralytics is imported here (tests/perf/test_engines.py runs this module with
both blocked).

Shapes: the exported input is dynamic, so an image is padded only to a multiple of the model's
stride (a 640×480 photo is a 640×480 input, not 640×640): a quarter less work for a 4:3 photo.

Threads: a :class:`CpuBudget` of one thread per usable CPU. A request alone runs on all of them
(OpenVINO's LATENCY hint, or ONNX Runtime's intra-op pool); when requests queue, each runs on
one thread of a second, throughput-shaped compilation (OpenVINO streams, or a one-thread ONNX
Runtime session), so concurrent requests share the CPUs and never oversubscribe them.

Runtimes: :func:`compile_openvino` and :func:`compile_onnxruntime` each turn the ONNX file into a
:class:`Compiled` model; :class:`ExportedDetector` is the same for both (the engine registry in
:mod:`yolo_service.engines` says which runtime an engine name uses).
"""

from __future__ import annotations

import ast
import atexit
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelUnavailable
from .base import DetectorBase, Found, ModelSpec, Query

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from ..config import Settings

__all__ = [
    "Compiled",
    "CpuBudget",
    "ExportedDetector",
    "Runtime",
    "compile_onnxruntime",
    "compile_openvino",
    "decode_output",
    "exported_file",
    "import_openvino",
    "letterbox",
    "nms",
]

logger = logging.getLogger(__name__)

PAD_VALUE = 114  # Ultralytics' letterbox grey
MAX_WH = 7680  # class offset for class-aware NMS in one pass (as Ultralytics)
MAX_NMS = 30000  # candidates kept for NMS, by confidence


def letterbox(
    image: Image.Image, size: tuple[int, int], stride: int | None = None, pixels: bool = False
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize ``image`` into ``size`` (height, width) keeping its aspect, pad with grey, as Ultralytics does.

    ``stride``: for a model with a dynamic input shape, pad only up to the next multiple of the
    stride (Ultralytics' rectangular inference): a 640×480 photo becomes a 640×480 input, not a
    640×640 one with a quarter of grey, and the model does a quarter less work.

    Returns the NCHW float32 tensor in 0..1 (``pixels``: the NHWC uint8 pixels, for a runtime that
    converts them inside the model, see :func:`compile_openvino`), the scale, and the (left, top) padding.
    """
    import numpy as np
    from PIL import Image

    height, width = size
    gain = min(height / image.height, width / image.width)
    new_w, new_h = round(image.width * gain), round(image.height * gain)
    if stride:
        width, height = new_w + (width - new_w) % stride, new_h + (height - new_h) % stride
    left, top = round((width - new_w) / 2 - 0.1), round((height - new_h) / 2 - 0.1)
    resized = image if (new_w, new_h) == image.size else image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    rgb = np.asarray(resized.convert("RGB") if resized.mode != "RGB" else resized)  # height × width × 3, uint8
    if pixels:  # a quarter of the bytes, no arithmetic: an image that needs no padding is not even copied
        if (new_w, new_h) == (width, height):
            return rgb[None], gain, (left, top)
        padded = np.full((1, height, width, 3), PAD_VALUE, dtype=np.uint8)
        padded[0, top : top + new_h, left : left + new_w] = rgb
        return padded, gain, (left, top)
    scale = np.float32(1 / 255)
    # One pass from the uint8 pixels into the padded float tensor (channels first): a third of the
    # time of building a padded image, converting it to floats, then transposing and scaling copies.
    if (new_w, new_h) == (width, height):
        tensor = np.empty((1, 3, height, width), dtype=np.float32)
    else:
        tensor = np.full((1, 3, height, width), np.float32(PAD_VALUE) * scale, dtype=np.float32)
    inside = tensor[0, :, top : top + new_h, left : left + new_w]
    np.multiply(rgb.transpose(2, 0, 1), scale, out=inside, casting="unsafe")
    return tensor, gain, (left, top)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression of ``boxes`` (xyxy), best score first."""
    import numpy as np

    order = scores.argsort()[::-1]
    x0, y0, x1, y1 = boxes.T
    areas = (x1 - x0).clip(0) * (y1 - y0).clip(0)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = (np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest])).clip(0)
        h = (np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest])).clip(0)
        inter = w * h
        overlap = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


def decode_output(
    output: np.ndarray,
    *,
    confidence: float,
    iou: float,
    class_ids: list[int] | None,
    max_detections: int,
    end_to_end: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (xyxy, input pixels), scores and class ids from a YOLO head's output.

    Two layouts: YOLO11's ``[1, 4 + classes, anchors]`` (xywh and per-class scores; NMS here),
    and end-to-end models' ``[1, max_det, 6]`` (YOLO26: xyxy, score, class; no NMS needed).
    ``end_to_end`` None: told apart by the shape.
    """
    import numpy as np

    pred = output[0]
    if end_to_end is None:
        end_to_end = pred.shape[1] == 6 and pred.shape[0] != 6
    if end_to_end:
        boxes, scores, classes = pred[:, :4], pred[:, 4], pred[:, 5].astype(np.int64)
        keep = scores > confidence
        if class_ids is not None:
            keep &= np.isin(classes, class_ids)
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        order = scores.argsort()[::-1][:max_detections]
        return boxes[order], scores[order], classes[order]
    # (4 + classes) x anchors. Each anchor's best score, along the rows as they lie in memory; the rest
    # (which class, the boxes) only for the few anchors above the threshold: a tenth of the time.
    scores = pred[4:].max(0)
    keep = scores > confidence
    pred, scores = pred[:, keep].T, scores[keep]  # kept anchors x (4 + classes)
    classes = pred[:, 4:].argmax(1)
    if class_ids is not None:
        wanted = np.isin(classes, class_ids)
        pred, scores, classes = pred[wanted], scores[wanted], classes[wanted]
    if len(scores) > MAX_NMS:
        top = scores.argsort()[::-1][:MAX_NMS]
        pred, scores, classes = pred[top], scores[top], classes[top]
    cx, cy, w, h = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kept = nms(boxes + classes[:, None] * MAX_WH, scores, iou)[:max_detections]
    return boxes[kept], scores[kept], classes[kept]


class CpuBudget:
    """Run inferences within ``cpus`` threads: alone on all of them, or on one each when requests queue.

    ``latency`` runs one inference on every thread; ``throughput`` (built in the background by
    ``throughput_factory``, so start-up does not wait for it) runs one inference on one thread
    and may be called from ``cpus`` threads at once.

    A request runs alone (``latency``) only if it finds the CPUs idle and nobody waiting. One that
    had to wait runs on one thread, even if the CPUs are free by then: waiting means others are
    coming (the server decodes the next image while this one runs), and ``cpus`` one-thread
    inferences side by side get more done than one-at-a-time inferences on every thread (on 2
    CPUs, 2 threads make one inference 1.6× faster, not 2×).
    """

    def __init__(
        self,
        cpus: int,
        latency: Callable[[Any], Any],
        throughput_factory: Callable[[], Callable[[Any], Any]] | None = None,
    ) -> None:
        self.cpus = cpus
        self._latency = latency
        self._throughput: Callable[[Any], Any] | None = None
        self._free = cpus
        self._waiting = 0
        self._cond = threading.Condition()
        self.runs = {"latency": 0, "throughput": 0}
        if cpus > 1 and throughput_factory is not None:
            builder = threading.Thread(target=self._build, args=(throughput_factory,), name="compile-throughput")
            builder.daemon = True
            builder.start()
            atexit.register(builder.join)  # a runtime killed mid-compile at exit aborts the process

    def _build(self, factory: Callable[[], Callable[[Any], Any]]) -> None:
        try:
            run = factory()
        except Exception:  # the latency path still serves every request; say why throughput is off
            logger.exception("the throughput compilation failed: requests run one at a time")
            return
        with self._cond:
            self._throughput = run
            self._cond.notify_all()

    def __call__(self, tensor: Any) -> Any:
        """Run one inference when the budget allows, on all threads if it is alone, else on one."""
        with self._cond:
            self._waiting += 1
            waited = False
            while True:
                if self._free == self.cpus and ((self._waiting == 1 and not waited) or self._throughput is None):
                    mode, cost, run = "latency", self.cpus, self._latency
                    break
                if self._throughput is not None and self._free >= 1:
                    mode, cost, run = "throughput", 1, self._throughput
                    break
                self._cond.wait()
                waited = True
            self._waiting -= 1
            self._free -= cost
            self.runs[mode] += 1
        try:
            return run(tensor)
        finally:
            with self._cond:
                self._free += cost
                self._cond.notify_all()


@dataclass(frozen=True)
class Compiled:
    """A model's ONNX file compiled by one runtime, warmed up and ready to run."""

    run: CpuBudget  # tensor in, the head's raw output out
    dims: list[int]  # the input's NCHW dimensions, -1 where dynamic
    metadata: dict[str, str]  # Ultralytics' metadata: names, imgsz, stride, end2end
    precision: str  # what the runtime computes in: f32, bf16 …
    pixels: bool = False  # it takes letterboxed uint8 NHWC pixels (see letterbox), not the float tensor


#: A runtime: compiles a model's ONNX file for the settings' threads (and precision).
Runtime = Callable[[Path, "Settings"], Compiled]


#: The files each runtime reads: OpenVINO reads its own IR too (the INT8 export writes one).
READS = {"openvino": (".onnx", ".xml"), "onnxruntime": (".onnx",)}


def exported_file(spec: ModelSpec, settings: Settings, engine: str) -> Path | None:
    """The model's exported file that ``engine`` can run at the settings' precision, or None if there is none yet."""
    int8 = settings.precision == "int8"
    readable = READS.get(engine, ())
    return next(
        (p for p in spec.exported_files(settings.weights_dir, int8) if p.suffix in readable and p.is_file()), None
    )


class ExportedDetector(DetectorBase):
    """A model's exported file on one runtime (OpenVINO or ONNX Runtime). ``predict`` is safe from many threads."""

    def __init__(self, spec: ModelSpec, settings: Settings, runtime: Runtime, engine: str) -> None:
        path = exported_file(spec, settings, engine)
        if path is None:
            int8 = settings.precision == "int8"
            raise ModelUnavailable(
                f"model {spec.name!r} has no {'INT8 ' if int8 else ''}exported file "
                f"{spec.exported_files(settings.weights_dir, int8)[0].name} for the {engine} engine: run "
                f"`yolo-service export {spec.name}{' --int8' if int8 else ''}` (needs the "
                f"{'export' if int8 else 'serve'} extra), or set YOLO_SERVICE_ENGINE=ultralytics"
            )
        self.spec = spec
        self.path = path
        self.settings = settings  # the default thresholds
        self.engine = engine
        self.threads = settings.threads
        try:
            compiled = runtime(path, settings)
        except ImportError as exc:
            raise ModelUnavailable(
                f"cannot load model {spec.name!r} on {self.engine}: {exc}; "
                "install the runtime extra: pip install 'yolo-service[runtime]'"
            ) from exc
        self._run = compiled.run
        self.pixels = compiled.pixels
        self.precision = compiled.precision
        self.names: dict[int, str] = _names(compiled.metadata, spec)
        self.end_to_end = {"True": True, "False": False}.get(compiled.metadata.get("end2end", ""))
        self.input_size, self.stride = _geometry(compiled.dims, compiled.metadata)
        if self.end_to_end:  # its head takes the top 300 anchors: a thin rectangle may have fewer
            self.stride = None
        self.imgsz = max(self.input_size)  # the runtime already ran it once (see compile_openvino, …)

    @property
    def inferences(self) -> dict[str, int]:
        """Inferences run so far: ``latency`` (alone, on every thread) and ``throughput`` (one thread each)."""
        return dict(self._run.runs)

    def infer(self, image: Image.Image, query: Query) -> Found:
        """Letterbox, run within the CPU budget, decode the head's output, undo the letterbox."""
        tensor, gain, (left, top) = letterbox(image, self.input_size, self.stride, pixels=self.pixels)
        output = self._run(tensor)
        boxes, scores, found = decode_output(
            output,
            confidence=query.confidence,
            iou=query.iou,
            class_ids=query.class_ids,
            max_detections=query.max_detections,
            end_to_end=self.end_to_end,
        )
        boxes = boxes - [left, top, left, top]
        boxes /= gain
        boxes = boxes.clip(0, [image.width, image.height, image.width, image.height])
        return Found(boxes.tolist(), scores.tolist(), found.tolist())


def import_openvino() -> Any:
    """``import openvino``, without the usage report it sends when nobody chose (the kit sends no analytics).

    Importing OpenVINO starts its telemetry (openvino-telemetry, Google Analytics): unless the user
    opted out with ``opt_in_out --opt_out`` (which writes ``~/intel/openvino_telemetry``), it assumes
    consent, writes a client id under ``~/intel`` and reports the import. OpenVINO turns its telemetry off
    in CI jobs (``CI=true``), so the import runs with ``CI=true`` when no choice is recorded; an explicit
    choice in that file is left to decide. Nothing is written and the environment is restored afterwards.
    The images record the opt-out itself for their user (backend/Dockerfile).
    """
    import sys

    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    consent_file = Path.home() / "intel" / "openvino_telemetry"
    saved = os.environ.get("CI")
    if not consent_file.is_file():
        os.environ["CI"] = "true"
    try:
        import openvino
    finally:
        if saved is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = saved
    return openvino


def compile_openvino(path: Path, settings: Settings) -> Compiled:
    """``path`` on OpenVINO's CPU plugin: a LATENCY compilation now, a THROUGHPUT one in the background."""
    import numpy as np

    ov = import_openvino()
    core = ov.Core()
    model = core.read_model(str(path))
    info = model.get_rt_info()  # ONNX metadata_props land under rt_info["framework"]
    metadata = {str(k): v.astype(str) for k, v in info["framework"].items()} if "framework" in info else {}
    dims = [d.get_length() if d.is_static else -1 for d in model.input(0).get_partial_shape()]  # NCHW
    model = _takes_pixels(model)
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": settings.threads}
    precision = settings.precision
    capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if precision == "bf16" and "BF16" not in capabilities:
        logger.warning("precision bf16 requested but this CPU has no bf16 (%s): using f32", capabilities)
        precision = "f32"
    # auto: OpenVINO's default, bf16 where the CPU has it, else f32; int8: the quantized graph says
    # which operations run in INT8, the rest (the head, the activations) in that default.
    if precision not in ("auto", "int8"):
        config["INFERENCE_PRECISION_HINT"] = precision
    cache = _cache_dir(settings)
    if cache:  # compiled blobs: the next start compiles in a third of the time
        core.set_property({"CACHE_DIR": str(cache)})
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    warm_up = _blank(dims, metadata, pixels=True)

    def latency(tensor: np.ndarray) -> np.ndarray:
        # share_inputs: OpenVINO reads the letterboxed tensor in place instead of copying its 5 MB first
        return np.asarray(request.infer({0: tensor}, share_inputs=True)[compiled.output(0)])

    def throughput_factory() -> Callable[[np.ndarray], np.ndarray]:
        streams = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": settings.threads}
        # Read again, not ``model``: the graph read at start-up is freed, and a cached blob is reused.
        parallel = core.compile_model(_takes_pixels(core.read_model(str(path))), "CPU", {**config, **streams})
        pool: queue.SimpleQueue[Any] = queue.SimpleQueue()  # OpenVINO infer requests
        for _ in range(settings.threads):
            pool.put(parallel.create_infer_request())

        def run(tensor: np.ndarray) -> np.ndarray:
            infer = pool.get()
            try:
                return np.array(infer.infer({0: tensor}, share_inputs=True)[parallel.output(0)])  # a copy: reused
            finally:
                pool.put(infer)

        run(warm_up)
        return run

    latency(warm_up)  # first, alone: the background compilation below would slow it down (and /ready)
    budget = CpuBudget(settings.threads, latency, throughput_factory)
    computed = "int8" if settings.precision == "int8" else compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    return Compiled(budget, dims, metadata, computed, pixels=True)


def _takes_pixels(model: Any) -> Any:
    """``model`` with OpenVINO's preprocessing in front: uint8 NHWC pixels in, converted and scaled in the graph.

    The conversion NumPy would do (a strided uint8 -> float32 pass over a 640×480×3 image, about
    1 ms) happens inside the model instead, fused into its first layer, and the request path hands
    over the decoded pixels as they are.
    """
    ov = import_openvino()
    from openvino.preprocess import PrePostProcessor

    steps = PrePostProcessor(model)
    steps.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    steps.input().model().set_layout(ov.Layout("NCHW"))
    steps.input().preprocess().convert_element_type(ov.Type.f32).scale(255.0)
    return steps.build()


def compile_onnxruntime(path: Path, settings: Settings) -> Compiled:
    """``path`` on ONNX Runtime's CPU provider: all threads for one request, one-thread sessions side by side."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle pool threads must not spin: other requests' decoding needs those CPUs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    dims = [d if isinstance(d, int) else -1 for d in session.get_inputs()[0].shape]  # names: dynamic
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    warm_up = _blank(dims, metadata)

    def latency(tensor: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: tensor})[0])

    def throughput_factory() -> Callable[[np.ndarray], np.ndarray]:
        options.intra_op_num_threads = 1  # called from several threads at once, one CPU each
        single = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        single.run(None, {name: warm_up})
        return lambda tensor: single.run(None, {name: tensor})[0]

    latency(warm_up)  # first, alone: the background session below would slow it down (and /ready)
    budget = CpuBudget(settings.threads, latency, throughput_factory)
    return Compiled(budget, dims, metadata, "int8" if settings.precision == "int8" else "f32")


def _geometry(dims: list[int], metadata: dict[str, str]) -> tuple[tuple[int, int], int | None]:
    """The input size (height, width) a model's images are letterboxed into, and its stride if the shape is dynamic.

    ``dims``: the input's NCHW dimensions, -1 where dynamic. A fixed shape is the size; a dynamic
    one (``yolo-service export`` writes those) takes the size it was exported at (``imgsz``) as the
    longest side and pads only to a multiple of the model's ``stride``, both from Ultralytics' metadata.
    """
    height, width = dims[2], dims[3]
    if height > 0 and width > 0:
        return (height, width), None
    try:
        size = ast.literal_eval(metadata.get("imgsz", "[640, 640]"))
        stride = int(metadata.get("stride", "32"))
        height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    except (ValueError, SyntaxError, TypeError, IndexError):
        imgsz, stride_text = metadata.get("imgsz"), metadata.get("stride")
        logger.warning("unreadable imgsz %r or stride %r: using 640 and 32", imgsz, stride_text)
        height, width, stride = 640, 640, 32
    return (height, width), stride


def _blank(dims: list[int], metadata: dict[str, str], pixels: bool = False) -> np.ndarray:
    """A grey input of the model's (largest) input shape, to warm it up: the float tensor, or uint8 ``pixels``."""
    import numpy as np

    (height, width), _ = _geometry(dims, metadata)
    if pixels:
        return np.full((1, height, width, 3), PAD_VALUE, dtype=np.uint8)
    return np.full((1, 3, height, width), PAD_VALUE / 255, dtype=np.float32)


def _cache_dir(settings: Settings) -> Path | None:
    """OpenVINO's compiled-model cache: a directory in the weights directory, if it is on and can be written."""
    if not settings.compile_cache:
        return None
    path = settings.weights_dir / "openvino-cache"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None


def _names(metadata: dict[str, str], spec: ModelSpec) -> dict[int, str]:
    """Class names from Ultralytics' ``names`` metadata, else the catalog's, else ``class0…``."""
    text = metadata.get("names")
    if text:
        try:
            return {int(k): str(v) for k, v in ast.literal_eval(text).items()}
        except (ValueError, SyntaxError):
            logger.warning("unreadable class names in %s: %r", spec.name, text[:80])
    if spec.classes:
        return dict(enumerate(spec.classes))
    return {}
