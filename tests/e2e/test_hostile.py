"""Hostile input against the real server: nothing stops it, and every input gets a JSON 4xx.

The servers here run as a deployment does, with their output going to a pipe. In
``test_a_hundred_unexpected_exceptions_do_not_stop_the_server`` nobody reads that pipe:
once its 64 KiB buffer was full, a log write blocked the event loop and the service
stopped answering, ``/health`` included (nine unexpected exceptions did it).
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from tests.e2e.faulty_app import FAILURE_HEADER
from tests.helpers import ROOT, assert_finds, free_port
from yolo_service import PredictResponse, encode_base64, encode_image, sample_scene

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def start_with_unread_pipe(env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """The fault-injecting server, its stdout and stderr a pipe that nobody reads."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.faulty_app", "--host", "127.0.0.1"],
        env={**os.environ, "PORT": str(port), "YOLO_SERVICE_REPLICAS": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the server did not become ready: {proc.communicate()[0][-2000:]!r}")


def stop(proc: subprocess.Popen) -> bytes:
    """Kill the server; return what it wrote (the pipe's first 64 KiB or so)."""
    proc.kill()
    return proc.communicate(timeout=30)[0]


@pytest.fixture(scope="module")
def piped_server():
    proc, url = start_with_unread_pipe()
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def scene_png():
    image, shapes = sample_scene()
    return encode_image(image), shapes


def test_a_hundred_unexpected_exceptions_do_not_stop_the_server(scene_png):
    data, shapes = scene_png
    proc, url = start_with_unread_pipe()
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            for i in range(100):
                response = http.post("/predict", json={"image": encode_base64(data)}, headers={FAILURE_HEADER: "1"})
                assert response.status_code == 500, (i, response.text)
                body = response.json()
                assert body.pop("request_id") == response.headers["X-Request-ID"]
                assert body == {
                    "detail": "internal error: the server logged the details; please report it",
                    "error": "InternalError",
                }
            started = time.monotonic()
            assert http.get("/health", timeout=1).json() == {"status": "ok"}
            assert time.monotonic() - started < 1
            result = http.post("/predict", json={"image": encode_base64(data), "model": "shapes"})
            assert result.status_code == 200
            assert_finds(shapes, PredictResponse.model_validate(result.json()).detections)
    finally:
        output = stop(proc).decode(errors="replace")
    # What did reach the pipe: the traceback of the first failures, each with its request line showing the 500.
    assert "RuntimeError: injected failure" in output
    assert "POST /predict 500" in output
    assert "Exception in ASGI application" not in output  # none escaped to uvicorn: each logged once, by the app


def test_concurrent_unexpected_exceptions_keep_every_connection_usable(piped_server):
    """A 500 is an answer like any other: the keep-alive connections serve the next requests."""
    with httpx.Client(base_url=piped_server, timeout=30, limits=httpx.Limits(max_connections=8)) as http:

        def fail(_: int) -> int:
            return http.post("/predict", json={"image": "x"}, headers={FAILURE_HEADER: "1"}).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(fail, range(64))) == [500] * 64  # no connection reset among them
        assert http.get("/health").status_code == 200


# --- 17 inputs that used to get a plain-text 500, as named regression cases. ---


def _jpeg() -> bytes:
    return encode_image(sample_scene()[0], "JPEG")


def _png() -> bytes:
    return encode_image(sample_scene()[0], "PNG")


def _webp() -> bytes:
    return encode_image(sample_scene()[0], "WEBP")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    import struct

    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_with_text_bomb(kind: bytes) -> bytes:
    """A ~2 KB PNG whose zTXt/iTXt chunk inflates to 2 MB."""
    small = encode_image(Image.new("RGB", (8, 8), (10, 20, 30)), "PNG")
    bomb = zlib.compress(b"A" * 2_000_000, 9)
    # zTXt: keyword, method 0; iTXt: keyword, compressed flag 1, method 0, language tag, translated keyword.
    header = b"Comment\0\0" if kind == b"zTXt" else b"Comment\0\1\0\0\0"
    payload = header + bomb
    return small[:33] + _png_chunk(kind, payload) + small[33:]


