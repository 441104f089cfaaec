"""Fixtures for the deployment tests: a stand-in COCO model, built once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

#: Ultralytics' own yolo26n architecture, random weights (seeded), the 80 COCO class names: what a user
#: with internet downloads, minus the training. Built in a subprocess, in a scratch directory.
STANDIN = """
import sys
import torch
from ultralytics import YOLO
from ultralytics.utils import ROOT, YAML

torch.manual_seed(0)
names = YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"]
model = YOLO("yolo26n.yaml")
model.model.names = {int(i): name for i, name in names.items()}
model.save(sys.argv[1])
"""


def build_standin(path: Path) -> Path:
    """Write a stand-in ``yolo26n.pt`` (80 COCO classes, random weights) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(Path(scratch) / "config")}
        subprocess.run(
            [sys.executable, "-c", STANDIN, str(path)], cwd=scratch, env=env, check=True, capture_output=True
        )
    assert path.stat().st_size > 1_000_000
    return path


def export_like_the_builder(weights: Path, out: Path) -> Path:
    """Run the backend Dockerfile's export step (its exact command and ENV) on ``weights``, into ``out``."""
    from tests.deploy.dockerfiles import Dockerfile, substitute
    from tests.helpers import ROOT

    dockerfile = Dockerfile(ROOT / "backend" / "Dockerfile")
    stage = dockerfile.stages["exported"]
    (command,) = [i.args for i in stage.instructions if i.keyword == "RUN" and "${MODEL}.onnx" in i.args]
    (script,) = [i.args.split() for i in stage.instructions if i.keyword == "COPY" and "export.py" in i.args]
    command = substitute(command, dockerfile.args("exported"))
    command = command.replace("/opt/yolo-service/weights", str(weights)).replace("/opt/yolo-service/onnx", str(out))
    env = {**os.environ, **dockerfile.env("exported")}
    with tempfile.TemporaryDirectory() as scratch:
        # As in the image: the module copied alone, with no kit to import (`import yolo_service` fails).
        shutil.copy2(ROOT / script[0], Path(scratch) / "export.py")
        command = command.replace(script[1], str(Path(scratch) / "export.py"))
        (Path(scratch) / "blocked" / "yolo_service").mkdir(parents=True)
        (Path(scratch) / "blocked" / "yolo_service" / "__init__.py").write_text("raise ImportError('not here')\n")
        env["PYTHONPATH"] = str(Path(scratch) / "blocked")
        env["YOLO_CONFIG_DIR"] = scratch
        env["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
        subprocess.run(["sh", "-c", command], cwd=scratch, env=env, check=True, capture_output=True, timeout=300)
    return out / "yolo26n.onnx"


@pytest.fixture(scope="session")
def coco_standin(tmp_path_factory) -> Path:
    """A weights directory holding only the stand-in ``yolo26n.pt`` (do not write into it)."""
    weights = tmp_path_factory.mktemp("coco-weights")
    build_standin(weights / "yolo26n.pt")
    return weights


@pytest.fixture(scope="session")
def coco_standin_exported(coco_standin, tmp_path_factory) -> Path:
    """A weights directory as the runtime image has it: only the exported ``yolo26n.onnx``."""
    build = tmp_path_factory.mktemp("builder-weights")
    shutil.copy2(coco_standin / "yolo26n.pt", build / "yolo26n.pt")
    runtime = tmp_path_factory.mktemp("runtime-weights")
    exported = export_like_the_builder(build, runtime)  # COPY --from=onnx /opt/yolo-service/onnx/ …/weights/
    assert sorted(p.name for p in runtime.iterdir()) == [exported.name]
    return runtime
