"""No single small request exhausts the server, slow clients lock nobody out: each finding, against a real server.

Every test names the finding it guards and asserts the figure that must stay under its bound:
the server's peak memory for one request (VmHWM, reset before the request through
``/proc/PID/clear_refs``), its CPU time, what it keeps resident, its open file descriptors,
and that ``/health`` and a normal prediction still get their answer within the client's
timeout of a few seconds (a functional check, not a latency figure: benchmarks print those).

Where the engine matters (memory, the class filter, the model cache, shutdown), on both: the
exported model on OpenVINO (the deployed image) and PyTorch through Ultralytics. Connection
limits are the server's, whatever the engine: checked once.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e import battery
from tests.helpers import Server, api_server, assert_finds, executable, free_port
from yolo_service import PredictResponse, Settings, encode_base64, encode_image, sample_scene
from yolo_service.models import BUNDLED_DIR
from yolo_service.workshop.bench import cpu_seconds, peak_rss_mib, rss_mib

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

KEY = "limits-key"
AUTH = {"X-API-Key": KEY}
MiB = 1024 * 1024
BUDGET = Settings().max_decode_bytes  # the default decode budget, 128 MiB
ENGINES = ["openvino", "ultralytics"]


# --- measuring the server process ---


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def peak_mb(pid: int, action: Callable[[], object]) -> float:
    """How far above its resident memory before ``action`` the server's peak went during it (MB)."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current VmRSS
    before = rss_mib(pid)
    action()
    return peak_rss_mib(pid) - before


def health_answers(url: str) -> bool:
    """``/health`` answers 200 within the client's timeout (a few seconds): the server is not locked out."""
    return httpx.get(url + "/health", timeout=5).json() == {"status": "ok"}


def predicts(url: str) -> bool:
    """A normal prediction is served, with the right boxes."""
    image, shapes = sample_scene()
    response = httpx.post(
        url + "/predict", json={"image": encode_base64(image), "model": "shapes"}, headers=AUTH, timeout=60
    )
    assert response.status_code == 200, response.text
    assert_finds(shapes, PredictResponse.model_validate(response.json()).detections)
    return True


def post_file(url: str, data: bytes, timeout: float = 60, **form: str) -> httpx.Response:
    return httpx.post(
        url + "/predict/file",
        files={"image": ("image", data)},
        data={"model": "shapes", **form},
        headers=AUTH,
        timeout=timeout,
    )


def metric(url: str, name: str) -> float:
    """The value of one line of /metrics (0 when absent)."""
    text = httpx.get(url + "/metrics", headers=AUTH, timeout=10).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response on ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without an answer: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


# --- servers ---


@pytest.fixture(scope="module")
def local_models(tmp_path_factory) -> str:
    """A weights folder with models a, b and c: copies of the bundled model (its .pt and its .onnx)."""
    folder = tmp_path_factory.mktemp("weights")
    for name in "abc":
        shutil.copy(BUNDLED_DIR / "shapes.pt", folder / f"{name}.pt")
        shutil.copy(BUNDLED_DIR / "shapes.onnx", folder / f"{name}.onnx")
    return str(folder)


def server_env(engine: str, weights: str, **extra: str) -> dict[str, str]:
    return {
        "YOLO_SERVICE_ENGINE": engine,
        "YOLO_SERVICE_DEFAULT_MODEL": "shapes",
        "YOLO_SERVICE_WEIGHTS_DIR": weights,
        "YOLO_SERVICE_API_KEY": KEY,
        "YOLO_SERVICE_REPLICAS": "1",
        "YOLO_SERVICE_BODY_TIMEOUT": "2",  # short, so the slow-client tests take seconds
        "YOLO_SERVICE_IDLE_TIMEOUT": "2",
        "YOLO_SERVICE_MAX_MODELS": "2",
        **extra,
    }


