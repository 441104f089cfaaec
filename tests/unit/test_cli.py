"""The command line, run as the user runs it (a subprocess), offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from PIL import Image

from tests.helpers import executable
from yolo_service import encode_image, sample_scene

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def cli(*args: str, cwd=None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [executable("yolo-service"), *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=environment
    )


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "scene.png"
    path.write_bytes(encode_image(sample_scene()[0]))
    return path


def test_predict_prints_a_table_and_writes_the_annotated_image(scene_file, tmp_path):
    out = tmp_path / "annotated.png"
    result = cli("predict", str(scene_file), "--model", "shapes", "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("model shapes on openvino: 2 detections in ") and lines[0].endswith("(640x480)")
    assert lines[1].split() == ["class", "confidence", "x_min", "y_min", "x_max", "y_max"]
    rows = {line.split()[0]: [int(v) for v in line.split()[2:]] for line in lines[2:4]}
    assert set(rows) == {"square", "circle"}
    assert all(abs(a - b) <= 10 for a, b in zip(rows["square"], (100, 100, 300, 300), strict=True))
    assert Image.open(out).size == (640, 480)


def test_predict_json_is_the_api_response(scene_file):
    result = cli("predict", str(scene_file), "--model", "shapes", "--json", "--classes", "circle")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["model"] == "shapes" and [d["class_name"] for d in body["detections"]] == ["circle"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("predict", "missing.png"), 2, "error: No such file or directory: missing.png"),
        (("predict", "{scene}", "--model", "../etc/passwd"), 1, "error: invalid model name '../etc/passwd'"),
        (("download", "yolo26n"), 1, "error: model 'yolo26n' is not available offline: run `yolo-service download"),
        (("download", "nope"), 1, "error: unknown model 'nope'; choose one of:"),
    ],
)
def test_errors_are_one_clear_line(scene_file, args, code, message):
    result = cli(*(a.format(scene=scene_file) for a in args))
    assert result.returncode == code
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
    assert "Traceback" not in result.stderr


def test_models_lists_the_catalog():
    result = cli("models")
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.splitlines()[:-1]]
    assert names == ["yolo26n", "yolo26s", "yolo11n", "yolo11s", "yolo11m", "shapes"]
    assert "shapes      bundled  on disk" in result.stdout


def test_models_says_what_the_configured_engine_can_serve(tmp_path):
    """Under an exported-model engine a model is servable only with its NAME.onnx, whatever .pt is on disk."""
    from yolo_service.models import BUNDLED_DIR

    shutil.copy(BUNDLED_DIR / "shapes.pt", tmp_path / "mine.pt")
    env = {"YOLO_SERVICE_WEIGHTS_DIR": str(tmp_path), "YOLO_SERVICE_OFFLINE": "1"}
    states = {}
    for engine in ("ultralytics", "openvino"):
        result = cli("models", env={**env, "YOLO_SERVICE_ENGINE": engine})
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1].endswith(f"engine: {engine} (YOLO_SERVICE_ENGINE)")
        rows = {line.split()[0]: line for line in result.stdout.splitlines()[:-1]}
        states[engine] = {name: rows[name][21:45].strip() for name in ("yolo26n", "shapes", "mine")}
    assert states["ultralytics"] == {"yolo26n": "not available offline", "shapes": "on disk", "mine": "on disk"}
    assert states["openvino"] == {"yolo26n": "not exported yet", "shapes": "on disk", "mine": "not exported yet"}
    assert "yolo-service export NAME" in result.stderr
