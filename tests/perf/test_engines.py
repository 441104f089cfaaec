"""The exported-model engines (OpenVINO, ONNX Runtime) against the PyTorch reference, and without torch."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import assert_finds
from yolo_service import ModelRegistry, Settings, box_iou, random_scene, sample_scenes
from yolo_service.engines.exported import decode_output, letterbox, nms
from yolo_service.workshop.processes import TORCH_MODULES, import_blocker

EXPORTED = ("openvino", "onnxruntime")
CONFIDENT = 0.6  # detections this sure must be found by every engine; weaker ones may fall either side of 0.25
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def scenes():
    """The UI's sample scenes and a few random ones (fixed seed): known shapes on varied backgrounds."""
    named = [image for image, _ in sample_scenes().values()]
    rng = random.Random(7)
    return named + [random_scene(rng, size)[0] for size in ((640, 480), (480, 640), (800, 600), (320, 320))]


@pytest.fixture(scope="module")
def registries(weights_dir):
    return {
        engine: ModelRegistry(Settings(engine=engine, weights_dir=weights_dir, offline=True))
        for engine in ("ultralytics", *EXPORTED)
    }


@pytest.fixture(scope="module")
def reference(registries):
    return [registries["ultralytics"].predict_image(image, "shapes").detections for image in scenes()]


def assert_match(found, expected, min_iou=0.95):
    """Every confident box of each side has a box of the same class at IoU >= min_iou on the other side."""
    for ours, theirs in ((found, expected), (expected, found)):
        for d in ours:
            if d.confidence < CONFIDENT:
                continue
            best = max((box_iou(d.box, t.box) for t in theirs if t.class_name == d.class_name), default=0.0)
            assert best >= min_iou, f"{d} has no match (best IoU {best:.3f}) in {theirs}"


@pytest.mark.parametrize("engine", EXPORTED)
def test_exported_engine_matches_pytorch(registries, reference, engine):
    registry = registries[engine]
    detector = registry.get("shapes")
    assert detector.engine == engine and detector.classes == ["circle", "square", "triangle"]
    assert detector.precision in {"f32", "bf16"}
    confident = 0
    for image, expected in zip(scenes(), reference, strict=True):
        found = registry.predict_image(image, "shapes").detections
        assert_match(found, expected)
        confident += sum(d.confidence >= CONFIDENT for d in expected)
    assert confident >= 12  # the comparison covered many boxes


@pytest.mark.parametrize("engine", EXPORTED)
def test_exported_engine_options(registries, engine):
    registry = registries[engine]
    image, shapes = sample_scenes()["three shapes"]
    assert_finds(shapes, registry.predict_image(image, "shapes").detections)
    only = registry.predict_image(image, "shapes", classes=["circle"]).detections
    assert [d.class_name for d in only] == ["circle"]
    assert len(registry.predict_image(image, "shapes", max_detections=2).detections) == 2
    assert registry.predict_image(image, "shapes", confidence=0.999).detections == []


def test_letterbox_centres_and_scales():
    from PIL import Image

    tensor, gain, (left, top) = letterbox(Image.new("RGB", (640, 480), (255, 0, 0)), (320, 320))
    assert tensor.shape == (1, 3, 320, 320) and tensor.dtype == np.float32
    assert gain == 0.5 and (left, top) == (0, 40)
    assert tensor[0, :, 0, 0].tolist() == pytest.approx([114 / 255] * 3)  # padding
    assert tensor[0, :, 160, 160].tolist() == pytest.approx([1.0, 0.0, 0.0])  # the image


