"""Decode, validate and encode images: bytes, a path or base64 in, an upright RGB ``PIL.Image`` out.

Every check happens before pixels are decoded: the byte size, the format, the pixel
count read from the header, a JPEG's scan count, and the memory decoding will allocate
(:func:`decode_cost`: mode and bit depth count, a JPEG at its draft scale), so a few-KB
file that declares 30000x30000 pixels, or 1 x 40,000,000, is refused without allocating
them. The decoding itself stops past a CPU-time budget, or when its caller has left.
Every format is then shrunk in the mode it was decoded in, before any full-size
conversion. Limits are settings (:class:`~yolo_service.config.Settings`). Pillow only;
no numpy or torch.
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
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import cast

from PIL import Image, ImageFile, PngImagePlugin, UnidentifiedImageError

from .config import MiB, Settings, get_settings
from .errors import ClientDisconnected, ImageTooLarge, InvalidImage, UnsupportedImageFormat

__all__ = [
    "decode_base64",
    "decode_cost",
    "encode_base64",
    "encode_image",
    "jpeg_scans",
    "load_image",
    "load_reduced",
    "read_image_bytes",
]

# What Pillow raises for a damaged file, beyond UnidentifiedImageError, found by fuzzing
# (tests/unit/test_images_fuzz.py): OSError ("image file is truncated", "broken data stream",
# WebP "could not create decoder object"), SyntaxError and ValueError (bad PNG/JPEG structure,
# oversized PNG text), EOFError, and, from mutated TIFF headers, TypeError and OverflowError
# (a tag of the wrong type or size used as a file offset); struct.error from an EXIF block cut short.
CORRUPT_FILE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, TypeError, OverflowError, struct.error)

#: The formats decoded by libjpeg, which can decode at 1/2, 1/4 or 1/8 scale (Pillow's draft mode).
JPEG_FORMATS = frozenset({"JPEG", "MPO"})
#: Bytes Pillow reads per decoder call: how often a decoding checks its CPU budget and its caller.
READ_BLOCK = 16 * 1024

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
    cancelled: Callable[[], bool] | None = None,
) -> Image.Image:
    """Validate and decode an image into an upright RGB image.

    EXIF orientation is applied (boxes are in the orientation people see), multi-frame
    files give their first frame, transparency is flattened onto white. Limits not
    given come from ``settings`` (default: :func:`~yolo_service.config.get_settings`).
    ``target_size``: reduce the image so its longest side is at most this (see :func:`load_reduced`).
    ``cancelled``: polled while decoding; when it returns True the decoding stops (its caller left).

    Raises:
        InvalidImage: empty, not an image, or truncated.
        UnsupportedImageFormat: a format outside ``formats``.
        ImageTooLarge: more than ``max_bytes`` bytes or ``max_pixels`` pixels, or a decoding that would
            cost more memory, JPEG scans, metadata or CPU time than the settings allow.
        ClientDisconnected: ``cancelled`` returned True.
    """
    settings = settings or get_settings()
    max_bytes = settings.max_image_bytes if max_bytes is None else max_bytes
    max_pixels = settings.max_image_pixels if max_pixels is None else max_pixels
    formats = settings.allowed_formats if formats is None else frozenset(f.upper() for f in formats)

    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels)
        return _finish(source, _orientation(source), target_size, _upright_size(source), owned=False)
    data = read_image_bytes(source)
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"the image is {len(data):,} bytes; the limit is {max_bytes:,} bytes")
    _limit_metadata(settings)
    budget = _DecodeBudget(data, settings.max_decode_seconds, cancelled)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _open(budget)  # reads the header only
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
    scans = 0
    if image.format in JPEG_FORMATS:
        scans = jpeg_scans(data)
        if scans > settings.max_jpeg_scans:
            raise ImageTooLarge(
                f"the JPEG has {scans:,} scans; the limit is {settings.max_jpeg_scans} (progressive encoders "
                "write about 10): save it again, as a baseline JPEG or a PNG"
            )
    try:
        image.seek(0)
        original = _upright_size(image)
        orientation = _orientation(image)
        full_size = image.size
        _draft(image, target_size)
        cost = decode_cost(image, full_size, data, scans, target_size)
        if cost > settings.max_decode_bytes:
            raise ImageTooLarge(
                f"decoding this {image.format} image ({full_size[0]}x{full_size[1]}, mode {image.mode}) would take "
                f"{cost / MiB:,.0f} MiB of memory; the limit is {settings.max_decode_bytes / MiB:,.0f} MiB: "
                "send it smaller, or as a JPEG (decoded at a reduced scale)"
            )
        budget.start()
        if isinstance(image, ImageFile.ImageFile):
            image.decodermaxblock = READ_BLOCK
        image.load()  # decodes the pixels: most damage shows here
        return _finish(image, orientation, target_size, original)
    except CORRUPT_FILE_ERRORS as exc:
        raise _corrupt(exc) from exc


def _limit_metadata(settings: Settings) -> None:
    """The one place Pillow's limits on decompressed PNG text are set (its defaults: 1 MiB each, 64 MiB in all)."""
    PngImagePlugin.MAX_TEXT_CHUNK = settings.max_image_metadata_bytes
    PngImagePlugin.MAX_TEXT_MEMORY = settings.max_image_metadata_bytes


