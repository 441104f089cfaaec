"""Decode, validate and encode images: bytes, a path or base64 in, an upright RGB ``PIL.Image`` out.

Every check happens before pixels are decoded: the byte size, the format, and the
pixel count read from the header, so a few-KB file that declares 30000x30000 pixels
is refused without allocating them. Pillow only; no numpy or torch.
"""

from __future__ import annotations

import base64
import binascii
import errno
import io
import math
import os
import re
import struct
import sys
import warnings
from pathlib import Path
from typing import cast

from PIL import Image, ImageOps, UnidentifiedImageError

from .config import Settings, get_settings
from .errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat

__all__ = ["decode_base64", "encode_base64", "encode_image", "load_image", "load_reduced", "read_image_bytes"]

# What Pillow raises for a damaged file, beyond UnidentifiedImageError, found by fuzzing
# (tests/unit/test_images_fuzz.py): OSError ("image file is truncated", "broken data stream",
# WebP "could not create decoder object"), SyntaxError and ValueError (bad PNG/JPEG structure,
# oversized PNG text), EOFError, and, from mutated TIFF headers, TypeError and OverflowError
# (a tag of the wrong type or size used as a file offset); struct.error from an EXIF block cut short.
CORRUPT_FILE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, TypeError, OverflowError, struct.error)

_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)


def decode_base64(data: str) -> bytes:
    """Decode a base64 string (standard or URL-safe, ``data:`` URL prefix allowed).

    Raises:
        InvalidImage: the text is not valid base64 or decodes to nothing.
    """
    text = _DATA_URL.sub("", data.strip(), count=1)
    text = "".join(text.split())  # line-wrapped base64 (e.g. from `base64` the command) is fine
    if not text:
        raise InvalidImage("the image is empty: send the image file's bytes encoded as base64")
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"the image is not valid base64 ({exc}): encode the file's bytes with base64") from exc


def read_image_bytes(source: bytes | str | Path) -> bytes:
    """Bytes of an image given as file bytes, a file path (``str`` or ``Path``) or a ``data:`` URL.

    A ``str`` is always a path, as everywhere in the library: base64 text goes through
    :func:`decode_base64` (or comes as a ``data:image/...;base64,`` URL).

    Raises:
        FileNotFoundError: no file at that path.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if isinstance(source, str) and _DATA_URL.match(source.lstrip()):
        return decode_base64(source)
    if isinstance(source, str | Path):
        try:
            if not str(source).strip():
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "")
            return Path(source).read_bytes()
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENAMETOOLONG:  # long base64 text, say
                missing = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(source)[:200])
                missing.add_note("a str image is a file path; decode base64 text with yolo_service.decode_base64()")
                raise missing from None
            raise
    raise TypeError(f"expected bytes, a path, a data: URL or a PIL image, not {type(source).__name__}")


def load_image(
    source: bytes | str | Path | Image.Image,
    *,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    formats: frozenset[str] | set[str] | None = None,
    settings: Settings | None = None,
    target_size: int | None = None,
) -> Image.Image:
    """Validate and decode an image into an upright RGB image.

    EXIF orientation is applied (boxes are in the orientation people see), multi-frame
    files give their first frame, transparency is flattened onto white. Limits not
    given come from ``settings`` (default: :func:`~yolo_service.config.get_settings`).
    ``target_size``: reduce the image so its longest side is at most this (see :func:`load_reduced`).

    Raises:
        InvalidImage: empty, not an image, or truncated.
        UnsupportedImageFormat: a format outside ``formats``.
        ImageTooLarge: more than ``max_bytes`` bytes or ``max_pixels`` pixels.
    """
    settings = settings or get_settings()
    max_bytes = settings.max_image_bytes if max_bytes is None else max_bytes
    max_pixels = settings.max_image_pixels if max_pixels is None else max_pixels
    formats = settings.allowed_formats if formats is None else frozenset(f.upper() for f in formats)

    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels)
        return _reduce(_to_rgb(ImageOps.exif_transpose(source)), target_size)
    data = read_image_bytes(source)
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"the image is {len(data):,} bytes; the limit is {max_bytes:,} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _open(io.BytesIO(data))  # reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"the image declares too many pixels ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage(
            f"the data is not an image Pillow can read ({len(data)} bytes): send a PNG, JPEG, WebP, BMP or TIFF file"
        ) from exc
    except CORRUPT_FILE_ERRORS as exc:  # a known signature, then a broken header
        raise _corrupt(exc) from exc
    if (image.format or "").upper() not in formats:
        raise UnsupportedImageFormat(
            f"image format {image.format} is not allowed; allowed: {', '.join(sorted(formats))}"
        )
    _check_pixels(image.size, max_pixels)
    try:
        image.seek(0)
        original = _upright_size(image)
        _draft(image, target_size)
        image.load()  # decodes the pixels: most damage shows here
        # Turned only if its EXIF says so: exif_transpose copies even an upright image (2 ms at 640×480).
        upright = image if _orientation(image) == 1 else ImageOps.exif_transpose(image)
    except CORRUPT_FILE_ERRORS as exc:
        raise _corrupt(exc) from exc
    return _reduce(_to_rgb(upright), target_size, original)


def _corrupt(exc: Exception) -> InvalidImage | ImageTooLarge:
    """The library's error for what Pillow raised while reading a damaged file."""
    if "MAX_TEXT_" in str(exc):  # PngImagePlugin.MAX_TEXT_CHUNK/MEMORY: compressed text inflating to megabytes
        return ImageTooLarge(f"the image's metadata is too large once decompressed ({exc})")
    return InvalidImage(f"the image could not be decoded ({exc}): is the file complete?")