@pytest.mark.parametrize(
    ("size", "tensor_hw", "gain", "padding"),
    [
        ((640, 480), (480, 640), 1.0, (0, 0)),  # 4:3: no grey rows at all
        ((480, 640), (640, 480), 1.0, (0, 0)),
        ((1000, 700), (448, 640), 0.64, (0, 0)),  # 448 = 7 × 64: the stride divides it
        ((1000, 600), (384, 640), 0.64, (0, 0)),
        ((900, 500), (384, 640), 640 / 900, (0, 14)),  # 356 rows padded to 384, centred
        ((3000, 100), (32, 640), 640 / 3000, (0, 5)),  # a strip: one stride high
    ],
)
def test_letterbox_with_a_stride_pads_only_to_a_multiple_of_it(size, tensor_hw, gain, padding):
    """A dynamic-shape model's letterbox (Ultralytics' rectangular inference): the smallest input that fits."""
    from PIL import Image

    tensor, scale, offset = letterbox(Image.new("RGB", size, (0, 0, 255)), (640, 640), stride=32)
    assert tensor.shape == (1, 3, *tensor_hw)
    assert scale == pytest.approx(gain) and offset == padding
    assert tensor[0, :, tensor_hw[0] // 2, tensor_hw[1] // 2].tolist() == pytest.approx([0.0, 0.0, 1.0])


def test_exported_engine_serves_each_aspect_ratio_at_its_own_input_shape(registries):
    """The bundled ONNX file is dynamic: a 4:3 scene runs at 320×240, its boxes still on the shapes."""
    detector = registries["openvino"].get("shapes")
    assert detector.input_size == (320, 320) and detector.stride == 32
    for size in ((640, 480), (480, 640), (900, 300)):
        image, shapes = random_scene(random.Random(3), size)
        found = registries["openvino"].predict_image(image, "shapes").detections
        assert_finds(shapes, found)


def test_nms_and_decoding_of_both_head_layouts():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), iou=0.5).tolist() == [0, 2]
    # YOLO11 layout [1, 4 + classes, anchors]: xywh then per-class scores.
    head = np.zeros((1, 6, 3), dtype=np.float32)
    head[0, :4] = np.array([[5, 6, 25], [5, 6, 25], [10, 10, 10], [10, 10, 10]])
    head[0, 4:] = np.array([[0.9, 0.8, 0.1], [0.1, 0.1, 0.7]])
    out, scores, classes = decode_output(head, confidence=0.25, iou=0.5, class_ids=None, max_detections=10)
    assert out.tolist() == [[0, 0, 10, 10], [20, 20, 30, 30]] and classes.tolist() == [0, 1]
    # End-to-end layout [1, max_det, 6] (YOLO26): xyxy, score, class; no NMS.
    e2e = np.array([[[0, 0, 10, 10, 0.9, 2], [1, 1, 10, 10, 0.8, 2], [5, 5, 9, 9, 0.1, 0]]], dtype=np.float32)
    out, scores, classes = decode_output(e2e, confidence=0.25, iou=0.5, class_ids=None, max_detections=10)
    assert len(out) == 2 and classes.tolist() == [2, 2] and scores.tolist() == pytest.approx([0.9, 0.8])
    out, _, _ = decode_output(e2e, confidence=0.25, iou=0.5, class_ids=[0], max_detections=10)
    assert len(out) == 0


