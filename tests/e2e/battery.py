"""The hostile image battery: files a few KB long that ask for gigabytes or seconds, and the largest fair ones.

Two kinds, both generated here (nothing is downloaded, nothing is kept in the repository):

- :func:`declared`: images whose header asks for what the server must refuse before decoding
  (1 x 40,000,000 pixels, 6300 x 6300 RGBA, 16-bit or float, thousands of progressive scans,
  40 MB of compressed PNG text). Most are crafted headers around a tiny payload, so the
  battery costs milliseconds to build; the server never gets past the header anyway.
- :func:`largest`: for each format and mode, a real image just under a decode budget: what
  the server accepts at the most, so its peak memory per request is the figure to watch.

Used by ``tests/e2e/test_limits.py`` and ``benchmarks/bench_overload.py``.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

from PIL import Image

MiB = 1024 * 1024


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header(width: int, height: int, color_type: int = 2, depth: int = 8) -> bytes:
    """A PNG that declares ``width`` x ``height`` (colour type 2: RGB, 6: RGBA, 0: grey) and holds one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def tiff_header(width: int, height: int, mode: str) -> bytes:
    """A real 8 x 8 TIFF in ``mode`` whose ImageWidth and ImageLength tags say ``width`` x ``height``."""
    buffer = io.BytesIO()
    Image.new(mode, (8, 8)).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    ifd = int.from_bytes(data[4:8], "little")
    for i in range(int.from_bytes(data[ifd : ifd + 2], "little")):
        entry = ifd + 2 + 12 * i
        tag = int.from_bytes(data[entry : entry + 2], "little")
        if tag in (256, 257):  # ImageWidth, ImageLength: rewritten as LONG
            data[entry + 2 : entry + 12] = struct.pack("<HII", 4, 1, width if tag == 256 else height)
    return bytes(data)


def gif_header(width: int, height: int) -> bytes:
    """A GIF whose logical screen is ``width`` x ``height``, holding one 1 x 1 frame."""
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + frame + b"\x3b"


