"""Property tests of the decoder: whatever bytes arrive, decoding gives an RGB image or a library error.

The inputs are random bytes, random bytes behind a real file signature, and valid
JPEG/PNG/WebP/TIFF/BMP/GIF files (generated here with PIL) cut, with bytes flipped,
overwritten with boundary values, inserted or deleted. Anything else that escapes
``load_image`` (an ``OSError``, a ``TypeError`` …) would be a 500 in the API.

In the suite the run is small and derandomized. The dedicated long run (20,000+ inputs):

    HYPOTHESIS_PROFILE=long PYTHONPATH=$PWD YOLO_SERVICE_OFFLINE=1 .venv/bin/python -m pytest \
        tests/unit/test_images_fuzz.py -p no:cacheprovider --hypothesis-show-statistics
"""

from __future__ import annotations

import io
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from yolo_service import ImageTooLarge, InvalidImage, Settings, load_image, sample_scene
from yolo_service.images import load_reduced

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt EXIF/TIFF tags

# "suite": bounded and reproducible. "long": the dedicated run, 10,000 inputs per test (30,000 in all).
settings.register_profile(
    "suite", max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("long", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

# Small limits keep a mutated header that declares a huge image fast to refuse.
LIMITS = Settings(max_image_pixels=1_000_000, max_image_bytes=1_000_000)


def _encode(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def _valid_files() -> dict[str, bytes]:
    """One small valid file per format and variant the decoder has a separate path for."""
    scene = sample_scene()[0].resize((32, 24))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: exercises exif_transpose
    return {
        "jpeg": _encode(scene, "JPEG", quality=80),
        "jpeg progressive exif": _encode(scene, "JPEG", progressive=True, exif=exif),
        "png": _encode(scene, "PNG"),
        "png rgba": _encode(scene.convert("RGBA"), "PNG"),
        "png 16-bit grey": _encode(scene.convert("I;16"), "PNG"),
        "png palette": _encode(scene.convert("P"), "PNG"),
        "webp": _encode(scene, "WEBP"),
        "webp lossless": _encode(scene, "WEBP", lossless=True),
        "tiff": _encode(scene, "TIFF"),
        "tiff lzw": _encode(scene, "TIFF", compression="tiff_lzw"),
        "tiff deflate grey": _encode(scene.convert("L"), "TIFF", compression="tiff_deflate"),
        "bmp": _encode(scene, "BMP"),
        "bmp 1-bit": _encode(scene.convert("1"), "BMP"),
        "gif": _encode(scene, "GIF"),
    }


VALID = _valid_files()
SIGNATURES = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBPVP8 ", b"II*\0", b"MM\0*", b"BM", b"GIF89a"]
BOUNDARY = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


def assert_rgb_or_library_error(data: bytes) -> None:
    """The property: an RGB image with pixels, or InvalidImage / ImageTooLarge; nothing else.

    Both ways the library decodes: at full size (``load_image``) and reduced for a model's
    input size (``load_reduced``, JPEG draft mode: what the API and ``predict`` use).
    """
    for decode in (lambda: load_image(data, settings=LIMITS), lambda: load_reduced(data, 16, settings=LIMITS)[0]):
        try:
            image = decode()
        except (InvalidImage, ImageTooLarge):  # UnsupportedImageFormat is an InvalidImage
            continue
        assert image.mode == "RGB"
        assert image.width > 0 and image.height > 0


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid file with up to 4 edits: cut, flip, overwrite with a boundary value, insert, delete."""
    data = bytearray(VALID[draw(st.sampled_from(sorted(VALID)))])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        edit = draw(st.sampled_from(["cut", "flip", "boundary", "insert", "delete"]))
        if edit == "cut":
            del data[at:]
        elif edit == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "boundary":  # header fields (sizes, offsets, counts) at their extremes
            value, size, order = (
                draw(st.sampled_from(BOUNDARY)),
                draw(st.sampled_from([1, 2, 4])),
                draw(st.sampled_from("<>")),
            )
            data[at : at + size] = struct.pack(order + {1: "B", 2: "H", 4: "I"}[size], value & (256**size - 1))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


@PROFILE
@given(st.binary(max_size=4096))
def test_any_bytes(data):
    assert_rgb_or_library_error(data)


@PROFILE
@given(st.sampled_from(SIGNATURES), st.binary(max_size=2048))
def test_random_bytes_behind_a_real_signature(signature, rest):
    assert_rgb_or_library_error(signature + rest)


@PROFILE
@given(mutated())
def test_mutated_valid_files(data):
    assert_rgb_or_library_error(data)


@pytest.mark.parametrize("name", ["webp", "webp lossless", "jpeg", "png", "gif", "bmp", "tiff"])
def test_every_cut_point_is_refused_or_loses_nothing(name):
    """A truncated file is an InvalidImage, unless only trailing metadata was cut (then: every pixel)."""
    data = VALID[name]
    whole = load_image(data, settings=LIMITS).tobytes()
    accepted = []
    for cut in range(len(data)):
        try:
            image = load_image(data[:cut], settings=LIMITS)
        except InvalidImage:
            continue
        assert image.tobytes() == whole, f"cut at {cut} of {len(data)} gave different pixels"
        accepted.append(cut)
    assert all(cut >= len(data) - 32 for cut in accepted), f"cuts accepted at {accepted} of {len(data)} bytes"