def load_reduced(
    source: bytes | str | Path | Image.Image, target_size: int, **limits: object
) -> tuple[Image.Image, tuple[int, int]]:
    """Validate and decode an image reduced to what a model of input size ``target_size`` sees.

    A JPEG is decoded at 1/2, 1/4 or 1/8 scale (Pillow's draft mode: a 6000x6000 photo for a
    640 px model never exists at full size in memory), then resized so its longest side is
    ``target_size``; smaller images are left as they are. ``limits`` are :func:`load_image`'s.

    Returns:
        The upright RGB image, and the (width, height) of the original upright image, which
        boxes found on the reduced image are mapped back to.
    """
    image = load_image(source, target_size=target_size, **limits)  # type: ignore[arg-type]
    return image, image.info.pop("original_size", image.size)


def _upright_size(image: Image.Image) -> tuple[int, int]:
    """The size people see: width and height swapped when the EXIF orientation turns the image by 90°."""
    width, height = image.size
    return (height, width) if _orientation(image) in (5, 6, 7, 8) else (width, height)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1: upright; 2-8: mirrored and/or turned), 1 when unreadable."""
    try:
        value = image.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError, struct.error):
        return 1
    return value if isinstance(value, int) else 1


def _draft(image: Image.Image, target_size: int | None) -> None:
    """Have a JPEG decoded at the smallest 1/2, 1/4 or 1/8 scale still ``target_size`` on its longest side."""
    if not target_size or image.format not in {"JPEG", "MPO"}:
        return
    width, height = image.size
    scale = target_size / max(width, height)
    if scale < 1:
        image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))


def _reduce(image: Image.Image, target_size: int | None, original: tuple[int, int] | None = None) -> Image.Image:
    """Resize so the longest side is ``target_size`` (if larger); remember the original size in ``info``."""
    original = original or image.size
    if target_size and max(image.size) > target_size:
        scale = target_size / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    if image.size != original:
        image.info["original_size"] = original
    return image


def _open(fp: io.BytesIO) -> Image.Image:
    """Pillow's own ``Image.open``, even after Ultralytics patched it.

    Ultralytics replaces ``Image.open`` with a wrapper that, on an unidentified file,
    pip-installs a HEIF plugin at run time; a server must not do that per request.
    """
    opener = Image.open
    if getattr(opener, "__module__", "") == "ultralytics.utils.patches":
        opener = sys.modules["ultralytics.utils.patches"]._image_open
    return opener(fp)


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,} pixels"
        )
    if width == 0 or height == 0:
        raise InvalidImage(f"the image has no pixels ({width}x{height})")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to RGB: alpha flattened on white, 16-bit grey stretched to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit grey: stretch its range to 8 bits
        image = image.convert("F")
        low, high = cast(tuple[float, float], image.getextrema())  # one band: (min, max)
        scale = 255 / (high - low) if high > low else 1
        image = image.point(lambda value: (value - low) * scale).convert("L")
    if image.mode == "P" or image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode in {"RGBA", "LA", "RGBa", "La"}:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def encode_image(image: Image.Image, format: str = "PNG", quality: int = 90) -> bytes:
    """Encode an image to bytes (PNG by default; ``quality`` is for JPEG and WebP)."""
    buffer = io.BytesIO()
    options = {"quality": quality} if format.upper() in {"JPEG", "WEBP"} else {}
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def encode_base64(image: Image.Image | bytes, format: str = "PNG") -> str:
    """Base64 text of an image (encoded as ``format``) or of raw file bytes."""
    data = image if isinstance(image, bytes) else encode_image(image, format)
    return base64.b64encode(data).decode("ascii")
