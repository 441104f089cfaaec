"""The API as a real uvicorn process on a free loopback port: what Cloud Run and compose see."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

import yolo_service
from tests.e2e.faulty_app import HOLD_HEADER
from tests.helpers import Server, api_server, assert_finds, executable, free_port
from yolo_service import (
    BackendUnreachable,
    Client,
    PredictResponse,
    Shape,
    Unauthorized,
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


def _open_request(url: str, path: str = "/predict", length: int = 10_000_000, first: bytes = b"{") -> socket.socket:
    """A POST whose headers promise ``length`` bytes of body, of which only ``first`` is sent: it stays in flight."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    kind = "application/json" if path == "/predict" else "multipart/form-data; boundary=b0undary"
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {kind}\r\nContent-Length: {length}\r\n\r\n"
    sock.sendall(head.encode() + first)
    return sock


def _wait_for_queue_depth(url: str, depth: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while f"yolo_service_queue_depth {depth:.1f}" not in httpx.get(url + "/metrics").text:
        assert time.monotonic() < deadline, f"the queue depth never reached {depth}"
        time.sleep(0.05)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def _held(url: str, seconds: float = 60) -> socket.socket:
    """A whole predict request that the fault-injecting server holds in its queue until this socket closes."""
    body = json.dumps({"image": encode_base64(sample_scene()[0]), "model": "shapes"}).encode()
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{HOLD_HEADER}: {seconds}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def test_a_full_queue_refuses_before_reading_the_body():
    """max_queue=2: two admitted requests hold the queue; the next get their 503 with their bodies unread."""
    env = {"YOLO_SERVICE_MAX_QUEUE": "2", "YOLO_SERVICE_REPLICAS": "1"}
    argv = [sys.executable, "-m", "tests.e2e.faulty_app", "--host", "127.0.0.1"]
    with Server(argv, free_port(), env=env, ready_path="/ready") as srv:
        holders = [_held(srv.url), _held(srv.url)]
        _wait_for_queue_depth(srv.url, 2)  # both admitted, their bodies read, held in the route
        starts = {"/predict": b"{", "/predict/file": b"--b0undary\r\n"}  # a valid start; the rest never comes
        try:
            for path in ("/predict", "/predict/file"):
                refused = _open_request(srv.url, path, first=starts[path])  # of 10 MB promised: the 503 cannot wait
                status, headers, body = _read_response(refused)
                refused.close()
                assert status == 503 and headers["retry-after"] == "2", (status, headers)
                assert json.loads(body)["error"] == "Overloaded" and "busy" in json.loads(body)["detail"]
            # Whole bodies too: many large requests at once, each refused with its 503.
            big = {"image": encode_base64(sample_scene()[0].resize((1600, 1200))), "model": "shapes"}
            with httpx.Client(base_url=srv.url, timeout=60) as http, ThreadPoolExecutor(6) as pool:
                responses = list(pool.map(lambda _: http.post("/predict", json=big), range(6)))
            assert {r.status_code for r in responses} == {503}
            assert all(r.headers["retry-after"] == "2" for r in responses)
        finally:
            for sock in holders:
                sock.close()
        _wait_for_queue_depth(srv.url, 0)  # the holders gone, the queue is free again
        image, shapes = sample_scene()
        result = httpx.post(srv.url + "/predict", json={"image": encode_base64(image), "model": "shapes"}, timeout=60)
        assert_finds(shapes, PredictResponse.model_validate(result.json()).detections)


def _wait_for_bodies_arriving(url: str, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while f"yolo_service_bodies_arriving {count:.1f}" not in httpx.get(url + "/metrics").text:
        assert time.monotonic() < deadline, f"the bodies arriving never reached {count}"
        time.sleep(0.05)


def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_within_10s():
    """Four requests in flight (bodies half sent) when SIGTERM comes: they complete, new connections are refused."""
    with api_server() as srv:
        scenes = [scene(i) for i in range(4)]
        bodies = [json.dumps({"image": encode_base64(image), "model": "shapes"}).encode() for image, _ in scenes]
        socks = [_open_request(srv.url, "/predict", len(body), body[:100]) for body in bodies]
        _wait_for_bodies_arriving(srv.url, 4)
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(httpx.ConnectError):  # no new connection once shutdown began
            httpx.get(srv.url + "/health", timeout=2)
        for sock, body in zip(socks, bodies, strict=True):
            sock.sendall(body[100:])
        for sock, (_, shapes) in zip(socks, scenes, strict=True):
            status, _, answer = _read_response(sock)
            sock.close()
            assert status == 200, answer
            assert_finds(shapes, PredictResponse.model_validate_json(answer).detections)
        srv.proc.wait(timeout=15)
        elapsed = time.monotonic() - started
        # uvicorn drains, then re-raises SIGTERM on itself: -15 after a clean shutdown is its normal exit.
        assert elapsed < 10 and srv.proc.returncode in (0, -signal.SIGTERM), (elapsed, srv.proc.returncode)
        assert "Application shutdown complete." in srv.log()


@pytest.fixture(scope="module")
def keyed_backend():
    env = {"YOLO_SERVICE_API_KEY": "s3cret-key", "YOLO_SERVICE_REPLICAS": "1"}
    with api_server(env) as srv:
        yield srv


@pytest.mark.parametrize("path", ["/health", "/ready", "/", "/version", "/describe", "/docs", "/openapi.json"])
def test_with_an_api_key_probes_and_docs_stay_open(keyed_backend, path):
    assert httpx.get(keyed_backend.url + path).status_code == 200


@pytest.mark.parametrize("key", [None, "wrong", "s3cret-ke", ""])
@pytest.mark.parametrize(("method", "path"), [("GET", "/models"), ("GET", "/models/shapes"), ("POST", "/predict")])
def test_with_an_api_key_everything_else_needs_it(keyed_backend, key, method, path):
    headers = {} if key is None else {"X-API-Key": key}
    response = httpx.request(method, keyed_backend.url + path, headers=headers, json={"image": "x"})
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized" and "X-API-Key" in response.json()["detail"]


def test_with_the_api_key_the_client_cli_and_schema_work(keyed_backend):
    image, shapes = sample_scene()
    with Client(keyed_backend.url, api_key="s3cret-key") as client:
        assert client.models()[-1] == "shapes"
        for multipart in (False, True):
            assert_finds(shapes, client.predict(image, "shapes", multipart=multipart).detections)
    with Client(keyed_backend.url, api_key="") as keyless, pytest.raises(Unauthorized, match="no API key"):
        keyless.models()
    spec = httpx.get(keyed_backend.url + "/openapi.json").json()
    assert spec["components"]["securitySchemes"]["APIKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert spec["paths"]["/predict"]["post"]["security"] == [{"APIKey": []}]
    assert "security" not in spec["paths"]["/health"]["get"]
    check = [executable("yolo-service"), "check", keyed_backend.url, "--timeout", "60"]
    passed = subprocess.run([*check, "--api-key", "s3cret-key"], capture_output=True, text=True, timeout=120)
    assert passed.returncode == 0 and "all checks passed" in passed.stdout, passed.stdout + passed.stderr
    env = {**os.environ, "YOLO_SERVICE_API_KEY": "s3cret-key"}  # the CLI's default comes from the setting
    from_env = subprocess.run(check, capture_output=True, text=True, timeout=120, env=env)
    assert from_env.returncode == 0, from_env.stdout + from_env.stderr
    refused = subprocess.run([*check, "--api-key", "nope"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "[FAIL] Unauthorized" in refused.stdout


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
