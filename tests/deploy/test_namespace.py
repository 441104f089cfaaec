"""The backend image's CMD, run like a container without Docker: no network, read-only code, uid 10001.

``unshare --user --map-root-user --net --pid --fork`` gives a fresh user, network and PID namespace
(only ``lo``, no route anywhere). Inside, the image's CMD runs with the image's ENV (parsed from the
Dockerfile stage: the default ``runtime`` target, with torch and Ultralytics made unimportable,
and the ``torch`` target), as uid 10001 in a nested user namespace (no capabilities), from a read-only copy
of the package, with baked weights in a read-only weights directory. A client in the same namespace
(tests/deploy/namespace_client.py) checks that it becomes ready, predicts, refuses to download, and
exits within 10 s of SIGTERM. Skipped, with the reason, where unshare is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.dockerfiles import Dockerfile
from tests.helpers import ARTIFACTS, ROOT, assert_finds
from yolo_service import Detection, encode_base64, sample_scene
from yolo_service.workshop.deploy import CLOUD_RUN_SHUTDOWN_GRACE_SECONDS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
BACKEND = Dockerfile(ROOT / "backend" / "Dockerfile")
UNSHARE = ["unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child"]


def namespaces_refused() -> str | None:
    """Why this machine cannot run the test (None when it can)."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (util-linux / iproute2)"
    probe = subprocess.run(
        [*UNSHARE, "sh", "-c", "ip link set lo up && unshare --user --map-user=10001 true"], capture_output=True
    )
    if probe.returncode != 0:
        return f"unprivileged user/network/PID namespaces are refused here: {probe.stderr.decode().strip()}"
    return None


def make_read_only(path: Path) -> Path:
    """Remove every write bit under ``path``."""
    for item in [path, *path.rglob("*")]:
        item.chmod(item.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return path


def read_only_copy(source: Path, dest: Path) -> Path:
    """Copy ``source`` to ``dest`` without caches, read-only."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return make_read_only(dest)


@pytest.fixture(scope="module")
def refused():
    reason = namespaces_refused()
    if reason:
        pytest.skip(reason)


def block_imports(directory: Path, *modules: str) -> Path:
    """A directory that, first on PYTHONPATH, makes ``modules`` unimportable (as in an image without them)."""
    for module in modules:
        (directory / module).mkdir(parents=True)
        (directory / module / "__init__.py").write_text(f"raise ImportError('{module} is not in this image')\n")
    return directory


@pytest.fixture
def baked_weights(request, tmp_path):
    """The weights directory each target's image has: the .pt for torch, the builder's .onnx for runtime."""
    source = request.getfixturevalue("coco_standin" if request.param == "torch" else "coco_standin_exported")
    weights = tmp_path / "weights"
    shutil.copytree(source, weights)
    return make_read_only(weights)


@pytest.mark.parametrize(("target", "baked_weights"), [("runtime",) * 2, ("torch",) * 2], indirect=["baked_weights"])
def test_backend_image_runs_offline_from_read_only_code(refused, target, baked_weights, tmp_path):
    image_env = BACKEND.env(target)
    package = read_only_copy(ROOT / "yolo_service", tmp_path / "app" / "yolo_service")
    weights = baked_weights
    baked = sorted(p.name for p in weights.iterdir())
    pythonpath = [str(package.parent)]
    if target == "runtime":  # the runtime image has neither torch nor Ultralytics: prove it needs neither
        pythonpath.insert(0, str(block_imports(tmp_path / "blocked", "torch", "torchvision", "ultralytics", "cv2")))
    config_dir = tmp_path / "config"  # Ultralytics' settings: baked by the image, written here on first run
    config_dir.mkdir()
    env = {
        **image_env,
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": ":".join(pythonpath),
        "HOME": str(tmp_path),
        "YOLO_SERVICE_WEIGHTS_DIR": str(weights),
        "YOLO_CONFIG_DIR": str(config_dir),
    }
    assert env["PORT"] == "8000"  # the image's own port: the namespace has nothing else listening
    image, shapes = sample_scene()
    ARTIFACTS.mkdir(exist_ok=True)
    config = {
        "argv": json.loads(BACKEND.last("CMD", target).args),
        "env": env,
        "python": sys.executable,
        "cwd": str(package.parent),
        "image": encode_base64(image),
        "log": str(ARTIFACTS / f"namespace-backend-{target}.log"),
        "ready_timeout": 150,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    os.chmod(tmp_path, 0o755)
    run = subprocess.run(
        [*UNSHARE, sys.executable, str(Path(__file__).parent / "namespace_client.py"), str(tmp_path / "config.json")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    log = Path(config["log"]).read_text()[-3000:]

    assert result["interfaces"] == ["lo"], result  # no network at all
    module, uid, writable = result["package"]
    assert module == str(package / "__init__.py") and uid == "10001" and writable == "False", result["package"]
    assert "ready_after" in result, log
    default = result["default"]  # the baked COCO model is the default, offline
    assert default["default"] and default["loaded"] and default["available_offline"], default
    status, body = result["predict"]
    assert status == 200, body
    assert_finds(shapes, [Detection.model_validate(d) for d in body["detections"]])
    status, body = result["not_baked"]  # a model not in the image: refused at once, never downloaded
    assert status == 503 and body["error"] == "ModelUnavailable" and "yolo26n, shapes" in body["detail"], body
    # A clean shutdown: uvicorn drains, then re-raises SIGTERM (exit status -15), as it does outside too.
    # (Not asserted on the log: its last lines go through a queue that a SIGTERM exit may not flush.)
    stopped = {key: result[key] for key in ("returncode", "exit_after_sigterm")}
    assert result["returncode"] in (0, -signal.SIGTERM), (stopped, log)
    assert result["exit_after_sigterm"] < CLOUD_RUN_SHUTDOWN_GRACE_SECONDS, result
    assert sorted(p.name for p in weights.iterdir()) == baked  # nothing written beside the weights
    print(f"{target}: ready after {result['ready_after']} s, exit {result['exit_after_sigterm']} s after SIGTERM")
