"""Package data is shipped to every user: it must not embed paths of the machine that built it."""

from __future__ import annotations

import io
import json
import re
import tempfile
import zipfile
from pathlib import Path

import pytest

import yolo_service
from tests.helpers import ROOT

PACKAGE = Path(yolo_service.__file__).parent
# Directories that only exist on a build machine, and this machine's own.
MACHINE_PATHS = sorted(
    {"/work/", "/root/", "/tmp/", "/home/", "/Users/", f"{ROOT}/", f"{Path.home()}/", f"{tempfile.gettempdir()}/"},
    key=len,
    reverse=True,  # the longest first, so a match names the whole known prefix
)
PATTERN = re.compile(b"|".join(re.escape(path.encode()) for path in MACHINE_PATHS))


def machine_paths_in(name: str, data: bytes) -> list[str]:
    """Every absolute build-machine path in ``data``, looking inside zip archives (torch checkpoints) too."""
    found = [f"{name}: {match.group().decode()}…" for match in PATTERN.finditer(data)]
    if data.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                found += machine_paths_in(f"{name}!{member}", archive.read(member))
    return found


def package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_the_scan_finds_a_path_inside_a_checkpoint(tmp_path):
    """The check can fail: a zip member holding this machine's path is found."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("shapes/data.pkl", f"data: {ROOT}/build/data.yaml".encode())
    assert machine_paths_in("x.pt", buffer.getvalue()) == [f"x.pt!shapes/data.pkl: {ROOT}/…"]


@pytest.mark.parametrize("path", package_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_package_file_embeds_a_machine_path(path):
    assert machine_paths_in(path.name, path.read_bytes()) == []


def test_the_bundled_checkpoint_holds_what_inference_needs_only():
    import torch

    checkpoint = torch.load(PACKAGE / "weights" / "shapes.pt", map_location="cpu", weights_only=False)
    assert sorted(checkpoint) == ["license", "model", "train_args", "version"]
    assert checkpoint["train_args"] == {"task": "detect", "imgsz": 320}
    assert checkpoint["model"].args == {"task": "detect", "imgsz": 320}
    record = json.loads((PACKAGE / "weights" / "shapes.json").read_text())
    assert record["ultralytics_arguments"]["imgsz"] == record["config"]["imgsz"] == 320