@pytest.fixture(scope="module", params=ENGINES)
def server(request, local_models) -> Iterator[Server]:
    """One real server per engine, default limits but for short timeouts; warmed by one prediction."""
    with api_server(server_env(request.param, local_models)) as srv:
        srv.engine = request.param
        assert predicts(srv.url)  # the first inference allocates what later ones reuse
        yield srv


@pytest.fixture(scope="module")
def largest_images() -> dict[str, bytes]:
    """The largest image of each format the default budget accepts (built once: ~10 s of CPU)."""
    return {name: build() for name, build in battery.largest(BUDGET).items()}


@pytest.fixture(scope="module")
def declared_images() -> dict[str, bytes]:
    return battery.declared()


# --- one small request, a large bill ---


@pytest.mark.parametrize("case", list(battery.DECLARED))
def test_an_image_asking_for_too_much_is_refused_before_its_pixels_exist(server, declared_images, case):
    """Unbounded, a 1 x 40,000,000 PNG costs +1,069 MB, RGBA, 16-bit and float 6300² TIFFs alike, 3,000 scans 3.3 s."""
    cpu = cpu_seconds(server.pid)
    responses: list[httpx.Response] = []
    peak = peak_mb(server.pid, lambda: responses.append(post_file(server.url, declared_images[case])))
    spent = cpu_seconds(server.pid) - cpu
    assert responses[0].status_code == 413, responses[0].text
    assert responses[0].json()["error"] == "ImageTooLarge"
    assert peak < 24, f"{case}: +{peak:.0f} MB"
    assert spent < 1.0, f"{case}: {spent:.2f} s of CPU"


def test_the_largest_image_of_every_format_costs_about_what_the_worst_jpeg_does(server, largest_images):
    """Decoded at full size, PNG, TIFF, WebP and GIF cost +0.76 to +1.07 GB; within the budget, what a JPEG costs."""
    peaks = {}
    for name, data in largest_images.items():
        answers: list[httpx.Response] = []
        peaks[name] = peak_mb(
            server.pid, lambda data=data, answers=answers: answers.append(post_file(server.url, data))
        )
        assert answers[0].status_code == 200, (name, answers[0].text)
    worst_jpeg = max(peak for name, peak in peaks.items() if name.startswith("JPEG"))
    report = ", ".join(f"{name}: +{peak:.0f} MB" for name, peak in peaks.items())
    assert max(peaks.values()) < BUDGET / MiB + 40, report  # the budget, plus the request and the inference
    assert max(peaks.values()) < worst_jpeg + 60, report