class _DecodeBudget(io.BytesIO):
    """The file Pillow decodes from: every read checks the decoding's CPU time, and that someone still waits.

    Pillow reads the file in blocks as it decodes (JPEG, PNG, GIF, BMP), so a decode that
    goes over ``seconds`` of this thread's CPU time, or whose caller has left (``cancelled``),
    stops at its next read instead of running to the end.
    """

    def __init__(self, data: bytes, seconds: float, cancelled: Callable[[], bool] | None) -> None:
        super().__init__(data)
        self.seconds, self.cancelled = seconds, cancelled
        self.started: float | None = None

    def start(self) -> None:
        """Start counting: the header was read; the pixels come next."""
        self.started = time.thread_time()

    def read(self, size: int | None = -1, /) -> bytes:
        if self.started is not None:
            if self.cancelled is not None and self.cancelled():
                raise ClientDisconnected("the client closed the connection: decoding stopped")
            spent = time.thread_time() - self.started
            if spent > self.seconds:
                raise ImageTooLarge(
                    f"decoding the image took more than {self.seconds:g} s of CPU time, the limit: "
                    "save it again as a baseline JPEG or a PNG"
                )
        return super().read(size)


def jpeg_scans(data: bytes) -> int:
    """How many scans a JPEG holds: its start-of-scan markers (a baseline JPEG has 1, a progressive one ~10).

    The entropy-coded data never contains 0xFFDA (a 0xFF there is followed by 0x00 or a
    restart marker), so counting the bytes is exact, up to an embedded thumbnail's own scan.
    """
    return data.count(b"\xff\xda")


def _stored_bytes(mode: str) -> int:
    """Bytes per pixel of ``mode`` in Pillow's memory: 1 for 1-bit, grey and palette; 2 for 16-bit grey;
    4 for every other mode (RGB is stored as 4 bytes, like RGBA; 32-bit integer and float grey too)."""
    if mode in {"1", "L", "P"}:
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


#: Modes Pillow cannot shrink as they are: the mode they are converted to first (a full-size copy).
_REDUCIBLE = {"1": "L", "P": "RGB", "PA": "RGBA", "I;16": "I", "I;16L": "I", "I;16B": "I", "I;16N": "I"}
#: Modes whose shrinking makes a full-size premultiplied copy first (RGBA -> RGBa), to average colours right.
_PREMULTIPLIED = frozenset({"RGBA", "LA"})
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # IHDR colour type -> samples per pixel


def decode_cost(
    image: Image.Image, full_size: tuple[int, int], data: bytes, scans: int = 0, target_size: int | None = None
) -> int:
    """Bytes decoding ``image`` (opened, not loaded; a JPEG after ``draft``) and shrinking it will allocate at most.

    The pixels as Pillow stores them (mode and bit depth count: a 16-bit grey pixel takes 2
    bytes, RGB and RGBA 4); one full-size working copy when the mode has to change before the
    image can be shrunk (palette, 16-bit, alpha); each decoder's own buffers: libjpeg's
    coefficients of the whole image for a multi-scan JPEG (even in draft mode), two rows of raw
    samples for PNG, libwebp's RGBA output, its copy and a conversion for WebP, a strip for TIFF;
    then what shrinking to ``target_size`` makes (see :func:`_shrink_plan`).
    """
    width, height = image.size
    pixels = width * height
    cost = pixels * _stored_bytes(image.mode)
    if image.mode in _REDUCIBLE:
        cost += pixels * _stored_bytes(_REDUCIBLE[image.mode])
    elif image.mode in _PREMULTIPLIED:
        cost += pixels * 4
    if image.format in JPEG_FORMATS and scans > 1:
        cost += _jpeg_coefficients(image, full_size)
    elif image.format == "PNG" and len(data) >= 26:
        depth, channels = data[24], _PNG_CHANNELS.get(data[25], 4)
        cost += 2 * (math.ceil(width * depth * channels / 8) + 1)
    elif image.format == "WEBP":
        cost += 3 * pixels * 4
    elif image.format == "TIFF":
        cost += pixels * _stored_bytes(image.mode)
    if (plan := _shrink_plan(image.size, target_size)) is not None:
        (rw, rh), (ow, oh) = plan
        cost += 4 * (rw * rh * (rw < width or rh < height) + ow * rh + ow * oh)
    return cost


#: Shrinking divides the size by an integer factor (box averages) while the result stays at least
#: this many times the target, then resamples the rest; 3: Pillow's "indistinguishable" gap.
REDUCING_GAP = 3.0


