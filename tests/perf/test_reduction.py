"""Big images are decoded reduced (JPEG draft mode + resize) and the boxes still land on the original's pixels."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.helpers import assert_finds
from yolo_service import ModelRegistry, Settings, Shape, draw_scene, encode_image, load_image, sample_scenes
from yolo_service.images import load_reduced

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SIZES = [(640, 480), (4000, 3000), (6000, 6000)]


def scene(size: tuple[int, int]) -> tuple[Image.Image, list[Shape]]:
    """The "three shapes" sample scaled up to ``size`` (shapes keep their place relative to the width)."""
    _, shapes = sample_scenes()["three shapes"]
    factor = size[0] / 640
    scaled = [Shape(s.class_name, *(round(v * factor) for v in s.box), s.color) for s in shapes]
    return draw_scene(scaled, size, background=(250, 250, 245)), scaled


def jpeg(image: Image.Image, orientation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(buffer, "JPEG", quality=85, exif=exif)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def registry(weights_dir) -> ModelRegistry:
    return ModelRegistry(Settings(weights_dir=weights_dir, offline=True))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_boxes_of_reduced_jpegs_are_in_original_pixels(registry, size):
    image, shapes = scene(size)
    result = registry.predict(jpeg(image), "shapes")
    assert (result.image.width, result.image.height) == size
    assert_finds(shapes, result.detections)


@pytest.mark.parametrize("size", [(640, 480), (4000, 3000)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_exif_rotated_jpeg_reports_the_upright_size_and_boxes(registry, size):
    image, shapes = scene(size)
    stored = image.transpose(Image.Transpose.ROTATE_90)  # orientation 6: turn 90° clockwise to display
    result = registry.predict(jpeg(stored, orientation=6), "shapes")
    assert (result.image.width, result.image.height) == size
    assert_finds(shapes, result.detections)


def test_draft_mode_never_decodes_the_full_image():
    image, _ = scene((6000, 6000))
    reduced, original = load_reduced(jpeg(image), 320)
    assert original == (6000, 6000) and reduced.size == (320, 320) and reduced.mode == "RGB"
    stored = Image.open(io.BytesIO(jpeg(image)))
    stored.draft("RGB", (320, 320))
    assert stored.size == (750, 750)  # what the decoder produced: 1/8 scale, 2.2 MB instead of 108 MB


def test_small_images_and_other_formats_keep_their_pixels():
    image, _ = scene((640, 480))
    same, original = load_reduced(encode_image(image), 1024)
    assert same.size == original == (640, 480)
    reduced, original = load_reduced(encode_image(image), 320)  # PNG: no draft mode, resized after decoding
    assert reduced.size == (320, 240) and original == (640, 480)
    assert "original_size" not in load_image(encode_image(image)).info
