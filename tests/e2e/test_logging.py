"""The API's logs as Cloud Run receives them, and one request id from the client to the API's entries.

Real server processes on loopback ports. On Cloud Run every line a container writes becomes one
Cloud Logging entry, so with ``K_SERVICE`` set every line of stdout and stderr must be one JSON
object with ``severity`` and ``message``, a traceback included; a request's entries carry its
trace id, and the client's calls are found in the API's log by the id the client reports.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
import time

import httpx
import pytest

from tests.e2e.faulty_app import FAILURE_HEADER, PRINT_HEADER
from tests.helpers import Server, free_port, logged_line
from yolo_service import BackendUnreachable, Client, UnknownModel, encode_image, sample_scene
from yolo_service.client import new_traceparent

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PROJECT = "demo-project"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
CLOUD_TRACE = "105445aa7843bc8bf206b12000100000"


def entries(server: Server) -> list[dict]:
    """Every line the server wrote, stdout and stderr, each parsed as one JSON entry (a line that is not fails)."""
    parsed = []
    for number, line in enumerate(server.log().splitlines(), 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"line {number} is not a JSON entry: {line!r}")
        assert isinstance(entry, dict) and {"severity", "message"} <= set(entry), line
        parsed.append(entry)
    return parsed


def entries_of(server: Server, request_id: str, count: int, timeout: float = 10.0) -> list[dict]:
    """The entries of one request, once ``count`` of them are written (the log writer is a thread: poll)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in entries(server) if e.get("request_id") == request_id]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cloud_run(tmp_path_factory):
    """The fault-injecting server as Cloud Run runs it: K_SERVICE and the project set, a fresh Ultralytics config.

    A fresh YOLO_CONFIG_DIR makes Ultralytics print that it creates its settings file: plain text from a
    library, which must reach the log as JSON entries too.
    """
    env = {
        "K_SERVICE": "yolo-backend",
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "YOLO_SERVICE_REPLICAS": "1",
        "YOLO_SERVICE_ENGINE": "ultralytics",  # PyTorch's engine, forced: Ultralytics' own prints are under test
        "YOLO_CONFIG_DIR": str(tmp_path_factory.mktemp("ultralytics")),
    }
    argv = [sys.executable, "-m", "tests.e2e.faulty_app", "--host", "127.0.0.1"]
    with Server(argv, free_port(), env=env, ready_path="/ready") as server:
        yield server


def test_a_request_with_a_traceparent_is_answered_with_its_id_and_logged_under_its_trace(cloud_run):
    data = encode_image(sample_scene()[0])
    response = httpx.post(
        cloud_run.url + "/predict/file",
        files={"image": ("scene.png", data)},
        data={"model": "shapes"},
        headers={"traceparent": f"00-{TRACE}-{SPAN}-01", "User-Agent": "test-agent"},
        timeout=60,
    )
    assert response.status_code == 200 and response.headers["X-Request-ID"] == TRACE
    assert response.json()["request_id"] == TRACE
    [entry] = entries_of(cloud_run, TRACE, 1)
    assert entry["severity"] == "INFO" and entry["message"].startswith("POST /predict/file 200 ")
    assert entry["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE}"
    assert entry["logging.googleapis.com/spanId"] == SPAN and entry["logging.googleapis.com/trace_sampled"] is True
    assert {k: entry[k] for k in ("method", "path", "status", "model", "engine", "image_size")} == {
        "method": "POST",
        "path": "/predict/file",
        "status": 200,
        "model": "shapes",
        "engine": "ultralytics",
        "image_size": "640x480",
    }
    assert entry["bytes_in"] > len(data) and entry["bytes_out"] == len(response.content) and entry["latency_ms"] > 0
    http_request = entry["httpRequest"]
    assert http_request["requestMethod"] == "POST" and http_request["requestUrl"] == "/predict/file"
    assert http_request["status"] == 200 and http_request["userAgent"] == "test-agent"
    assert re.fullmatch(r"\d+\.\d{6}s", http_request["latency"])
    assert http_request["responseSize"] == str(len(response.content))


def test_cloud_runs_own_trace_header_is_read_too_and_a_4xx_is_a_warning(cloud_run):
    response = httpx.get(cloud_run.url + "/models/nope", headers={"X-Cloud-Trace-Context": f"{CLOUD_TRACE}/1;o=1"})
    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == CLOUD_TRACE == response.json()["request_id"]
    [entry] = entries_of(cloud_run, CLOUD_TRACE, 1)
    assert entry["severity"] == "WARNING" and entry["status"] == 404 and entry["error"] == "UnknownModel"
    assert entry["logging.googleapis.com/spanId"] == "0000000000000001"


def test_without_a_trace_header_the_server_makes_an_id(cloud_run):
    malformed = "00-00000000000000000000000000000000-00f067aa0ba902b7-01"  # an all-zero trace id is invalid
    response = httpx.get(cloud_run.url + "/models", headers={"traceparent": malformed})
    made = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made) and made != "0" * 32
    [entry] = entries_of(cloud_run, made, 1)
    assert entry["message"].startswith("GET /models 200")


