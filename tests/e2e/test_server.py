"""The API as a real uvicorn process on a free loopback port: what Cloud Run and compose see."""

from __future__ import annotations

import base64
import io
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

import yolo_service
from tests.helpers import Server, assert_finds, executable, free_port
from yolo_service import (
    BackendUnreachable,
    Client,
    PredictResponse,
    Shape,
    UnknownModel,
    draw_scene,
    encode_base64,
    sample_scene,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def png_b64(image: Image.Image) -> str:
    """PNG + base64 with nothing but Pillow: what a client written from the workshop's contract does."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def scene(i: int) -> tuple[Image.Image, list[Shape]]:
    """Sixteen different scenes: each class in turn, at a place and size of its own."""
    kind = ("circle", "square", "triangle")[i % 3]
    side = 90 + 10 * (i % 5)
    x, y = 30 + 25 * i, 40 + 12 * i
    other = ("square", "triangle", "circle")[i % 3]
    shapes = [Shape(kind, x, y, x + side, y + side, (200, 40, 40)), Shape(other, 480, 300, 600, 420, (40, 40, 200))]
    return draw_scene(shapes), shapes


def test_health_root_and_port(backend):
    assert httpx.get(backend.url + "/health").json() == {"status": "ok"}
    assert httpx.get(backend.url + "/").json().startswith("yolo-service")
    assert httpx.get(backend.url + "/version").json() == yolo_service.__version__
    assert "POST /predict" in httpx.get(backend.url + "/describe").json()
    assert "swagger" in httpx.get(backend.url + "/docs").text.lower()
    assert httpx.get(backend.url + "/ready").json()["default_model"] == "shapes"
    assert "shapes" in httpx.get(backend.url + "/models").json()
    assert httpx.get(backend.url + "/models/shapes").json()["loaded"] is True


def test_a_client_written_from_the_workshop_contract(backend):
    """Only what the workshop documents: POST {"model", "image"} to /predict, read detections."""
    image, shapes = sample_scene()
    response = httpx.post(f"{backend.url}/predict", json={"model": "shapes", "image": png_b64(image)}, timeout=30)
    assert response.status_code == 200
    result = response.json()
    assert result["model"] == "shapes" and isinstance(result["time"], float) and result["time"] > 0
    found = {
        d["class_name"]: (d["x_min"], d["y_min"], d["x_max"], d["y_max"], d["confidence"]) for d in result["detections"]
    }
    assert set(found) == {"square", "circle"}
    for shape in shapes:
        x0, y0, x1, y1, confidence = found[shape.class_name]
        assert all(isinstance(v, int) for v in (x0, y0, x1, y1)) and 0.5 < confidence <= 1
        inter = max(0, min(x1, shape.x_max) - max(x0, shape.x_min)) * max(
            0, min(y1, shape.y_max) - max(y0, shape.y_min)
        )
        union = (x1 - x0) * (y1 - y0) + (shape.x_max - shape.x_min) * (shape.y_max - shape.y_min) - inter
        assert inter / union >= 0.7


def test_multipart_route_with_curl_like_form(backend):
    image, shapes = sample_scene()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    response = httpx.post(
        f"{backend.url}/predict/file",
        files={"image": ("photo.jpg", buffer.getvalue())},
        data={"model": "shapes"},
        timeout=30,
    )
    assert response.status_code == 200
    assert_finds(shapes, PredictResponse.model_validate(response.json()).detections)


def test_python_client_round_trip_and_typed_errors(backend):
    image, shapes = sample_scene()
    with Client(backend.url) as client:
        assert client.health() == {"status": "ok"} and client.ready() is True
        for multipart in (False, True):
            assert_finds(shapes, client.predict(image, "shapes", multipart=multipart).detections)
        with pytest.raises(UnknownModel, match="unknown model 'nope'"):
            client.predict(image, "nope")
    with Client(f"http://127.0.0.1:{free_port()}", timeout=2) as dead, pytest.raises(BackendUnreachable) as info:
        dead.health()
    assert "http://backend:8000" in str(info.value)


def test_sixteen_concurrent_requests_each_get_their_own_boxes(backend):
    scenes = [scene(i) for i in range(16)]
    with httpx.Client(base_url=backend.url, timeout=120) as http:

        def post(i):
            return http.post("/predict", json={"model": "shapes", "image": encode_base64(scenes[i][0])})

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(post, range(16)))
    for (_, shapes), response in zip(scenes, responses, strict=True):
        assert response.status_code == 200, response.text
        assert_finds(shapes, PredictResponse.model_validate(response.json()).detections)


def test_one_log_line_per_request_with_status_and_latency(backend):
    httpx.get(backend.url + "/models/nope")
    time.sleep(0.2)
    assert any("GET /models/nope 404" in line and line.endswith(" ms") for line in backend.log().splitlines())


def test_check_command_reports_pass(backend):
    result = subprocess.run(
        [executable("yolo-service"), "check", backend.url], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[PASS] GET /health" in result.stdout and "[PASS]   found the square" in result.stdout
    assert result.stdout.strip().endswith("all checks passed")


def test_check_command_reports_a_dead_backend():
    result = subprocess.run(
        [executable("yolo-service"), "check", f"http://127.0.0.1:{free_port()}", "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "[FAIL] BackendUnreachable" in result.stdout


def test_ready_goes_from_503_to_200_while_health_is_200():
    port = free_port()
    with Server(["yolo-service", "serve", "--host", "127.0.0.1"], port, env={"PORT": str(port)}, wait=False) as srv:
        srv.wait_for("/health")
        seen = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ready = httpx.get(srv.url + "/ready")
            if not seen or seen[-1] != ready.status_code:
                seen.append(ready.status_code)
                if ready.status_code == 503:
                    assert ready.headers["retry-after"] and "loading" in ready.json()["detail"]
            if ready.status_code == 200:
                break
            time.sleep(0.05)
        assert seen == [503, 200]


def test_overload_gets_a_fast_503_with_retry_after():
    port = free_port()
    env = {"PORT": str(port), "YOLO_SERVICE_MAX_QUEUE": "1"}
    with Server(["yolo-service", "serve", "--host", "127.0.0.1"], port, env=env, ready_path="/ready") as srv:
        big = encode_base64(sample_scene()[0].resize((2000, 1500)))
        with httpx.Client(base_url=srv.url, timeout=60) as http, ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(lambda _: http.post("/predict", json={"image": big}), range(6)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses[0] == 200 and statuses[-1] == 503, statuses
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.headers["retry-after"] == "2" and "busy" in busy.json()["detail"]
        assert httpx.get(srv.url + "/health").status_code == 200  # nothing broke


def test_sigterm_finishes_in_flight_requests_and_exits_within_10s():
    port = free_port()
    with Server(
        ["yolo-service", "serve", "--host", "127.0.0.1"], port, env={"PORT": str(port)}, ready_path="/ready"
    ) as srv:
        big = encode_base64(sample_scene()[0].resize((4000, 3000)))
        results: list[int] = []

        def post():
            results.append(httpx.post(srv.url + "/predict", json={"image": big}, timeout=60).status_code)

        threads = [threading.Thread(target=post) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # the requests are in flight (decoding / queued on the model)
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(timeout=15)
        elapsed = time.monotonic() - started
        for thread in threads:
            thread.join(30)
        assert results == [200, 200, 200, 200]
        # uvicorn drains, then re-raises SIGTERM on itself: -15 after a clean shutdown is its normal exit.
        assert elapsed < 10 and srv.proc.returncode in (0, -signal.SIGTERM), (elapsed, srv.proc.returncode)
        assert "Application shutdown complete." in srv.log()


def _payload(kind: str) -> tuple[str, dict]:
    from tests.unit.test_images import png_declaring
    from yolo_service import encode_image

    good = encode_base64(sample_scene()[0])
    return {
        "bad base64": ("json", {"image": "%%%", "model": "shapes"}),
        "not an image": ("json", {"image": base64.b64encode(b"plain text").decode(), "model": "shapes"}),
        "unknown model": ("json", {"image": good, "model": "nope"}),
        "path as model": ("json", {"image": good, "model": "../../etc/passwd"}),
        "bomb": ("json", {"image": base64.b64encode(png_declaring(30000, 30000)).decode()}),
        "format": ("json", {"image": base64.b64encode(encode_image(sample_scene()[0], "TGA")).decode()}),
        "schema": ("json", {"model": "shapes"}),
        "unknown class": ("json", {"image": good, "model": "shapes", "classes": ["dog"]}),
        "offline model": ("json", {"image": good, "model": "yolo26n"}),
        "empty file": ("file", {}),
    }[kind]


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("bad base64", 400),
        ("not an image", 400),
        ("unknown model", 404),
        ("path as model", 404),
        ("bomb", 413),
        ("format", 415),
        ("schema", 422),
        ("unknown class", 422),
        ("offline model", 503),
        ("empty file", 400),
    ],
)
def test_every_error_status_from_the_real_server(backend, kind, status):
    how, payload = _payload(kind)
    if how == "json":
        response = httpx.post(backend.url + "/predict", json=payload, timeout=60)
    else:
        response = httpx.post(backend.url + "/predict/file", files={"image": ("empty.png", b"")}, timeout=60)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert detail and ("Traceback" not in str(detail))
    if status == 503:
        assert response.headers["retry-after"] == "2"
    assert httpx.get(backend.url + "/health").json() == {"status": "ok"}  # nothing broke


def test_body_over_the_limit_gets_413_from_the_real_server(backend):
    limit = 20 * 1024 * 1024 * 4 // 3 + 64 * 1024
    response = httpx.post(
        backend.url + "/predict",
        content=b"{" + b" " * limit + b"}",
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413 and response.json()["error"] == "ImageTooLarge"


def test_chunked_body_over_the_limit_gets_413_without_content_length(backend):
    limit = 20 * 1024 * 1024 * 4 // 3 + 64 * 1024
    chunk = b" " * (1024 * 1024)

    def body():  # a generator: httpx sends it chunked, with no Content-Length header
        yield b"{"
        for _ in range(limit // len(chunk) + 2):
            yield chunk

    response = httpx.post(
        backend.url + "/predict", content=body(), headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code == 413 and "larger than the limit" in response.json()["detail"]
    assert httpx.get(backend.url + "/health").status_code == 200