@pytest.mark.parametrize("engine", EXPORTED)
def test_exported_engine_runs_with_torch_and_ultralytics_unimportable(engine, weights_dir):
    code = import_blocker(TORCH_MODULES) + textwrap.dedent(
        f"""
        import json, sys
        from yolo_service import ModelRegistry, Settings, sample_scenes
        image, shapes = sample_scenes()["three shapes"]
        registry = ModelRegistry(Settings(engine={engine!r}, offline=True, weights_dir={str(weights_dir)!r}))
        result = registry.predict_image(image, "shapes")
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {{"torch", "ultralytics", "cv2"}})
        print(json.dumps({{"detections": [d.model_dump() for d in result.detections], "heavy": heavy}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["heavy"] == []
    from yolo_service import Detection

    assert_finds(sample_scenes()["three shapes"][1], [Detection(**d) for d in out["detections"]])


def test_exported_engine_without_onnx_file_says_how_to_export(tmp_path):
    from yolo_service import ModelUnavailable

    (tmp_path / "mine.pt").write_bytes(b"not used")
    registry = ModelRegistry(Settings(engine="openvino", weights_dir=tmp_path, offline=True))
    assert "mine" in registry.catalog.names() and not registry.catalog.available("mine")
    with pytest.raises(ModelUnavailable, match="yolo-service export mine"):
        registry.get("mine")


def test_cpu_budget_runs_alone_on_all_threads_and_queued_requests_on_one_each():
    import threading
    import time

    from yolo_service.engines.exported import CpuBudget

    in_use, peak, lock = [0], [0], threading.Lock()

    def runner(cost):
        def run(_):
            with lock:
                in_use[0] += cost
                peak[0] = max(peak[0], in_use[0])
            time.sleep(0.02)
            with lock:
                in_use[0] -= cost
            return cost

        return run

    budget = CpuBudget(2, runner(2), lambda: runner(1))
    deadline = time.monotonic() + 5
    while budget._throughput is None and time.monotonic() < deadline:  # built in the background
        time.sleep(0.01)
    assert budget(None) == 2  # alone: every thread
    threads = [threading.Thread(target=budget, args=(None,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] <= 2  # never more threads than CPUs
    assert budget.runs["throughput"] >= 4  # queued requests ran side by side, one thread each


def test_cpu_budget_runs_a_request_that_waited_on_one_thread():
    """Behind a request running alone, the next one waits; then it runs on one thread: a queue means load."""
    import threading
    import time

    from yolo_service.engines.exported import CpuBudget

    release = threading.Event()

    def alone(_):
        release.wait(5)
        return "latency"

    budget = CpuBudget(2, alone, lambda: lambda _: "throughput")
    deadline = time.monotonic() + 5
    while budget._throughput is None and time.monotonic() < deadline:
        time.sleep(0.01)
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", budget(None)))
    first.start()
    while budget._free != 0:  # the first request holds both CPUs
        time.sleep(0.005)
    second = threading.Thread(target=lambda: results.setdefault("second", budget(None)))
    second.start()
    while budget._waiting != 1:  # the second waits
        time.sleep(0.005)
    release.set()
    first.join()
    second.join()
    assert results == {"first": "latency", "second": "throughput"}
    assert budget(None) == "latency"  # the CPUs idle and nobody waiting: alone again


@pytest.mark.slow
def test_end_to_end_head_decodes_like_ultralytics(tmp_path, monkeypatch):
    """A YOLO26 stand-in (random weights) exported NMS-free: [1, 300, 6] boxes, the same as Ultralytics reads them."""
    from PIL import Image
    from ultralytics import YOLO

    from yolo_service import sample_scene

    monkeypatch.chdir(tmp_path)  # Ultralytics writes the export into the working directory
    exported = YOLO("yolo26n.yaml").export(format="onnx", imgsz=320, simplify=False, nms=False, dynamic=True)
    Path(exported).rename("stand26.onnx")
    registry = ModelRegistry(Settings(engine="onnxruntime", weights_dir=tmp_path, offline=True))
    detector = registry.get("stand26")
    assert detector.end_to_end is True
    # A dynamic end-to-end model is still fed squares: its top-300 head needs 300 anchors, and a
    # 320×32 strip (what the stride alone would give) has 210.
    assert detector.stride is None and detector.input_size == (320, 320)
    assert len(registry.predict_image(Image.new("RGB", (3000, 100)), "stand26", confidence=0.0).detections) == 300
    image = sample_scene()[0].crop((0, 0, 480, 480))  # square: Ultralytics feeds it the same 320×320 input
    ours = registry.predict_image(image, "stand26", confidence=0.0).detections[:20]
    theirs = YOLO(str(tmp_path / "stand26.onnx"), task="detect").predict(image, conf=0.0, imgsz=320, verbose=False)[0]
    boxes = list(zip(theirs.boxes.xyxy.tolist(), theirs.boxes.cls.tolist(), strict=True))
    assert len(ours) == 20
    for d in ours:
        best = max((box_iou(d.box, tuple(b)) for b, c in boxes if int(c) == d.class_id), default=0.0)
        assert best >= 0.95, d


def test_bundled_onnx_metadata_names_the_classes_and_no_machine_paths():
    import onnxruntime as ort

    from yolo_service.models import BUNDLED_DIR

    session = ort.InferenceSession(str(BUNDLED_DIR / "shapes.onnx"), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    assert metadata["names"] == "{0: 'circle', 1: 'square', 2: 'triangle'}" and metadata["imgsz"] == "[320, 320]"
    assert "date" not in metadata
    for value in metadata.values():
        assert not any(root in value for root in ("/tmp", "/work", "/home", "/root", "/Users")), value
    assert metadata["stride"] == "32"
    assert [tuple(i.shape) for i in session.get_inputs()] == [("batch", 3, "height", "width")]  # dynamic


def test_input_geometry_of_fixed_dynamic_and_unreadable_models():
    from yolo_service.engines.exported import _geometry

    assert _geometry([1, 3, 320, 256], {}) == ((320, 256), None)  # fixed: that size, no stride
    assert _geometry([-1, 3, -1, -1], {"imgsz": "[640, 640]", "stride": "32"}) == ((640, 640), 32)
    assert _geometry([-1, 3, -1, -1], {"imgsz": "480", "stride": "64"}) == ((480, 480), 64)
    assert _geometry([-1, 3, -1, -1], {"imgsz": "[oops", "stride": "?"}) == ((640, 640), 32)  # Ultralytics' defaults


def test_auto_serves_the_bundled_model_on_openvino_without_importing_torch(weights_dir):
    """The default engine, auto, with torch installed: the ONNX file exists, so torch is never imported."""
    code = textwrap.dedent(
        f"""
        import json, sys
        from yolo_service import ModelRegistry, Settings, sample_scenes
        registry = ModelRegistry(Settings(offline=True, weights_dir={str(weights_dir)!r}))
        result = registry.predict_image(sample_scenes()["three shapes"][0], "shapes")
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {{"torch", "ultralytics", "cv2"}})
        print(json.dumps({{"engine": result.engine, "count": len(result.detections), "heavy": heavy}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"engine": "openvino", "count": 3, "heavy": []}


def test_auto_exports_a_pt_once_on_first_load_and_keeps_the_file(tmp_path):
    from yolo_service.models import BUNDLED_DIR

    (tmp_path / "mine.pt").write_bytes((BUNDLED_DIR / "shapes.pt").read_bytes())
    settings = Settings(weights_dir=tmp_path, offline=True)
    registry = ModelRegistry(settings)
    assert registry.catalog.engine("mine") == "openvino" and registry.catalog.state("mine") == "on disk"
    detector = registry.get("mine")
    assert (detector.engine, detector.path) == ("openvino", tmp_path / "mine.onnx")
    image, shapes = sample_scenes()["three shapes"]
    assert_finds(shapes, registry.predict_image(image, "mine").detections)
    written = (tmp_path / "mine.onnx").stat().st_mtime_ns
    assert ModelRegistry(settings).get("mine").engine == "openvino"  # a second process: the file, no export
    assert (tmp_path / "mine.onnx").stat().st_mtime_ns == written
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("openvino-cache")) == [
        "mine.onnx",
        "mine.pt",
    ]  # no scratch folder left behind


def stale_export(folder: Path) -> Path:
    """``mine.pt`` (the bundled weights) and a ``mine.onnx`` written an hour before it: retrained since."""
    from yolo_service.models import BUNDLED_DIR

    weights, onnx = folder / "mine.pt", folder / "mine.onnx"
    weights.write_bytes((BUNDLED_DIR / "shapes.pt").read_bytes())
    onnx.write_bytes((BUNDLED_DIR / "shapes.onnx").read_bytes())
    hour_ago = weights.stat().st_mtime - 3600
    os.utime(onnx, (hour_ago, hour_ago))
    return onnx


def test_auto_exports_again_a_pt_newer_than_its_export(tmp_path, caplog):
    onnx = stale_export(tmp_path)
    old = onnx.stat().st_mtime
    with caplog.at_level("INFO", logger="yolo_service.engines"):
        detector = ModelRegistry(Settings(weights_dir=tmp_path, offline=True)).get("mine")
    assert (detector.engine, detector.path) == ("openvino", onnx)
    assert onnx.stat().st_mtime > old + 3000  # written now
    lines = [r.getMessage() for r in caplog.records if r.name == "yolo_service.engines"]
    assert lines == [
        f"model mine: exported again (the .pt is newer than its last export) to {onnx}, served by openvino from now on"
    ]


def test_a_forced_engine_serves_an_export_older_than_its_pt_and_says_how_to_redo_it(tmp_path, caplog):
    onnx = stale_export(tmp_path)
    old = onnx.stat().st_mtime
    with caplog.at_level("WARNING", logger="yolo_service.engines"):
        registry = ModelRegistry(Settings(weights_dir=tmp_path, offline=True, engine="onnxruntime"))
        image, shapes = sample_scenes()["three shapes"]
        assert_finds(shapes, registry.predict_image(image, "mine").detections)
    assert onnx.stat().st_mtime == old  # served as it is, not exported behind the user's back
    lines = [r.getMessage() for r in caplog.records if r.name == "yolo_service.engines"]
    assert lines == [
        f"model mine: {onnx} is older than mine.pt, an export of earlier weights? Served as it is; "
        "`yolo-service export mine` exports it again"
    ]


def test_auto_falls_back_to_pytorch_with_one_line_when_the_export_fails(tmp_path, caplog):
    from yolo_service.models import BUNDLED_DIR

    (tmp_path / "mine.pt").write_bytes((BUNDLED_DIR / "shapes.pt").read_bytes())
    (tmp_path / "mine.onnx").mkdir()  # a folder where the export must go: the rename into place fails
    with caplog.at_level("WARNING", logger="yolo_service.engines"):
        detector = ModelRegistry(Settings(weights_dir=tmp_path, offline=True)).get("mine")
    assert detector.engine == "ultralytics"
    lines = [r.getMessage() for r in caplog.records if r.name == "yolo_service.engines"]
    assert len(lines) == 1 and lines[0].startswith("model mine runs on PyTorch: its ONNX export to ")


def test_forced_engine_wins_over_auto(weights_dir):
    registry = ModelRegistry(Settings(engine="ultralytics", weights_dir=weights_dir, offline=True))
    assert registry.get("shapes").engine == "ultralytics"
    assert registry.predict_image(sample_scenes()["three shapes"][0], "shapes").engine == "ultralytics"


def test_int8_without_its_file_says_how_to_make_it(tmp_path):
    from yolo_service import ModelUnavailable

    registry = ModelRegistry(Settings(weights_dir=tmp_path, offline=True, precision="int8"))
    with pytest.raises(ModelUnavailable, match=r"yolo-service export shapes --int8"):
        registry.get("shapes")
    assert list(tmp_path.glob("*.onnx")) == []  # INT8 is never made implicitly, nor a float export in its place


def test_int8_export_is_served_and_finds_the_shapes(tmp_path):
    """NNCF on a few generated scenes (a real calibration uses hundreds): the IR loads, says int8, and still detects."""
    pytest.importorskip("nncf")
    from yolo_service.engines.quantize import export_int8
    from yolo_service.models import BUNDLED_DIR
    from yolo_service.workshop.accuracy import calibration_scenes

    path = export_int8(BUNDLED_DIR / "shapes.onnx", calibration_scenes(24), tmp_path / "shapes.int8.xml")
    assert path.is_file() and path.with_suffix(".bin").is_file()
    registry = ModelRegistry(Settings(weights_dir=tmp_path, offline=True, precision="int8"))
    detector = registry.get("shapes")
    assert (detector.engine, detector.precision, detector.path) == ("openvino", "int8", path)
    assert detector.classes == ["circle", "square", "triangle"]  # the metadata survived quantization
    image, shapes = sample_scenes()["three shapes"]
    assert_finds(shapes, registry.predict_image(image, "shapes").detections)
