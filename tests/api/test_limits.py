"""The API's limits at their boundaries, in-process: at the limit accepted, one past it refused, with the
exact status and error name. The body limit (declared length and streamed), the request queue (it fills,
it empties, it counts only predictions), the contract's ranges on both predict routes, and which errors
carry ``Retry-After``.
"""

from __future__ import annotations

import io
import json
import math
import time

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from yolo_service import Settings, api, encode_base64, encode_image, sample_scene
from yolo_service.api import create_app

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
ABOVE_ONE = math.nextafter(1.0, 2.0)
BELOW_ZERO = math.nextafter(0.0, -1.0)


@pytest.fixture(scope="module")
def settings(weights_dir):
    # ONNX Runtime: the lightest engine to load; what is tested here is the API around it.
    return Settings(weights_dir=weights_dir, offline=True, engine="onnxruntime", max_image_bytes=30_000, retry_after=7)


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings)) as test_client:
        deadline = time.monotonic() + 120  # the lifespan loads the model in a background thread
        while test_client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield test_client


@pytest.fixture(scope="module")
def image():
    """A small scene (PNG, well under the byte limit) as base64."""
    return encode_base64(encode_image(sample_scene()[0].resize((160, 120))))


def assert_error(response: httpx.Response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    return body


# --- the body limit -----------------------------------------------------------------------------------------


def padded_json(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes that is not a valid request (no image): a 422 once read."""
    body = b'{"pad": ""}'
    return body[:-2] + b" " * (size - len(body)) + body[-2:]


def test_a_body_of_exactly_the_limit_is_read_one_byte_more_is_413(client, settings):
    limit = settings.max_body_bytes
    at_limit = client.post("/predict", content=padded_json(limit), headers={"content-type": "application/json"})
    assert_error(at_limit, 422, "InvalidRequest")  # read and parsed: refused for what it says, not its size
    over = client.post("/predict", content=padded_json(limit + 1), headers={"content-type": "application/json"})
    body = assert_error(over, 413, "ImageTooLarge")
    assert body["detail"] == f"the request body is larger than the limit of {limit:,} bytes"


def test_a_streamed_body_of_exactly_the_limit_is_read_one_byte_more_is_413(client, settings):
    """Chunked, without Content-Length: the limit counts the bytes as they arrive."""
    limit = settings.max_body_bytes

    def chunks(size: int):
        data = padded_json(size)
        for start in range(0, len(data), 4096):
            yield data[start : start + 4096]

    at_limit = client.post("/predict", content=chunks(limit), headers={"content-type": "application/json"})
    assert_error(at_limit, 422, "InvalidRequest")
    over = client.post("/predict", content=chunks(limit + 1), headers={"content-type": "application/json"})
    assert_error(over, 413, "ImageTooLarge")


@pytest.mark.parametrize("inline_bytes", [api.INLINE_JSON_BYTES, 0], ids=["parsed-on-the-loop", "parsed-in-a-thread"])
def test_json_values_exactly_at_the_limit_are_read_one_more_is_422(client, settings, image, monkeypatch, inline_bytes):
    """The values counted before parsing, on both sides of the size that sends the parsing to a worker thread."""
    monkeypatch.setattr(api, "INLINE_JSON_BYTES", inline_bytes)
    limit = settings.max_json_values

    def body(values: int) -> bytes:  # "{", the comma before "ignored", "[" and the commas between its numbers
        ones = ",".join(["1"] * (values - 2))
        return f'{{"image": "{image}", "ignored": [{ones}]}}'.encode()

    headers = {"content-type": "application/json"}
    alone = client.post("/predict", json={"image": image})
    at_limit = client.post("/predict", content=body(limit), headers=headers)
    assert at_limit.status_code == 200, at_limit.text
    assert at_limit.json()["detections"] == alone.json()["detections"] != []  # the ignored field is dropped
    over = assert_error(client.post("/predict", content=body(limit + 1), headers=headers), 422, "InvalidRequest")
    expected = f"the JSON body holds about {limit + 1:,} values; a predict request has at most {limit:,} "
    assert over["detail"].startswith(expected)


# --- the contract's ranges on both routes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "accepted", "refused", "kind"),
    [
        ("confidence", 1.0, ABOVE_ONE, "less_than_equal"),
        ("confidence", 0.0, BELOW_ZERO, "greater_than_equal"),
        ("iou", 1.0, ABOVE_ONE, "less_than_equal"),
        ("iou", 0.0, BELOW_ZERO, "greater_than_equal"),
        ("max_detections", 1000, 1001, "less_than_equal"),
        ("max_detections", 1, 0, "greater_than_equal"),
    ],
)
def test_each_range_at_its_limit_and_just_past_it(client, image, field, accepted, refused, kind):
    ok = client.post("/predict", json={"image": image, "model": "shapes", field: accepted})
    assert ok.status_code == 200, ok.text
    body = assert_error(client.post("/predict", json={"image": image, field: refused}), 422, "InvalidRequest")
    assert body["fields"][0]["loc"] == ["body", field] and body["fields"][0]["type"] == kind
    data = {"model": "shapes", field: repr(accepted)}
    files = {"image": ("scene.png", encode_image(sample_scene()[0].resize((160, 120))))}
    assert client.post("/predict/file", data=data, files=files).status_code == 200
    refused_form = client.post("/predict/file", data={field: repr(refused)}, files=files)
    assert_error(refused_form, 422, "InvalidRequest")


def test_max_detections_one_returns_at_most_one(client, image):
    everything = client.post("/predict", json={"image": image, "model": "shapes"}).json()["detections"]
    assert len(everything) >= 2
    best = client.post("/predict", json={"image": image, "model": "shapes", "max_detections": 1}).json()
    assert best["detections"] == everything[:1]


def test_a_one_character_image_is_read_an_empty_one_is_a_schema_error(client):
    assert_error(client.post("/predict", json={"image": "a"}), 400, "InvalidImage")  # past the schema: not base64
    body = assert_error(client.post("/predict", json={"image": ""}), 422, "InvalidRequest")
    assert body["fields"][0]["type"] == "string_too_short"


# --- Retry-After: only on 503 ---------------------------------------------------------------------------------


def test_only_unavailability_says_when_to_retry(client, image):
    unavailable = client.post("/predict", json={"image": image, "model": "yolo26n"})  # no weights offline
    assert_error(unavailable, 503, "ModelUnavailable")
    assert unavailable.headers["retry-after"] == "7"  # the configured delay
    for response in (
        client.post("/predict", json={"image": image, "model": "nope"}),  # 404
        client.post("/predict", json={"image": image, "confidence": 2}),  # 422
        client.post("/predict", json={"image": "%%%"}),  # 400
        client.post("/predict", content=padded_json(10**6), headers={"content-type": "application/json"}),  # 413
        client.get("/nowhere"),  # 404 from the framework
    ):
        assert response.status_code < 500 and "retry-after" not in response.headers, response.status_code


# --- admission: the request queue ------------------------------------------------------------------------------


def queue_depth(metrics: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith("yolo_service_queue_depth "))
    return float(line.split()[1])


@pytest.mark.anyio
async def test_a_full_queue_refuses_predictions_only_and_empties_again(weights_dir, image):
    """Every worker slot busy (the test holds the one slot), two predictions wait: the queue is full.

    A third prediction, on either route, is refused with 503 Overloaded and Retry-After, before its
    body is read; anything that is not a prediction is answered as usual. Once the slot is free, both
    waiting requests are answered and the queue is empty again, twice in a row.
    """
    settings = Settings(
        weights_dir=weights_dir,
        offline=True,
        preload=False,
        engine="onnxruntime",
        workers=1,
        max_queue=2,
        retry_after=3,
    )
    app = create_app(settings)
    service = app.state.service
    transport = httpx.ASGITransport(app=app)
    scene = encode_image(sample_scene()[0].resize((160, 120)))
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as http:

        async def predict(path: str, statuses: list[int]) -> None:
            if path == "/predict":
                response = await http.post(path, json={"image": image, "model": "shapes"})
            else:
                response = await http.post(path, data={"model": "shapes"}, files={"image": scene})
            statuses.append(response.status_code)

        for _ in range(2):  # twice: the count returns to zero after each round
            statuses: list[int] = []
            holder = object()
            await service.slots.acquire_on_behalf_of(holder)  # the one worker slot is busy
            async with anyio.create_task_group() as group:
                group.start_soon(predict, "/predict", statuses)
                group.start_soon(predict, "/predict/file", statuses)
                with anyio.fail_after(30):
                    while queue_depth((await http.get("/metrics")).text) < 2:
                        await anyio.sleep(0.01)
                # Full: one more prediction on either route is refused before its body is read.
                for path in ("/predict", "/predict/file"):
                    busy = await http.post(path, content=b"{}", headers={"content-type": "application/json"})
                    assert busy.status_code == 503 and busy.json()["error"] == "Overloaded"
                    assert busy.headers["retry-after"] == "3"
                    assert "2 requests in progress" in busy.json()["detail"]
                # Everything else is not queued: it is answered as usual.
                assert (await http.get("/health")).status_code == 200
                assert (await http.get("/models")).status_code == 200
                assert (await http.get("/predict")).status_code == 405  # a predict path, not a prediction
                assert (await http.post("/models/shapes")).status_code == 405
                assert queue_depth((await http.get("/metrics")).text) == 2
                service.slots.release_on_behalf_of(holder)
            assert statuses == [200, 200]  # both waiting requests were answered
            assert queue_depth((await http.get("/metrics")).text) == 0
        # One at a time, many in a row: each leaves the queue as it found it.
        for _ in range(5):
            assert (await http.post("/predict", json={"image": image, "model": "shapes"})).status_code == 200
        metrics = (await http.get("/metrics")).text
        assert queue_depth(metrics) == 0
        # Each refusal was counted once, by route and status (2 rounds x 1 per route).
        for route in ("/predict", "/predict/file"):
            assert f'yolo_service_requests_total{{method="POST",route="{route}",status="503"}} 2.0' in metrics


@pytest.fixture
def anyio_backend():
    return "asyncio"


# --- error rendering --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_client_that_leaves_while_waiting_for_a_slot_is_dropped_and_logged_as_499(weights_dir, image, caplog):
    """The one worker slot held by the test: the request waits; its client disconnects; it is dropped, never run."""
    settings = Settings(weights_dir=weights_dir, offline=True, preload=False, engine="onnxruntime", workers=1)
    app = create_app(settings)
    service = app.state.service
    body = json.dumps({"image": image, "model": "shapes"}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    left = anyio.Event()
    messages: list[dict] = []
    delivered = False

    async def receive() -> dict:  # the whole body, then (once the test says so) the client is gone
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        messages.append(message)

    service.registry.get("shapes")  # loaded: the request goes straight to waiting for the slot
    holder = object()
    await service.slots.acquire_on_behalf_of(holder)
    with caplog.at_level("INFO", logger="yolo_service.api"):
        async with anyio.create_task_group() as group:
            group.start_soon(app, scope, receive, send)
            with anyio.fail_after(30):
                while service.in_flight < 1:
                    await anyio.sleep(0.01)
            assert service.slots.borrowed_tokens == 1 and messages == []  # waiting, unanswered
            left.set()
    service.slots.release_on_behalf_of(holder)
    assert messages[0]["status"] == 499
    assert json.loads(messages[1]["body"])["error"] == "ClientDisconnected"
    assert service.in_flight == 0 and service.slots.borrowed_tokens == 0  # nothing kept, the slot never taken
    lines = [r.getMessage() for r in caplog.records if r.name == "yolo_service.api"]
    assert [line for line in lines if "POST /predict 499 " in line], lines


def test_a_schema_error_lists_five_problems_and_counts_the_rest(client):
    seven = {
        "image": 1,
        "model": 2,
        "confidence": "x",
        "iou": "y",
        "max_detections": "z",
        "annotate": "w",
        "classes": 3,
    }
    body = assert_error(client.post("/predict", json=seven), 422, "InvalidRequest")
    assert len(body["fields"]) == 7
    summary = body["detail"].removeprefix("the request does not match the schema (see /docs): ")
    assert summary.endswith(" (and 2 more)") and summary.count("; ") == 4
    five = {"image": 1, "model": 2, "confidence": "x", "iou": "y", "max_detections": "z"}
    body = assert_error(client.post("/predict", json=five), 422, "InvalidRequest")
    assert len(body["fields"]) == 5 and "more)" not in body["detail"] and body["detail"].count("; ") == 4
    six = {**five, "annotate": "w"}
    assert assert_error(client.post("/predict", json=six), 422, "InvalidRequest")["detail"].endswith(" (and 1 more)")


def test_a_schema_error_names_the_field_without_where_it_came_from(client):
    body = assert_error(client.post("/predict", json={"image": "x", "confidence": 2}), 422, "InvalidRequest")
    assert "(see /docs): confidence: " in body["detail"] and "body.confidence" not in body["detail"]
    body = assert_error(client.post("/predict", json={"image": "x", "classes": ["a", 3]}), 422, "InvalidRequest")
    assert body["fields"][0]["loc"] == ["body", "classes", 1]  # a list index stays a number
    assert "(see /docs): classes.1: " in body["detail"]
    body = assert_error(client.post("/predict", json=[]), 422, "InvalidRequest")  # the body itself is wrong
    assert "(see /docs): body: " in body["detail"]


def test_broken_json_says_where_it_breaks(client):
    broken = client.post("/predict", content=b'{"image": ', headers={"content-type": "application/json"})
    body = assert_error(broken, 422, "InvalidRequest")
    assert body["fields"][0]["type"] == "json_invalid"
    assert body["fields"][0]["msg"].startswith("JSON decode error: ") and len(body["fields"][0]["msg"]) > 20


def test_an_unparsable_multipart_body_keeps_the_framework_s_reason(client):
    response = client.post("/predict/file", content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
    body = assert_error(response, 400, "MalformedRequest")
    assert body["detail"].startswith("Missing boundary")  # Starlette's own words, not just "Bad Request"


def test_a_wrong_api_key_is_told_apart_from_a_missing_one(weights_dir):
    settings = Settings(weights_dir=weights_dir, offline=True, preload=False, api_key="k3y")
    with TestClient(create_app(settings)) as keyed:
        wrong = assert_error(keyed.get("/models", headers={"X-API-Key": "nope"}), 401, "Unauthorized")
        assert "the request sent a wrong API key" in wrong["detail"]
        missing = assert_error(keyed.post("/predict", content=padded_json(10**6)), 401, "Unauthorized")
        assert "the request sent no API key" in missing["detail"]  # before the body is even measured
        assert keyed.get("/ready").status_code == 200  # open paths stay open


# --- the request log ---------------------------------------------------------------------------------------------


def test_each_request_is_logged_once_with_its_status_and_a_duration_in_milliseconds(client, caplog):
    with caplog.at_level("INFO", logger="yolo_service.api"):
        client.get("/version")
        client.post("/predict", content=padded_json(10**6), headers={"content-type": "application/json"})
    lines = [r.getMessage() for r in caplog.records if r.name == "yolo_service.api"]
    version = [line for line in lines if "GET /version 200 " in line]
    refused = [line for line in lines if "POST /predict 413 " in line]  # refused before any route: logged too
    assert len(version) == 1 and len(refused) == 1, lines
    for line in version + refused:
        milliseconds = float(line.split()[-2])
        assert line.endswith(" ms") and 0 <= milliseconds < 60_000, line


def test_an_image_with_an_exif_block_cut_short_is_served_not_a_500(client):
    buffer = io.BytesIO()
    sample_scene()[0].resize((160, 120)).save(buffer, "PNG", exif=b"II*\x00")  # Pillow: struct.error
    response = client.post("/predict", json={"image": encode_base64(buffer.getvalue()), "model": "shapes"})
    assert response.status_code == 200, response.text
    assert response.json()["image"] == {"width": 160, "height": 120}


# --- the request head ----------------------------------------------------------------------------------------------


def head_of(client: TestClient, extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """The header lines the test client sends to /version with ``extra``."""
    return client.build_request("GET", "/version", headers=extra).headers.raw


def test_headers_exactly_at_the_count_are_read_one_more_is_431(weights_dir):
    settings = Settings(weights_dir=weights_dir, offline=True, preload=False, max_header_count=20)
    with TestClient(create_app(settings)) as limited:
        default = len(head_of(limited, {}))
        at_limit = {f"x-h{i}": "v" for i in range(20 - default)}
        assert len(head_of(limited, at_limit)) == 20
        assert limited.get("/version", headers=at_limit).status_code == 200
        over = limited.get("/version", headers={**at_limit, "x-one-more": "v"})
        body = assert_error(over, 431, "HeadersTooLarge")
        assert "21 headers" in body["detail"] and over.headers["connection"] == "close"


def test_header_bytes_exactly_at_the_limit_are_read_one_more_is_431(weights_dir):
    settings = Settings(weights_dir=weights_dir, offline=True, preload=False, max_header_bytes=2048)
    with TestClient(create_app(settings)) as limited:
        size = sum(len(name) + len(value) + 4 for name, value in head_of(limited, {"x-pad": ""}))  # "name: value\r\n"
        at_limit = {"x-pad": "p" * (2048 - size)}
        assert limited.get("/version", headers=at_limit).status_code == 200
        over = limited.get("/version", headers={"x-pad": "p" * (2048 - size + 1)})
        assert "2,049 bytes" in assert_error(over, 431, "HeadersTooLarge")["detail"]


def test_the_body_limit_also_counts_a_streamed_body_on_any_other_route(settings):
    """The API's only routes with a body are the predict ones (counted as Admission reads them); a route
    added later that reads a body is covered too: the same limit, counted as the bytes arrive."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from yolo_service.api import BodyLimit

    async def echo(request):
        return JSONResponse(len(await request.body()))

    app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
    app.add_middleware(BodyLimit, settings=settings)
    limit = settings.max_body_bytes

    def chunks(size: int):
        for start in range(0, size, 4096):
            yield b"x" * min(4096, size - start)

    with TestClient(app) as plain:
        assert plain.post("/echo", content=chunks(limit)).json() == limit
        assert plain.post("/echo", content=chunks(limit + 1)).status_code == 413
