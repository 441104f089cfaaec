"""Fixtures for the deployment tests: a stand-in COCO model, built once per session."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def coco_standin(tmp_path_factory) -> Path:
    """A weights directory holding only the stand-in ``yolo26n.pt`` (do not write into it)."""
    weights = tmp_path_factory.mktemp("coco-weights")
    build_standin(weights / "yolo26n.pt")
    return weights