def _shrink_plan(size: tuple[int, int], target_size: int | None) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """What shrinking ``size`` to ``target_size`` makes: the box-reduced size, then the final size (None: no shrink).

    Pillow resamples in two passes, horizontal first: between them lives an image of the final
    width and the reduced height.
    """
    width, height = size
    if not target_size or max(width, height) <= target_size:
        return None
    scale = target_size / max(width, height)
    out = (max(1, round(width * scale)), max(1, round(height * scale)))
    fx = int(width / out[0] / REDUCING_GAP) or 1
    fy = int(height / out[1] / REDUCING_GAP) or 1
    return (-(-width // fx), -(-height // fy)), out


def _jpeg_coefficients(image: Image.Image, full_size: tuple[int, int]) -> int:
    """Bytes of libjpeg's coefficient buffer for a multi-scan JPEG: 2 bytes per coefficient, every component."""
    layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * len(image.getbands())
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    width, height = full_size
    return sum(
        math.ceil(math.ceil(width * h / h_max) / 8) * math.ceil(math.ceil(height * v / v_max) / 8) * 64 * 2
        for _, h, v, _ in layers
    )


def _corrupt(exc: Exception) -> InvalidImage | ImageTooLarge:
    """The library's error for what Pillow raised while reading a damaged file."""
    if "MAX_TEXT_" in str(exc) or "Decompressed data too large" in str(exc):
        return ImageTooLarge(
            f"the image's metadata (PNG text) is too large once decompressed ({exc}); "
            "the limit is YOLO_SERVICE_MAX_IMAGE_METADATA_BYTES"
        )
    return InvalidImage(f"the image could not be decoded ({exc}): is the file complete?")


def load_reduced(
    source: bytes | str | Path | Image.Image, target_size: int, **limits: object
) -> tuple[Image.Image, tuple[int, int]]:
    """Validate and decode an image reduced to what a model of input size ``target_size`` sees.

    A JPEG is decoded at 1/2, 1/4 or 1/8 scale (Pillow's draft mode: a 6000x6000 photo for a
    640 px model never exists at full size in memory); every image is then shrunk in the mode it
    was decoded in, by an integer factor first (box averages), so its longest side is
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
    """The EXIF orientation still to apply (1: upright; 2-8: mirrored and/or turned), 1 when unreadable.

    A PNG's EXIF is read only from an eXIf chunk before the pixels: Pillow's ``getexif`` would
    decode the whole image to look for one after them.
    """
    if image.format == "PNG" and "exif" not in image.info and getattr(image, "tile", None):  # not decoded yet
        return 1
    if image.format == "TIFF":  # Pillow turns a TIFF itself: its size is upright from the start, its pixels at load
        return 1
    try:
        value = image.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError, struct.error):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


#: How each EXIF orientation is undone (as ImageOps.exif_transpose does).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _draft(image: Image.Image, target_size: int | None) -> None:
    """Have a JPEG decoded at the smallest 1/2, 1/4 or 1/8 scale still ``target_size`` on its longest side."""
    if not target_size or image.format not in JPEG_FORMATS:
        return
    width, height = image.size
    scale = target_size / max(width, height)
    if scale < 1:
        image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))


def _finish(
    image: Image.Image, orientation: int, target_size: int | None, original: tuple[int, int], owned: bool = True
) -> Image.Image:
    """Shrink (in the decoded mode, before any full-size conversion), convert to RGB, turn upright.

    In this order the only full-size copy is the one a palette, 16-bit or alpha image needs
    before it can be shrunk; turning comes last, on the small image. The original upright size
    is kept in ``info["original_size"]`` when the result differs from it; no other metadata is kept.
    ``owned``: the image was decoded here (else it is the caller's, copied before its info changes).
    """
    if image.mode in _REDUCIBLE and target_size and max(image.size) > target_size:
        image = image.convert("RGBA" if image.mode == "P" and "transparency" in image.info else _REDUCIBLE[image.mode])
    source = image
    image = _to_rgb(_shrink(image, target_size))
    if orientation != 1:
        image = image.transpose(_UPRIGHT[orientation])
    elif image is source and not owned:
        image = image.copy()  # the caller's own image: its info is not ours to change
    # Pixels only: no EXIF or XMP left to turn the image a second time (Ultralytics applies EXIF orientation).
    image.info = {"original_size": original} if image.size != original else {}
    return image


def _shrink(image: Image.Image, target_size: int | None) -> Image.Image:
    """Resize so the longest side is ``target_size`` (if larger).

    ``reducing_gap``: an integer-factor box reduction first, then BILINEAR on what is left; a
    plain resize of a 1 x 40,000,000 image would build a coefficient table of hundreds of MB.
    """
    if (plan := _shrink_plan(image.size, target_size)) is None:
        return image
    return image.resize(plan[1], Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP)


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
    """Convert any mode to RGB: alpha flattened on white, 16/32-bit grey and float stretched to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit grey: stretch its range to 8 bits
        image = image.convert("F")
        low, high = cast(tuple[float, float], image.getextrema())  # one band: (min, max)
        scale = 255 / (high - low) if high > low else 1
        image = image.point(lambda value: (value - low) * scale).convert("L")
    if image.mode in {"P", "PA"}:
        image = image.convert("RGBA")
    if image.mode in {"RGBA", "LA", "RGBa", "La"}:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))  # in place: no second full-size RGBA
        return flat
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