def test_a_client_that_leaves_gets_no_work_done(server, largest_images):
    """Unwatched, 4 abandoned requests cost 35 s of CPU (and a normal prediction 13 s of waiting); none may run."""
    heavy = next(data for name, data in largest_images.items() if name.startswith("PNG RGB"))
    predictions = metric(server.url, 'yolo_service_model_seconds_count{model="shapes"}')
    body = (
        b'--b0undary\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        + heavy
        + b'\r\n--b0undary\r\nContent-Disposition: form-data; name="model"\r\n\r\nshapes\r\n--b0undary--\r\n'
    )
    head = (
        f"POST /predict/file HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n"
        f"Content-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    cpu = cpu_seconds(server.pid)
    for _ in range(4):
        with connect(server.url) as sock:
            sock.sendall(head + body)
            # Gone while its body is read or decoded: well before an idle machine finishes decoding this image
            # (0.2 s raced with it and lost on a quiet machine: the prediction was done before the client left).
            time.sleep(0.05)
    assert predicts(server.url)
    deadline = time.monotonic() + 30
    while metric(server.url, "yolo_service_queue_depth") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    spent = cpu_seconds(server.pid) - cpu
    assert metric(server.url, 'yolo_service_model_seconds_count{model="shapes"}') == predictions + 1
    assert spent < 8, f"{spent:.1f} s of CPU"
    assert "POST /predict/file 499" in server.log() or "POST /predict/file 0" in server.log()


def test_a_million_class_names_are_refused_before_the_model_runs(server):
    """A million names (10 MB) cost +1.7 GB and 3.5 s in PyTorch's NMS if they reach it; a 422 must not echo them."""
    image = encode_base64(sample_scene()[0])
    million = {"image": image, "model": "shapes", "classes": [f"class{i}" for i in range(1_000_000)]}
    responses: list[httpx.Response] = []
    peak = peak_mb(
        server.pid,
        lambda: responses.append(httpx.post(server.url + "/predict", json=million, headers=AUTH, timeout=60)),
    )
    assert responses[0].status_code == 422 and responses[0].json()["error"] == "InvalidRequest"
    assert len(responses[0].content) < 1000 and peak < 80, (peak, responses[0].text[:200])

    thousand_and_one = {"image": image, "model": "shapes", "classes": [f"c{i}" for i in range(1001)]}
    too_many = httpx.post(server.url + "/predict", json=thousand_and_one, headers=AUTH, timeout=60)
    assert too_many.status_code == 422 and "at most 1,000" in too_many.json()["detail"]

    unknown = {"image": image, "model": "shapes", "classes": ["circle", *(f"nope{i}" for i in range(12))]}
    named = httpx.post(server.url + "/predict", json=unknown, headers=AUTH, timeout=60).json()
    assert "'nope0', 'nope1', 'nope2', 'nope3', 'nope4' and 7 more" in named["detail"]
    assert "nope5" not in named["detail"]

    repeated = {"image": image, "model": "shapes", "classes": ["circle"] * 900}
    result = httpx.post(server.url + "/predict", json=repeated, headers=AUTH, timeout=60)
    assert result.status_code == 200 and {d["class_name"] for d in result.json()["detections"]} <= {"circle"}

    form = post_file(server.url, encode_image(sample_scene()[0]), classes=",".join(f"c{i}" for i in range(5000)))
    assert form.status_code == 422 and form.json()["error"] == "InvalidRequest"


def test_big_json_is_refused_off_the_event_loop_without_becoming_objects(server):
    """Parsed on the event loop, 8 bodies of 25 MB of small numbers stall /health 3.8 s and add 1.3 GB."""
    image = encode_base64(sample_scene()[0])
    junk = b"[" + b"1," * 12_500_000 + b"1]"
    body = b'{"image": "' + image.encode() + b'", "model": "shapes", "ignored": ' + junk + b"}"
    statuses: list[int] = []
    healthy: list[bool] = []

    def attack() -> None:
        with ThreadPoolExecutor(8) as pool:

            def post(_: int) -> int:
                headers = {**AUTH, "content-type": "application/json"}
                return httpx.post(server.url + "/predict", content=body, headers=headers, timeout=120).status_code

            sent = [pool.submit(post, i) for i in range(8)]
            healthy.extend(health_answers(server.url) for _ in range(5))
            statuses.extend(f.result() for f in sent)

    peak = peak_mb(server.pid, attack)
    assert statuses == [422] * 8 and all(healthy)
    # At most two copies of each body (its chunks, joined), never the millions of objects it describes.
    assert peak < 8 * 2 * len(body) / MiB, f"+{peak:.0f} MB for 8 bodies of {len(body) / MiB:.0f} MB"


# --- the model cache ---


def test_every_model_name_loads_a_copy_but_at_most_max_models_stay(server):
    """Unbounded, one request per model in the weights folder keeps a copy of each (OpenVINO: 219 -> 819 MB after 7)."""
    image = encode_image(sample_scene()[0])
    for name in "abc":
        assert post_file(server.url, image, model=name).status_code == 200
    loaded = {
        name
        for name in ("shapes", "a", "b", "c")
        if httpx.get(f"{server.url}/models/{name}", headers=AUTH, timeout=30).json()["loaded"]
    }
    assert loaded == {"shapes", "c"}  # YOLO_SERVICE_MAX_MODELS=2: the default, and the last one used
    assert predicts(server.url)


# --- slow and silent clients (the server's own limits: one engine is enough) ---

ONE_ENGINE = pytest.mark.parametrize("server", ["openvino"], indirect=True)


@ONE_ENGINE
def test_silent_bodies_hold_no_place_in_the_queue_and_get_a_408(server):
    """32 requests with a Content-Length and no body, if they held the queue, would make every prediction a 503."""
    head = (
        f"POST /predict HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    silent = []
    for _ in range(Settings().max_queue + 8):
        sock = connect(server.url)
        sock.sendall(head)
        silent.append(sock)
    try:
        assert predicts(server.url) and health_answers(server.url)
        status, headers, body = read_answer(silent[0])  # within the socket's 30 s timeout
        assert status == 408 and headers["connection"] == "close"
        assert json.loads(body)["error"] == "RequestTimeout"
        trickle = connect(server.url)
        trickle.sendall(head)
        sent = 0
        trickle.settimeout(0.5)
        while True:  # one byte every half second: a body that never stops, never gets anywhere
            trickle.sendall(b" ")
            sent += 1
            try:
                answer = trickle.recv(65536)
                break
            except TimeoutError:
                assert sent < 60, "the trickle was never cut"
        assert answer.startswith(b"HTTP/1.1 408")
    finally:
        for sock in silent:
            sock.close()


@ONE_ENGINE
def test_idle_connections_are_closed(server):
    """uvicorn alone keeps 2,000 connections that send nothing open as long as they like (descriptors 14 -> 2,014)."""
    before = descriptors(server.pid)
    idle = [connect(server.url) for _ in range(300)]
    half = connect(server.url)
    half.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # half a request head, then nothing
    try:
        assert health_answers(server.url)
        deadline = time.monotonic() + 30
        while descriptors(server.pid) > before + 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert descriptors(server.pid) <= before + 5
        assert half.recv(100) == b""  # closed by the server
    finally:
        for sock in [*idle, half]:
            sock.close()


def test_idle_sockets_cannot_take_the_last_descriptors_from_health(local_models):
    """Under a 1,024-descriptor limit, 1,100 silent sockets would make /health fail with connection resets."""
    port = free_port()
    env = server_env("openvino", local_models, YOLO_SERVICE_IDLE_TIMEOUT="60")
    serve = f"{shlex.quote(executable('yolo-service'))} serve --host 127.0.0.1"
    argv = ["sh", "-c", f"ulimit -Sn 1024 && ulimit -Hn 1024 && exec {serve}"]
    with Server(argv, port, env=env, ready_path="/ready") as srv:
        idle = []
        try:
            for _ in range(1100):
                idle.append(connect(srv.url))
            assert health_answers(srv.url) and predicts(srv.url)
            assert descriptors(srv.pid) < 1024
        finally:
            for sock in idle:
                sock.close()


@ONE_ENGINE
def test_a_huge_header_is_refused_before_it_is_buffered(server):
    """With httptools, 4 connections each sending a 64 MB header stall /health for ~15 s and add 270 MB."""
    refused: list[int] = []

    def send_huge_header() -> None:
        sock = connect(server.url)
        sent = 0
        try:
            sock.sendall(b"GET /models HTTP/1.1\r\nHost: x\r\nX-Big: ")
            while sent < 64 * MiB:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except OSError:  # the server closed the connection: it will not read 64 MB
            pass
        refused.append(sent)
        sock.close()

    def attack() -> None:
        threads = [threading.Thread(target=send_huge_header) for _ in range(4)]
        for thread in threads:
            thread.start()
        assert health_answers(server.url)
        for thread in threads:
            thread.join()

    peak = peak_mb(server.pid, attack)
    assert len(refused) == 4 and max(refused) < 8 * MiB, refused  # not 64 MB: cut off near the cap
    assert peak < 20, f"+{peak:.0f} MB"
    many = httpx.get(server.url + "/health", headers={f"X-H{i}": "1" for i in range(150)}, timeout=5)
    assert many.status_code == 431 and many.json()["error"] == "HeadersTooLarge"
    with connect(server.url) as sock:  # 100 KB of header in one read: counted by the app
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        assert read_answer(sock)[0] in (400, 431)


@ONE_ENGINE
def test_pipelined_requests_are_read_one_at_a_time(server):
    """With httptools, 200,000 GET /health sent on one connection (6.6 MB), never read, add 355 MB that stay."""
    resident = rss_mib(server.pid)

    def pipeline() -> None:
        sock = connect(server.url)
        sock.setblocking(False)
        data = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 200_000
        sent, deadline = 0, time.monotonic() + 10
        while sent < len(data) and time.monotonic() < deadline:
            try:
                sent += sock.send(data[sent : sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)  # the server stopped reading: its answers are not being read either
        sock.close()

    peak = peak_mb(server.pid, pipeline)
    assert peak < 30, f"+{peak:.0f} MB"
    assert rss_mib(server.pid) < resident + 30
    assert health_answers(server.url)


@ONE_ENGINE
def test_multipart_and_header_edge_cases(server):
    """Starlette reads a file part without a filename as text (2,668 -> 3,399 bytes); of two image parts, one wins."""
    image, shapes = sample_scene()
    data = encode_image(image)
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"\r\n\r\n'.encode()
        + data
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nshapes\r\n'.encode()
        + f"--{boundary}--\r\n".encode()
    )
    headers = {**AUTH, "content-type": f"multipart/form-data; boundary={boundary}"}
    no_filename = httpx.post(server.url + "/predict/file", content=body, headers=headers, timeout=60)
    assert no_filename.status_code == 200, no_filename.text
    assert_finds(shapes, PredictResponse.model_validate(no_filename.json()).detections)
    two = httpx.post(
        server.url + "/predict/file",
        files=[("image", ("a.png", data)), ("image", ("b.png", data))],
        headers=AUTH,
        timeout=60,
    )
    assert two.status_code == 400 and two.json()["error"] == "MalformedRequest"
    twice = httpx.get(server.url + "/models", headers=[("X-API-Key", KEY), ("X-API-Key", "other")], timeout=10)
    assert twice.status_code == 401 and twice.json()["error"] == "Unauthorized"
    head = httpx.head(server.url + "/health", timeout=5)
    assert head.status_code == 200 and head.content == b""


# --- shutdown ---


@pytest.mark.parametrize("engine", ENGINES)
def test_requests_cut_by_shutdown_get_the_json_503(engine, local_models):
    """uvicorn answers requests it cancels at shutdown with a plain-text 500 and a traceback: the contract is JSON."""
    env = server_env(engine, local_models, YOLO_SERVICE_SHUTDOWN_TIMEOUT="1", YOLO_SERVICE_WORKERS="1")
    image = encode_image(sample_scene()[0].resize((3000, 2250)), "PNG")
    answers: list[tuple[object, ...]] = []
    with api_server(env) as srv:

        def post() -> None:
            try:
                r = post_file(srv.url, image)
                answers.append((r.status_code, r.headers.get("content-type"), r.headers.get("retry-after"), r.text))
            except httpx.HTTPError as exc:  # the connection closed: allowed, as an answer never started
                answers.append(("closed", type(exc).__name__))

        threads = [threading.Thread(target=post) for _ in range(20)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while metric(srv.url, "yolo_service_queue_depth") < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        srv.proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join()
        srv.proc.wait(timeout=30)
        log = srv.log()
    assert len(answers) == 20
    for answer in answers:
        if answer[0] == 503:
            assert answer[1] == "application/json" and answer[2] == "2", answer
            assert json.loads(str(answer[3]))["error"] == "ShuttingDown"
        else:
            assert answer[0] in (200, "closed"), answer
    assert sum(answer[0] == 503 for answer in answers) >= 10  # most were still running or waiting
    assert "Traceback" not in log and "Exception in ASGI application" not in log
