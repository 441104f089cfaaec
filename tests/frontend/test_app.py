"""The Streamlit script's logic with ``AppTest``, against a real backend process where it needs one."""

from __future__ import annotations

import http.server
import re
import threading
import time

import httpx
import pytest
from streamlit.testing.v1 import AppTest

import yolo_service
from tests.helpers import ROOT, free_port, logged_line

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
APP = str(ROOT / "frontend" / "app.py")


def app(url: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.text_input(key="backend_url").set_value(url).run()
    for key, value in state.items():
        at.session_state[key] = value
    return at


def test_defaults_come_from_backend_url(monkeypatch):
    monkeypatch.setenv("BACKEND_URL", "http://backend:8000")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert at.text_input(key="backend_url").value == "http://backend:8000"
    assert at.button(key="predict").disabled is True  # nothing to predict yet
    assert not at.exception


def texts(at: AppTest) -> list[str]:
    """What the page shows as plain text (the backend's and the network's words)."""
    return [element.value for element in at.text]


def test_is_alive_with_a_running_backend(backend):
    at = app(backend.url)
    at.button(key="is_alive").click().run()
    assert not at.exception and not at.error
    assert at.sidebar.success[0].value == "Backend is alive"
    ready = httpx.get(backend.url + "/ready", timeout=30).json()  # the engine this machine serves shapes on
    serving = f"default model shapes on {ready['engine']} ({ready['precision']})"
    assert at.sidebar.text[0].value == f"yolo-service {yolo_service.__version__}, {serving}"
    assert "shapes" in at.sidebar.text[1].value
    assert "shapes" in at.selectbox(key="model").options


def test_is_alive_with_a_dead_backend_gives_a_hint_not_a_traceback():
    url = f"http://127.0.0.1:{free_port()}"
    at = app(url)
    at.button(key="is_alive").click().run()
    assert not at.exception
    assert at.sidebar.error[0].value.startswith("The backend is not reachable.")
    assert "http://backend:8000" in at.sidebar.error[0].value
    assert at.sidebar.text[0].value.startswith(f"{url}: ")
    assert "Cannot list the backend's models" in at.warning[0].value


def test_predict_a_sample_lists_the_shapes(backend):
    at = app(backend.url)
    at.radio(key="source").set_value("Try a sample").run()
    at.selectbox(key="model").set_value("shapes").run()
    assert at.multiselect(key="classes").options == ["circle", "square", "triangle"]
    at.button(key="predict").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert sorted(table["class_name"]) == ["circle", "square"]
    assert table.loc[table["class_name"] == "square", ["x_min", "y_min"]].iloc[0].between(90, 110).all()
    assert [m.label for m in at.metric] == ["Server processing time", "Round-trip time", "Detections"]
    assert at.metric[2].value == "2"


def test_upload_a_file_and_filter_classes(backend):
    from yolo_service import encode_image, sample_scene

    at = app(backend.url)
    at.selectbox(key="model").set_value("shapes").run()
    at.multiselect(key="classes").set_value(["circle"]).run()
    at.file_uploader(key="upload").set_value(("scene.png", encode_image(sample_scene()[0]), "image/png")).run()
    at.button(key="predict").click().run()
    assert not at.exception and not at.error
    assert list(at.dataframe[0].value["class_name"]) == ["circle"]


def test_test_mode_fakes_a_labelled_response_without_a_backend():
    at = app(f"http://127.0.0.1:{free_port()}")
    at.toggle(key="test_mode").set_value(True).run()
    at.radio(key="source").set_value("Try a sample").run()
    at.button(key="predict").click().run()
    assert not at.exception and not at.error
    assert at.info[0].value.startswith("TEST MODE")
    assert sorted(at.dataframe[0].value["class_name"]) == ["circle", "square"]


def test_errors_are_messages(backend):
    at = app(backend.url)
    at.file_uploader(key="upload").set_value(("notes.png", b"this is not an image", "image/png")).run()
    at.button(key="predict").click().run()
    assert not at.exception
    assert at.error[0].value == "This file cannot be used:" and any("not an image" in text for text in texts(at))
    dead = app(f"http://127.0.0.1:{free_port()}")
    dead.radio(key="source").set_value("Try a sample").run()
    dead.button(key="predict").click().run()
    assert not dead.exception and "is not reachable" in dead.error[0].value


class FaultyBackend:
    """A real HTTP server on a loopback port that answers every request in one faulty way.

    It stands where the backend should be, so the UI's whole path runs: the client's
    request, its timeout, the status and the body it gets back.
    """

    def __init__(self, status: int = 200, body: bytes = b"", content_type: str = "application/json", delay: float = 0):
        fault = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(fault.delay)
                try:
                    self.send_response(fault.status)
                    self.send_header("Content-Type", fault.content_type)
                    self.send_header("Content-Length", str(len(fault.body)))
                    self.end_headers()
                    self.wfile.write(fault.body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up first (the timeout case)
                    pass

            do_GET = do_POST = answer

            def log_message(self, *args: object) -> None:  # quiet
                pass

        self.status, self.body, self.content_type, self.delay = status, body, content_type, delay
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultyBackend:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def short_ui_timeout(monkeypatch):
    """The UI waits 1 s for the backend (YOLO_SERVICE_UI_TIMEOUT), for this test only."""
    from yolo_service.config import get_settings

    monkeypatch.setenv("YOLO_SERVICE_UI_TIMEOUT", "1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def predict_a_sample(url: str) -> AppTest:
    at = app(url)
    at.radio(key="source").set_value("Try a sample").run()
    return at.button(key="predict").click().run()


def no_traceback(at: AppTest) -> None:
    assert not at.exception
    shown = [element.value for element in (*at.error, *at.warning, *at.markdown, *at.text)]
    assert not [text for text in shown if "Traceback" in str(text)]


FAULTS = {  # what the backend answers: what the page says (its box, then the text under it)
    "5xx with an HTML page": (  # the page's text is not echoed: it is whatever the server at that URL says
        dict(status=502, body=b"<html><body>Gateway says: visit evil.example</body></html>", content_type="text/html"),
        "502 Bad Gateway: not the JSON error of a yolo-service backend: is this the right URL?",
    ),
    "500 with JSON": (
        dict(status=500, body=b'{"detail": "boom", "error": "YoloServiceError"}'),
        "boom",
    ),
    "redirect": (
        dict(status=302, body=b"", content_type="text/html"),
        "302 Found: a redirect, which the client does not follow",
    ),
    "200 with cut-off JSON": (
        dict(status=200, body=b'{"model": "shapes", "detections": ['),
        "answered 200 with a body that is not JSON",
    ),
    "200 with an HTML page": (
        dict(status=200, body=b"<!doctype html><title>Streamlit</title>", content_type="text/html"),
        "is this the URL of a yolo-service backend?",
    ),
    "200 with JSON that is not a prediction": (
        dict(status=200, body=b'{"unexpected": true}'),
        "answered JSON that is not a PredictResponse",
    ),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_faulty_backend_gives_a_message_not_a_traceback(fault):
    options, message = FAULTS[fault]
    with FaultyBackend(**options) as backend:
        at = predict_a_sample(backend.url)
        no_traceback(at)
        assert at.main.error[0].value.startswith("The backend failed to answer"), at.main.error[0].value
        assert message in at.main.text[-1].value, at.main.text[-1].value
        assert "result" not in at.session_state
        at.button(key="is_alive").click().run()  # the sidebar's check: a message too
        no_traceback(at)
        if "PredictResponse" not in message:  # /health has no model to check the JSON against
            assert message in at.sidebar.text[0].value, at.sidebar.text[0].value
        assert not [text for text in texts(at) if "evil.example" in text]


def test_a_backend_slower_than_the_timeout_gives_a_message(short_ui_timeout):
    with FaultyBackend(body=b"[]", delay=3) as backend:
        started = time.monotonic()
        at = predict_a_sample(backend.url)
        no_traceback(at)
        assert at.main.error[0].value.startswith("The backend did not answer within 1 s")
        assert "Try again in a moment" in at.main.error[0].value
        assert f"Backend at {backend.url}" in texts(at)
        assert "Cannot list the backend's models" in at.warning[0].value
        assert time.monotonic() - started < 30  # each call gave up after 1 s, not after the 3 s answer


def shown_request_ids(at: AppTest) -> list[str]:
    return [t.value.removeprefix("Request id: ") for t in at.text if t.value.startswith("Request id: ")]


def test_a_result_and_an_error_show_the_request_id_that_the_ui_and_the_backend_both_logged(backend, caplog):
    with caplog.at_level("INFO", logger="yolo_service.client"):
        at = predict_a_sample(backend.url)
    assert not at.exception and not at.error
    [request_id] = shown_request_ids(at)
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert at.session_state["result"]["response"].request_id == request_id
    assert logged_line(backend, f"[{request_id}]", "POST /predict/file 200")  # the API's entry for this call
    calls = [r for r in caplog.records if r.name == "yolo_service.client" and "/predict/file 200" in r.getMessage()]
    assert [r.request_id for r in calls] == [request_id]  # the UI's one line for this call

    at.selectbox(key="model").set_value("yolo26n").run()  # listed, but not on disk offline: a 503 to show
    at.button(key="predict").click().run()
    assert not at.exception and at.error and any("not available offline" in t.value for t in at.text)
    refused_id, kept_id = shown_request_ids(at)  # under the error its id; the previous result keeps its own
    assert kept_id == request_id and refused_id != request_id
    assert logged_line(backend, f"[{refused_id}]", "POST /predict/file 503")
