"""Decoding and validation of images: every kind of bad input gets its typed error and message."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, ImageOps

from yolo_service import (
    ImageTooLarge,
    InvalidImage,
    UnsupportedImageFormat,
    decode_base64,
    encode_base64,
    encode_image,
    load_image,
    sample_scene,
)


def png_declaring(width: int, height: int) -> bytes:
    """A few-byte PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def scene_png() -> bytes:
    return encode_image(sample_scene()[0])


def test_png_round_trip_keeps_pixels(scene_png):
    image = load_image(scene_png)
    assert (image.mode, image.size) == ("RGB", (640, 480))
    assert image.getpixel((150, 150)) == (220, 30, 30)  # inside the red square
    assert image.getpixel((470, 270)) == (30, 70, 220)  # inside the blue circle


def test_base64_and_data_url_and_wrapped_lines(scene_png):
    text = encode_base64(scene_png)
    assert load_image(decode_base64(text)).size == (640, 480)
    assert load_image("data:image/png;base64," + text).size == (640, 480)
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert decode_base64(wrapped) == scene_png


def test_rgba_is_flattened_on_white():
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert load_image(encode_image(image)).getpixel((5, 5)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    displayed = sample_scene()[0]
    stored = displayed.transpose(Image.Transpose.ROTATE_90)  # what a phone writes
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", exif=exif, quality=95)
    upright = load_image(buffer.getvalue())
    assert upright.size == (640, 480)
    red = upright.getpixel((200, 200))
    assert red[0] > 180 and red[2] < 80, red


def test_first_frame_of_a_multi_frame_gif():
    frames = [Image.new("RGB", (20, 20), color) for color in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert load_image(buffer.getvalue()).getpixel((10, 10)) == (255, 0, 0)


def test_sixteen_bit_grey_is_scaled_to_eight_bits():
    image = Image.new("I;16", (4, 4), 0)
    image.putpixel((0, 0), 65535)
    decoded = load_image(encode_image(image))
    assert decoded.getpixel((0, 0)) == (255, 255, 255) and decoded.getpixel((1, 1)) == (0, 0, 0)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", InvalidImage, "empty"),
        (bytes(range(256)) * 4, InvalidImage, "not an image"),
        (b"just some text\n", InvalidImage, "not an image"),
        ("data:image/png;base64,@@not base64@@", InvalidImage, "not valid base64"),
        ("data:image/png;base64,", InvalidImage, "empty"),
    ],
)
def test_bad_input_raises_typed_errors(data, error, message):
    with pytest.raises(error, match=message):
        load_image(data)


def test_a_str_is_a_path(scene_png, tmp_path):
    (tmp_path / "scene.png").write_bytes(scene_png)
    assert load_image(str(tmp_path / "scene.png")).size == load_image(tmp_path / "scene.png").size == (640, 480)
    with pytest.raises(FileNotFoundError, match="No such file or directory") as info:
        load_image(str(tmp_path / "missing.png"))
    assert info.value.filename == str(tmp_path / "missing.png")
    for not_a_path in (encode_base64(scene_png), "", "   "):  # base64 text is not silently guessed
        with pytest.raises(FileNotFoundError) as info:
            load_image(not_a_path)
        assert "decode_base64" in info.value.__notes__[0]