def test_an_unexpected_exception_is_one_error_entry_with_its_traceback_inside(cloud_run):
    traceparent = new_traceparent()
    trace = traceparent.split("-")[1]
    headers = {FAILURE_HEADER: "1", "traceparent": traceparent}
    response = httpx.post(cloud_run.url + "/predict", json={"image": "x"}, headers=headers)
    assert response.status_code == 500 and response.json()["request_id"] == trace
    found = entries_of(cloud_run, trace, 2)
    [failure] = [e for e in found if "Traceback" in e["message"]]
    assert failure["severity"] == "ERROR" and failure["message"].startswith("unexpected error in POST /predict\n")
    assert "RuntimeError: injected failure" in failure["message"] and failure["path"] == "/predict"
    [line] = [e for e in found if e is not failure]
    assert line["severity"] == "ERROR" and line["message"].startswith("POST /predict 500")


def test_a_library_that_prints_plain_text_still_writes_json_entries(cloud_run):
    text = "a library's own words, printed"
    response = httpx.get(cloud_run.url + "/models", headers={PRINT_HEADER: text})
    assert response.status_code == 200
    deadline = time.monotonic() + 10
    while len(printed := [e for e in entries(cloud_run) if e["message"] == text]) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted((e["logger"], e["severity"]) for e in printed) == [("stderr", "WARNING"), ("stdout", "INFO")]
    # Printed while serving the request: the entries carry its id.
    assert {e["request_id"] for e in printed} == {response.headers["X-Request-ID"]}


def test_every_line_to_the_last_is_a_json_entry_after_a_clean_shutdown(cloud_run):
    """Run last in this module: SIGTERM ends the module's server, then its whole output is read."""
    cloud_run.proc.send_signal(signal.SIGTERM)
    cloud_run.proc.wait(timeout=30)
    found = entries(cloud_run)  # fails on the first line that is not a JSON entry
    messages = [e["message"] for e in found]
    assert "Application shutdown complete." in messages and any(m.startswith("Started server") for m in messages)
    assert {e["severity"] for e in found} <= {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def test_the_client_sends_its_trace_and_reports_the_id_the_api_logged(backend, caplog):
    image, _ = sample_scene()
    trace = "0af7651916cd43dd8448eb211c80319c"
    with Client(backend.url) as client, caplog.at_level(logging.INFO, logger="yolo_service.client"):
        given = client.predict(image, "shapes", traceparent=new_traceparent(trace))
        made = client.predict(image, "shapes", multipart=True)
        with pytest.raises(UnknownModel) as refused:
            client.predict(image, "nope")
    assert given.request_id == trace
    assert re.fullmatch(r"[0-9a-f]{32}", made.request_id) and made.request_id != trace
    assert re.fullmatch(r"[0-9a-f]{32}", refused.value.request_id)
    calls = [
        (trace, "POST /predict 200"),
        (made.request_id, "POST /predict/file 200"),
        (refused.value.request_id, "POST /predict 404"),
    ]
    for request_id, line in calls:
        assert logged_line(backend, f"[{request_id}]", line)  # the API's entry, under the id the client reports
    # The client's own line per call, with the same id: what the UI's log shows next to the API's.
    lines = [(r.request_id, r.getMessage()) for r in caplog.records if r.name == "yolo_service.client"]
    assert len(lines) == 3 and [i for i, _ in lines] == [i for i, _ in calls]
    for (_, message), (_, line) in zip(lines, calls, strict=True):
        method, path, status = line.split()
        assert message.startswith(f"{method} {backend.url}{path} {status} "), message


def test_with_no_answer_the_error_carries_the_id_that_was_sent():
    with Client(f"http://127.0.0.1:{free_port()}", timeout=2) as dead, pytest.raises(BackendUnreachable) as info:
        dead.predict(b"not even read", traceparent=new_traceparent(TRACE))
    assert info.value.request_id == TRACE
