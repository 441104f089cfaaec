"""The COCO path, exercised offline with a stand-in yolo26n.pt (Ultralytics' architecture, random weights).

No COCO weights can be downloaded here, so the stand-in (tests/deploy/conftest.py) takes their place
in a temporary weights directory, and the tests check what a user with internet gets: yolo26n is
the default as soon as its file is there (offline too), /models/yolo26n lists the 80 COCO classes,
a class filter by COCO name is accepted, and the Dockerfile's download step leaves an existing file
alone (run with no network at all, so a download attempt would fail the step).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.deploy.dockerfiles import Dockerfile, substitute
from tests.helpers import ROOT, api_server
from yolo_service import encode_base64, sample_scene
from yolo_service.config import Settings
from yolo_service.models import ModelRegistry

BACKEND = Dockerfile(ROOT / "backend" / "Dockerfile")
NO_NETWORK = ["unshare", "--user", "--map-root-user", "--net"]


def test_yolo26n_becomes_the_default_when_its_file_is_there_even_offline(coco_standin, tmp_path):
    with_file = ModelRegistry(Settings(weights_dir=coco_standin, offline=True, default_model=None))
    assert with_file.default_model() == "yolo26n"
    assert with_file.catalog.available("yolo26n")
    without = ModelRegistry(Settings(weights_dir=tmp_path, offline=True, default_model=None))
    assert without.default_model() == "shapes"  # and without it, the bundled model


@pytest.fixture(scope="module")
def coco_server(coco_standin):
    env = {"YOLO_SERVICE_WEIGHTS_DIR": str(coco_standin), "YOLO_SERVICE_OFFLINE": "1"}
    with api_server(env) as server:
        yield server


@pytest.mark.slow
def test_models_yolo26n_lists_the_80_coco_classes(coco_server):
    info = httpx.get(coco_server.url + "/models/yolo26n", timeout=30).json()
    assert info["default"] and info["loaded"] and info["available_offline"] and info["source"] == "coco"
    assert len(info["classes"]) == 80 and info["classes"][:3] == ["person", "bicycle", "car"]


@pytest.mark.slow
def test_a_class_filter_by_coco_name_is_accepted(coco_server):
    image, _ = sample_scene()
    body = {"image": encode_base64(image), "classes": ["person", "dog"]}
    response = httpx.post(coco_server.url + "/predict", json=body, timeout=60)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["model"] == "yolo26n"  # the default
    assert {d["class_name"] for d in result["detections"]} <= {"person", "dog"}  # random weights: maybe none
    unknown = httpx.post(coco_server.url + "/predict", json={**body, "classes": ["circle"]}, timeout=60)
    assert unknown.status_code == 422 and "person" in unknown.json()["detail"]  # COCO has no circle


def download_step() -> str:
    """The weights stage's download command, then the Ultralytics settings step of torch-deps (before ``chown``)."""
    (run,) = [ins.args for ins in BACKEND.stages["weights"].instructions if "attempt_download_asset" in ins.args]
    (deps,) = [ins.args for ins in BACKEND.stages["torch-deps"].instructions if "settings.update" in ins.args]
    settings = next(part for part in deps.split("&&") if "settings.update" in part).strip()
    return substitute(run, BACKEND.args("weights")) + " && " + settings


def run_download_step(weights: Path, config: Path) -> subprocess.CompletedProcess:
    """The Dockerfile's download step as a shell command, in a network namespace with no network."""
    command = download_step().replace("/opt/yolo-service/weights", str(weights))
    env = {**os.environ, "YOLO_CONFIG_DIR": str(config), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("YOLO_OFFLINE", None)  # as in the image's build: nothing stops a download but the missing network
    return subprocess.run([*NO_NETWORK, "sh", "-c", command], env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def no_network():
    if shutil.which("unshare") is None or subprocess.run([*NO_NETWORK, "true"], capture_output=True).returncode:
        pytest.skip("unshare --user --net is refused here: cannot prove the step stays offline")


@pytest.mark.slow
def test_the_dockerfile_download_step_is_a_no_op_when_the_file_is_there(no_network, coco_standin, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy2(coco_standin / "yolo26n.pt", weights / "yolo26n.pt")
    before = (weights / "yolo26n.pt").stat().st_mtime_ns, hashlib.sha256((weights / "yolo26n.pt").read_bytes()).digest()
    result = run_download_step(weights, tmp_path / "config")
    assert result.returncode == 0, result.stderr[-2000:]
    after = (weights / "yolo26n.pt").stat().st_mtime_ns, hashlib.sha256((weights / "yolo26n.pt").read_bytes()).digest()
    assert after == before and sorted(p.name for p in weights.iterdir()) == ["yolo26n.pt"]
    settings = next((tmp_path / "config").rglob("settings.json")).read_text()
    assert '"sync": false' in settings  # and Ultralytics' analytics are off in the image
    # Without the file, the same step tries to download, and fails for want of a network: it is not a no-op then.
    (weights / "yolo26n.pt").unlink()
    missing = run_download_step(weights, tmp_path / "config")
    assert missing.returncode != 0 and "Download failure" in missing.stderr, missing.stderr[-2000:]


@pytest.mark.slow
def test_the_export_step_is_reproducible(coco_standin, coco_standin_exported, tmp_path):
    """The same weights give the same .onnx bytes: a rebuild of the image ships no new model layer."""
    from tests.deploy.conftest import export_like_the_builder

    build = tmp_path / "build"
    build.mkdir()
    shutil.copy2(coco_standin / "yolo26n.pt", build / "yolo26n.pt")
    again = export_like_the_builder(build, tmp_path / "onnx")
    first = coco_standin_exported / "yolo26n.onnx"
    assert hashlib.sha256(again.read_bytes()).hexdigest() == hashlib.sha256(first.read_bytes()).hexdigest()
