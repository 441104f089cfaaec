"""What decoding may cost is known before the pixels exist: memory by mode and bit depth, scans, text, CPU."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.e2e import battery
from yolo_service import ImageTooLarge, Settings, load_image
from yolo_service.errors import ClientDisconnected
from yolo_service.images import decode_cost, jpeg_scans, load_reduced

MiB = 1024 * 1024


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize("case", battery.DECLARED)
def test_each_declared_bomb_is_refused_before_decoding(case):
    with pytest.raises(ImageTooLarge):
        load_reduced(battery.DECLARED_BUILDERS[case](), 640)


@pytest.mark.parametrize(
    ("header", "per_pixel"),
    [
        (battery.png_header(2000, 2000, color_type=0), 1 + 0),  # grey: 1 byte, shrunk as it is
        (battery.png_header(2000, 2000), 4),  # RGB is stored as 4 bytes
        (battery.png_header(2000, 2000, color_type=6), 4 + 4),  # RGBA, and its premultiplied copy to shrink
        (battery.png_header(2000, 2000, color_type=0, depth=16), 2 + 4),  # 16-bit grey, and its 32-bit copy
        (battery.png_header(2000, 2000, color_type=3), 1 + 4),  # palette, and its RGB copy
        (battery.tiff_header(2000, 2000, "F"), 4 + 4),  # float, and a strip as large
    ],
)
def test_the_cost_counts_mode_and_bit_depth(header, per_pixel):
    image = opened(header)
    cost = decode_cost(image, image.size, header)  # no shrinking: the decoded image and its buffers
    assert per_pixel * 2000 * 2000 <= cost < per_pixel * 2000 * 2000 + 64 * 1024


def test_a_jpeg_is_counted_at_its_draft_scale_and_a_progressive_one_with_its_coefficients():
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 3000), (10, 20, 30)).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    image = opened(data)
    image.draft("RGB", (500, 375))
    assert image.size == (500, 375)
    baseline = decode_cost(image, (4000, 3000), data, scans=1)
    progressive = decode_cost(image, (4000, 3000), data, scans=jpeg_scans(data))
    assert baseline == 500 * 375 * 4
    # 4:2:0: Y at full size, Cb and Cr at half the width and height; 64 coefficients of 2 bytes per 8x8 block.
    assert progressive - baseline == 500 * 375 * 128 + 2 * 250 * 188 * 128


def test_an_extreme_aspect_ratio_under_the_budget_is_cheap_and_small():
    buffer = io.BytesIO()
    Image.new("RGB", (1_000_000, 1), (200, 10, 10)).save(buffer, "PNG")
    image, original = load_reduced(buffer.getvalue(), 640)
    assert original == (1_000_000, 1) and image.size == (640, 1) and image.getpixel((0, 0)) == (200, 10, 10)


def test_images_are_shrunk_in_their_mode_then_converted_right():
    palette = Image.new("P", (3000, 2000), 1)
    palette.putpalette([0, 0, 0, 20, 200, 40] + [0] * 762)
    rgba = Image.new("RGBA", (3000, 2000), (255, 0, 0, 0))  # fully transparent red: white once flattened
    grey32 = Image.new("I", (3000, 2000), 4000)
    grey32.paste(1000, (0, 0, 1500, 2000))
    grey16 = grey32.convert("I;16")
    for source, expected in ((palette, (20, 200, 40)), (rgba, (255, 255, 255))):
        buffer = io.BytesIO()
        source.save(buffer, "PNG")
        image, _ = load_reduced(buffer.getvalue(), 300)
        assert image.mode == "RGB" and image.size == (300, 200) and image.getpixel((150, 100)) == expected
    buffer = io.BytesIO()
    grey16.save(buffer, "PNG")
    image, _ = load_reduced(buffer.getvalue(), 300)
    assert image.getpixel((10, 100)) == (0, 0, 0) and image.getpixel((290, 100)) == (255, 255, 255)


def test_a_png_turned_by_its_exif_is_upright_with_no_exif_left():
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (400, 200), (0, 0, 0)).save(buffer, "PNG", exif=exif)
    image, original = load_reduced(buffer.getvalue(), 640)
    assert image.size == original == (200, 400) and "exif" not in image.info


def test_a_decoding_stops_past_its_cpu_budget_or_when_its_caller_left():
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((3000, 3000)).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    with pytest.raises(ImageTooLarge, match="CPU time"):
        load_image(data, settings=Settings(max_decode_seconds=0.001), target_size=640)
    with pytest.raises(ClientDisconnected):
        load_image(data, target_size=640, cancelled=lambda: True)
    assert load_image(data, target_size=640).size == (640, 640)


def test_metadata_limit_is_a_setting():
    one_mb_of_text = battery.text_bomb_png(chunks=1, inflated=1_000_000)
    assert load_image(one_mb_of_text).size == (8, 8)
    with pytest.raises(ImageTooLarge, match="metadata"):
        load_image(one_mb_of_text, settings=Settings(max_image_metadata_bytes=100_000))