def _mutated(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def _tiff() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buffer, "TIFF")
    return buffer.getvalue()


def _bmp() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 10)).save(buffer, "BMP")
    return buffer.getvalue()


def _tiff_mutations() -> list[bytes]:
    """TIFFs with a corrupted IFD entry: type, count and offset fields set to absurd values."""
    data = _tiff()
    ifd = int.from_bytes(data[4:8], "little")
    entries = [ifd + 2 + 12 * i for i in range(int.from_bytes(data[ifd : ifd + 2], "little"))]
    return [
        _mutated(data, entries[0] + 2, b"\xff\xff"),  # unknown field type
        _mutated(data, entries[1] + 4, b"\xff\xff\xff\x7f"),  # absurd count
        _mutated(data, entries[5] + 2, b"\x05\x00"),  # a RATIONAL where an integer belongs: Pillow's TypeError
    ]


def _bmp_mutations() -> list[bytes]:
    data = _bmp()
    return [
        _mutated(data, 18, b"\x00\x00\x00\x80"),  # width -2**31
        _mutated(data, 28, b"\x40\x00"),  # 64 bits per pixel
        _mutated(data, 10, b"\xff\xff\xff\x7f"),  # pixel data offset past the end
    ]


RAW = "raw JSON"
JSON = "json"
FILE = "file"

HOSTILE: dict[str, tuple[str, object]] = {
    "confidence NaN": (RAW, b'{"image": "aGVsbG8=", "confidence": NaN}'),
    "confidence Infinity": (RAW, b'{"image": "aGVsbG8=", "confidence": Infinity}'),
    "confidence 1e309": (RAW, b'{"image": "aGVsbG8=", "confidence": 1e309}'),
    "max_detections 1e400": (RAW, b'{"image": "aGVsbG8=", "max_detections": 1e400}'),
    "JPEG, first 150 bytes": (JSON, lambda: _jpeg()[:150]),
    "JPEG, first 200 bytes": (JSON, lambda: _jpeg()[:200]),
    "WebP, first 100 bytes": (JSON, lambda: _webp()[:100]),
    "PNG, first 20 bytes": (JSON, lambda: _png()[:20]),
    "PNG with a zTXt chunk inflating to 2 MB": (JSON, lambda: _png_with_text_bomb(b"zTXt")),
    "PNG with an iTXt chunk inflating to 2 MB": (FILE, lambda: _png_with_text_bomb(b"iTXt")),
    "TIFF, IFD entry of unknown type": (FILE, lambda: _tiff_mutations()[0]),
    "TIFF, IFD entry with absurd count": (FILE, lambda: _tiff_mutations()[1]),
    "TIFF, IFD entry typed RATIONAL (TypeError)": (JSON, lambda: _tiff_mutations()[2]),
    "BMP, negative width": (FILE, lambda: _bmp_mutations()[0]),
    "BMP, 64 bits per pixel": (JSON, lambda: _bmp_mutations()[1]),
    "BMP, pixel offset past the end": (FILE, lambda: _bmp_mutations()[2]),
    "WebP, first 100 bytes as a file": (FILE, lambda: _webp()[:100]),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_each_hostile_input_gets_a_json_4xx_and_the_server_stays_healthy(piped_server, case):
    how, payload = HOSTILE[case]
    with httpx.Client(base_url=piped_server, timeout=30) as http:
        if how == RAW:
            response = http.post("/predict", content=payload, headers={"content-type": "application/json"})
        elif how == JSON:
            response = http.post("/predict", json={"image": base64.b64encode(payload()).decode(), "model": "shapes"})
        else:
            response = http.post("/predict/file", files={"image": ("hostile", payload())}, data={"model": "shapes"})
        assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert isinstance(body["detail"], str) and body["error"] in {
            "InvalidImage",
            "InvalidRequest",
            "ImageTooLarge",
            "UnsupportedImageFormat",
        }, body
        assert http.get("/health", timeout=2).json() == {"status": "ok"}