def scans_jpeg(side: int = 2000, repeats: int = 3000) -> bytes:
    """A progressive JPEG whose smallest scan is repeated ``repeats`` times (every scan is a pass over the image)."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (120, 20, 30)).save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    scans = []  # (length, start, end) of each scan: its header and entropy-coded data
    i = 2
    while data[i + 1] != 0xD9:
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        end = i + 2 + length
        if data[i + 1] == 0xDA:
            while data[end] != 0xFF or data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end += 1
            scans.append((end - i, i, end))
        i = end
    _, start, end = min(scans)
    return data[:i] + data[start:end] * repeats + data[i:]


def text_bomb_png(chunks: int = 40, inflated: int = 1_000_000) -> bytes:
    """A ~40 KB PNG whose zTXt chunks inflate to ``chunks`` x ``inflated`` bytes."""
    small = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(small, "PNG")
    data = small.getvalue()
    bomb = b"".join(_chunk(b"zTXt", b"Comment%d\0\0" % n + zlib.compress(b"A" * inflated, 9)) for n in range(chunks))
    return data[:33] + bomb + data[33:]


def _encoded(mode: str, size: tuple[int, int], format: str, **options: object) -> bytes:
    """A real image with some texture (a gradient), so the codec does real work."""
    image = Image.linear_gradient("L").resize(size)
    if mode == "I;16":
        image = image.convert("I").point(lambda v: v * 200).convert("I;16")
    elif mode != "L":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


#: The inputs the last round found, each refused before its pixels exist: name -> builder.
DECLARED_BUILDERS: dict[str, Callable[[], bytes]] = {
    "PNG 1 x 40,000,000": lambda: png_header(40_000_000, 1),
    "PNG 40,000,000 x 1": lambda: png_header(1, 40_000_000),
    "PNG RGBA 6300 x 6300": lambda: png_header(6300, 6300, color_type=6),
    "PNG 16-bit RGBA 6300 x 6300": lambda: png_header(6300, 6300, color_type=6, depth=16),
    "PNG 16-bit grey 6300 x 6300": lambda: png_header(6300, 6300, color_type=0, depth=16),
    "TIFF RGBA 6300 x 6300": lambda: tiff_header(6300, 6300, "RGBA"),
    "TIFF 16-bit 6300 x 6300": lambda: tiff_header(6300, 6300, "I;16"),
    "TIFF float 6300 x 6300": lambda: tiff_header(6300, 6300, "F"),
    "GIF 6300 x 6300": lambda: gif_header(6300, 6300),
    "WebP RGB 4096 x 2400": lambda: _encoded("RGB", (4096, 2400), "WEBP", quality=10, method=0),
    "JPEG with 3,000 scans": lambda: scans_jpeg(),
    "PNG with 40 MB of zTXt": lambda: text_bomb_png(),
}
DECLARED = tuple(DECLARED_BUILDERS)


def declared() -> dict[str, bytes]:
    """Every input of :data:`DECLARED_BUILDERS`, built (about 2 s of CPU)."""
    return {name: build() for name, build in DECLARED_BUILDERS.items()}


def _largest_side(header: Callable[[int], bytes], budget: int, target: int = 640) -> int:
    """The largest square side whose header ``header(side)`` the server accepts under ``budget`` (bisection)."""
    from yolo_service.images import decode_cost

    def cost(side: int) -> int:
        data = header(side)
        image = Image.open(io.BytesIO(data))
        return decode_cost(image, image.size, data, 0, target)

    low, high = 64, 9_000  # 9000² = 81 MP: under Pillow's own decompression-bomb warning
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if cost(middle) <= budget else (low, middle - 1)
    return low


def largest(budget: int = 128 * MiB) -> dict[str, Callable[[], bytes]]:
    """For each format and mode, a builder of a real image just under ``budget`` bytes of decoding (at 640 px).

    Sides come from :func:`yolo_service.images.decode_cost` on crafted headers of each kind, so
    each image is as large as the server accepts with that budget.
    """
    rgb = _largest_side(lambda n: png_header(n, n), budget)
    rgba = _largest_side(lambda n: png_header(n, n, color_type=6), budget)
    grey16 = _largest_side(lambda n: png_header(n, n, color_type=0, depth=16), budget)
    palette = _largest_side(lambda n: png_header(n, n, color_type=3), budget)
    tiff = _largest_side(lambda n: tiff_header(n, n, "RGB"), budget)
    gif = _largest_side(lambda n: gif_header(n, n), budget)
    webp_height = int((budget - 4 * MiB) / 16 / 8192)  # libwebp: 16 bytes a pixel in all (no header to craft)
    return {
        f"PNG RGB {rgb}²": lambda: _encoded("RGB", (rgb, rgb), "PNG", compress_level=1),
        f"PNG RGBA {rgba}²": lambda: _encoded("RGBA", (rgba, rgba), "PNG", compress_level=1),
        f"PNG 16-bit grey {grey16}²": lambda: _encoded("I;16", (grey16, grey16), "PNG", compress_level=1),
        f"PNG palette {palette}²": lambda: _encoded("P", (palette, palette), "PNG", compress_level=1),
        f"TIFF RGB {tiff}²": lambda: _encoded("RGB", (tiff, tiff), "TIFF", compression="tiff_deflate"),
        f"WebP RGB 8192 x {webp_height}": lambda: _encoded("RGB", (8192, webp_height), "WEBP", quality=50, method=0),
        f"GIF {gif}²": lambda: _encoded("P", (gif, gif), "GIF"),
        "JPEG progressive 6300²": lambda: _encoded("RGB", (6300, 6300), "JPEG", quality=90, progressive=True),
        "JPEG baseline 6300²": lambda: _encoded("RGB", (6300, 6300), "JPEG", quality=90),
    }
