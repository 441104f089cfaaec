"""The sample images: Ultralytics' photos used where they are installed, the generated scenes written on demand."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from PIL import Image

from tests.helpers import ROOT
from yolo_service import sample_files, sample_photos, sample_scenes
from yolo_service.cli import main
from yolo_service.samples import PHOTOS, scene_file_name
from yolo_service.workshop.processes import import_blocker


def test_photos_come_from_the_installed_ultralytics_package():
    import ultralytics

    photos = sample_photos()
    assert list(photos) == ["bus.jpg", "zidane.jpg"] == list(PHOTOS)
    package = Path(ultralytics.__file__).parent
    for path in photos.values():
        assert path.parent == package / "assets"
        with Image.open(path) as image:
            assert image.format == "JPEG"
    with Image.open(photos["bus.jpg"]) as bus:
        assert bus.size == (810, 1080)


def test_no_photo_is_copied_into_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert not [line for line in tracked.splitlines() if Path(line).name in PHOTOS]


def test_without_ultralytics_there_are_no_photos_and_nothing_heavy_is_imported():
    code = import_blocker(("torch", "ultralytics", "cv2", "numpy")) + textwrap.dedent(
        """
        from yolo_service.samples import sample_photos
        print(sample_photos())
        print(sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "ultralytics"}))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["{}", "[]"]


def test_sample_files_writes_the_scenes_only_when_asked(tmp_path):
    assert sample_files() == sample_photos()
    files = sample_files(tmp_path)
    scenes = sample_scenes()
    assert scene_file_name("square and circle") == "square_and_circle.png"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(scene_file_name(name) for name in scenes)
    for name, (image, _) in scenes.items():
        with Image.open(files[scene_file_name(name)]) as written:
            assert written.size == image.size and written.convert("RGB").tobytes() == image.tobytes()


def test_cli_prints_a_photo_path_for_curl(capsys):
    assert main(["samples", "bus.jpg"]) == 0
    assert capsys.readouterr().out.strip() == str(sample_photos()["bus.jpg"])


def test_cli_lists_and_writes_samples(tmp_path, capsys):
    assert main(["samples", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [
        *PHOTOS,
        "square_and_circle.png",
        "three_shapes.png",
        "small_shapes_on_dark.png",
    ]
    assert main(["samples", "square_and_circle.png", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "square_and_circle.png")


def test_cli_names_the_choices_for_an_unknown_sample(capsys):
    assert main(["samples", "photo.jpg"]) == 1
    error = capsys.readouterr().err
    assert "no sample 'photo.jpg'" in error and "bus.jpg, zidane.jpg" in error and "--out DIR" in error


def test_the_widgets_offer_the_photos():
    from yolo_service.workshop.widgets import PredictDemo

    demo = PredictDemo(models=["shapes"])
    assert {"square and circle", "bus.jpg", "zidane.jpg"} <= set(demo.sample.options)
    demo.sample.value = "bus.jpg"
    assert demo._image_bytes() == sample_photos()["bus.jpg"].read_bytes()