def test_truncated_png(scene_png):
    with pytest.raises(InvalidImage, match="could not be decoded"):
        load_image(scene_png[: len(scene_png) // 2])


def test_decompression_bomb_is_refused_before_decoding():
    bomb = png_declaring(30000, 30000)
    assert len(bomb) < 200
    with pytest.raises(ImageTooLarge, match="pixels"):
        load_image(bomb)


def test_pixel_and_byte_limits(scene_png):
    with pytest.raises(ImageTooLarge, match="640x480 = 307,200 pixels; the limit is 100,000"):
        load_image(scene_png, max_pixels=100_000)
    with pytest.raises(ImageTooLarge, match="the limit is 1,000 bytes"):
        load_image(scene_png, max_bytes=1000)


def test_format_not_allowed(scene_png):
    with pytest.raises(UnsupportedImageFormat, match="PNG is not allowed; allowed: JPEG") as info:
        load_image(scene_png, formats={"JPEG"})
    assert info.value.status_code == 415


def _file(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format)
    return buffer.getvalue()


def _tiff_with_byte(mode: str, offset: int, value: int) -> bytes:
    data = bytearray(_file(sample_scene()[0].resize((32, 24)).convert(mode), "TIFF"))
    data[offset] = value  # the type of a tag in the first directory: Pillow then reads a bad strip offset
    return bytes(data)


def _png_with_text_inflating_to(size: int) -> bytes:
    png = _file(Image.new("RGB", (8, 8)), "PNG")
    text = b"comment\0\0" + zlib.compress(b"a" * size, 9)
    chunk = struct.pack(">I", len(text)) + b"zTXt" + text + struct.pack(">I", zlib.crc32(b"zTXt" + text))
    return png[:33] + chunk + png[33:]  # after the IHDR chunk


# Damaged files that once escaped load_image as raw Pillow errors (a 500), with what Pillow raises.
DAMAGED = {
    "first 200 bytes of a JPEG": (lambda: _file(sample_scene()[0], "JPEG")[:200], InvalidImage, OSError),
    "first 100 bytes of a WebP": (lambda: _file(sample_scene()[0], "WEBP")[:100], InvalidImage, OSError),
    "first 20 bytes of a PNG": (lambda: _file(sample_scene()[0], "PNG")[:20], InvalidImage, OSError),
    "TIFF with a tag of the wrong type": (lambda: _tiff_with_byte("RGBA", 72, 2), InvalidImage, TypeError),
    "TIFF with a huge strip offset": (lambda: _tiff_with_byte("RGB", 72, 16), InvalidImage, OverflowError),
    "2 KB PNG whose text inflates to 2 MB": (lambda: _png_with_text_inflating_to(2_000_000), ImageTooLarge, ValueError),
}


@pytest.mark.parametrize("name", DAMAGED)
def test_damaged_files_raise_library_errors(name):
    make, error, pillow_error = DAMAGED[name]
    data = make()
    with pytest.raises(error) as info:
        load_image(data)
    assert type(info.value) is error and isinstance(info.value.__cause__, pillow_error)


def test_a_turned_tiff_comes_out_as_people_see_it_once():
    """Pillow turns a TIFF by its orientation tag itself: turning it again would undo it (40x20 instead of 20x40)."""
    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 10, 10))  # a red corner, top left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown after a quarter turn clockwise
    buffer = io.BytesIO()
    image.save(buffer, "TIFF", exif=exif)
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue())))

    loaded = load_image(buffer.getvalue())

    assert loaded.size == expected.size == (20, 40)
    assert loaded.getpixel((15, 5)) == expected.getpixel((15, 5)) == (255, 0, 0)  # the red corner moved top right
    assert loaded.getpixel((5, 5)) == (255, 255, 255)


def png_with_exif(orientation: int, *, after_pixels: bool) -> bytes:
    """A 40x20 PNG (a red band on its left) with an eXIf chunk holding ``orientation``, before or after its pixels."""
    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 10, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = exif.tobytes().removeprefix(b"Exif\x00\x00")  # a PNG's eXIf holds the TIFF structure alone
    chunk = struct.pack(">I", len(data)) + b"eXIf" + data + struct.pack(">I", zlib.crc32(b"eXIf" + data))
    png = encode_image(image)
    where = png.rindex(b"IEND") - 4 if after_pixels else png.index(b"IDAT") - 4
    return png[:where] + chunk + png[where:]


def test_a_png_orientation_before_the_pixels_is_applied_one_after_them_is_not():
    """As browsers, and as PNG's third edition requires (w3c/png#447): an orientation after the pixels would mean
    decoding the whole image before its size is known, so it is ignored. Pillow's own ``getexif`` reads it."""
    before = load_image(png_with_exif(6, after_pixels=False))
    assert before.size == (20, 40) and before.getpixel((10, 2)) == (255, 0, 0)  # the red band turned to the top
    after = load_image(png_with_exif(6, after_pixels=True))
    assert after.size == (40, 20) and after.getpixel((2, 10)) == (255, 0, 0)  # as stored
    assert Image.open(io.BytesIO(png_with_exif(6, after_pixels=True))).getexif()[0x0112] == 6


def test_an_exif_block_pillow_cannot_read_leaves_the_image_as_stored(monkeypatch):
    """Reading EXIF may raise on a damaged block (Pillow's behaviour differs between versions and formats)."""
    stored = Image.new("RGB", (40, 20), "white")
    stored.paste((255, 0, 0), (0, 0, 10, 20))
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08", quality=95)

    def unreadable(self):
        raise SyntaxError("not a TIFF file")

    monkeypatch.setattr(Image.Image, "getexif", unreadable)
    loaded = load_image(buffer.getvalue())
    assert loaded.size == (40, 20)
    assert loaded.getpixel((2, 10))[0] > 200 and loaded.getpixel((37, 10))[1] > 200  # red left, white right
