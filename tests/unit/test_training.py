"""The data set writer and the training command (a one-epoch smoke run on a handful of images)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.unit.test_artifacts import machine_paths_in
from yolo_service import sample_scene
from yolo_service.models import BUNDLED_DIR
from yolo_service.workshop.training import TrainingConfig, save_for_inference, train_shapes, write_dataset


def test_labels_are_the_drawn_boxes_in_yolo_format(tmp_path):
    data = write_dataset(tmp_path, {"train": 6, "val": 2}, seed=3)
    text = data.read_text()
    assert "train: images/train" in text and "val: images/val" in text
    assert "  0: circle\n  1: square\n  2: triangle" in text
    images = sorted((tmp_path / "images" / "train").iterdir())
    assert len(images) == 6
    for path in images:
        image = Image.open(path)
        rows = (tmp_path / "labels" / "train" / f"{path.stem}.txt").read_text().split("\n")
        for row in filter(None, rows):
            cls, cx, cy, w, h = row.split()
            assert cls in {"0", "1", "2"}
            # Back to pixels: every shape sits in an integer, square box inside the image, so a
            # mistake in normalising (width vs height, centre vs corner) shows up here.
            side_x, side_y = float(w) * image.width, float(h) * image.height
            x0, y0 = float(cx) * image.width - side_x / 2, float(cy) * image.height - side_y / 2
            assert abs(side_x - side_y) < 0.01 and side_x >= 0.05 * min(image.size) - 1
            assert abs(x0 - round(x0)) < 0.01 and abs(y0 - round(y0)) < 0.01
            assert 0 <= x0 <= x0 + side_x <= image.width and 0 <= y0 <= y0 + side_y <= image.height


def test_a_validation_only_set_still_has_the_train_key_ultralytics_requires(tmp_path):
    text = write_dataset(tmp_path, {"val": 2}, seed=1).read_text()
    assert "val: images/val" in text and "train: images/val" in text


@pytest.mark.slow
def test_train_demo_runs_end_to_end_and_leaves_the_bundled_model_alone(tmp_path):
    before = (BUNDLED_DIR / "shapes.pt").stat().st_mtime_ns
    config = TrainingConfig(epochs=1, train_images=16, val_images=4, test_images=4, batch=8, imgsz=128)
    record = train_shapes(tmp_path, config, install=False)
    assert record["config"]["epochs"] == 1 and record["classes"] == ["circle", "square", "triangle"]
    assert 0.0 <= record["heldout"]["map50"] <= 1.0 and record["seconds"]["train"] > 0
    assert (tmp_path / "runs" / "train" / "weights" / "best.pt").is_file()
    assert (BUNDLED_DIR / "shapes.pt").stat().st_mtime_ns == before
    assert record["command"] == f"train_shapes(workdir, {config!r}, install=False)"  # what really ran

    # What --install would ship: loadable, the same detections, and no path of this machine inside.
    from ultralytics import YOLO

    best, clean = tmp_path / "runs" / "train" / "weights" / "best.pt", tmp_path / "clean.pt"
    save_for_inference(best, clean, imgsz=config.imgsz)
    assert machine_paths_in("best.pt", best.read_bytes()) != []  # what Ultralytics saves
    assert machine_paths_in("clean.pt", clean.read_bytes()) == []
    scene = sample_scene()[0]
    boxes = [YOLO(str(path)).predict(scene, conf=0.001, verbose=False)[0].boxes for path in (best, clean)]
    assert boxes[0].xyxy.tolist() == boxes[1].xyxy.tolist() and boxes[0].conf.tolist() == boxes[1].conf.tolist()
    bundled = json.loads((BUNDLED_DIR / "shapes.json").read_text())
    assert bundled["heldout"]["map50"] >= 0.90  # the committed model meets the kit's target
