"""The Python client against a scripted HTTP server on loopback: what it sends, and what it makes of each answer.

The server answers what each test tells it to (any status, header and body, JSON or not), as a proxy,
a load balancer or another service at the wrong URL would, and records the requests it got. The real
API is the client's other side in tests/api/test_api.py and tests/e2e.
"""

from __future__ import annotations

import base64
import email.parser
import http.server
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from yolo_service import Client
from yolo_service.errors import (
    BackendUnreachable,
    ClientDisconnected,
    HeadersTooLarge,
    ImageTooLarge,
    InternalError,
    InvalidImage,
    InvalidRequest,
    MethodNotAllowed,
    Overloaded,
    RequestTimeout,
    ServiceUnavailable,
    Unauthorized,
    UnknownModel,
    UnsupportedImageFormat,
    YoloServiceError,
)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    delay: float = 0.0
    chunked: bool = False  # no Content-Length: the body's size is known only once read
    pause: float = 0.0  # seconds between chunks (a backend that trickles)
    barrier: threading.Barrier | None = None  # answer only once this many requests are in


@dataclass
class Scripted:
    """A loopback HTTP server that answers ``answers[path]`` and keeps every request it got."""

    url: str
    answers: dict[str, Answer]
    requests: list[dict] = field(default_factory=list)

    def answer(self, path: str, status: int = 200, body: object = None, **headers: str) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
        kind = "application/json" if not isinstance(body, bytes) else "text/html"
        self.answers[path] = Answer(status, data, {"content-type": kind, **headers})


@pytest.fixture
def server() -> Iterator[Scripted]:
    answers: dict[str, Answer] = {}
    requests: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real backends

        def handle_one(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": self.rfile.read(length),
                    "connection": self.client_address,
                }
            )
            answer = answers.get(self.path, Answer(404, b'{"detail": "no such route", "error": "NotFound"}'))
            time.sleep(answer.delay)
            if answer.barrier is not None:
                answer.barrier.wait(timeout=30)
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if answer.chunked:
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for start in range(0, len(answer.body), 1000):
                    piece = answer.body[start : start + 1000]
                    try:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    except OSError:  # the client gave up
                        return
                    time.sleep(answer.pause)
                self.wfile.write(b"0\r\n\r\n")
                return
            self.send_header("content-length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = handle_one

        def log_message(self, *args: object) -> None:  # quiet
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield Scripted(f"http://127.0.0.1:{httpd.server_address[1]}", answers, requests)
    finally:
        httpd.shutdown()
        httpd.server_close()


def dead_url() -> str:
    from tests.helpers import free_port

    return f"http://127.0.0.1:{free_port()}"


# --- Client.ready() ---------------------------------------------------------------------------------------------


def test_ready_is_true_on_200(server):
    server.answer("/ready", 200, {"status": "ready", "default_model": "shapes"})
    assert Client(server.url).ready() is True


def test_readiness_says_the_default_model_and_the_engine_or_none_while_loading(server):
    server.answer(
        "/ready", 200, {"status": "ready", "default_model": "mine", "engine": "openvino", "precision": "bf16"}
    )
    ready = Client(server.url).readiness()
    assert (ready.default_model, ready.engine, ready.precision) == ("mine", "openvino", "bf16")
    server.answer("/ready", 200, {"status": "ready", "default_model": "old"})  # an older server: no engine said
    assert Client(server.url).readiness().engine is None
    server.answer("/ready", 503, {"detail": "the default model is still loading", "error": "NotReady"})
    assert Client(server.url).readiness() is None


def test_a_ready_answer_that_is_not_the_api_s_is_said(server):
    server.answer("/ready", 200, {"status": "fine"})
    with pytest.raises(YoloServiceError, match=r"answered JSON that is not a ReadyResponse \(2 problems\)"):
        Client(server.url).ready()


@pytest.mark.parametrize(
    "body",
    [
        {"detail": "the default model is still loading", "error": "NotReady"},
        {"detail": "busy", "error": "Overloaded"},
        b"<html>503 Service Unavailable</html>",  # a load balancer's page, not the API
    ],
)
def test_ready_is_false_on_503(server, body):
    server.answer("/ready", 503, body)
    assert Client(server.url).ready() is False


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"detail": "this service requires an API key", "error": "Unauthorized"}, Unauthorized),
        (500, {"detail": "internal error", "error": "InternalError"}, InternalError),
        (404, b"<html>not found</html>", UnknownModel),
    ],
)
def test_ready_raises_on_anything_else(server, status, body, error):
    server.answer("/ready", status, body)
    with pytest.raises(error):
        Client(server.url).ready()


def test_ready_raises_when_nothing_answers():
    """No backend is not "not ready yet": the URL is wrong or the server is down, and that is said."""
    url = dead_url()
    with pytest.raises(BackendUnreachable, match=f"cannot reach the backend at {url}"):
        Client(url).ready()


# --- the status -> error class table (answers without the API's error name) -------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidImage),
        (401, Unauthorized),
        (404, UnknownModel),
        (405, MethodNotAllowed),
        (413, ImageTooLarge),
        (415, UnsupportedImageFormat),
        (422, InvalidRequest),
        (408, RequestTimeout),
        (431, HeadersTooLarge),
        (499, ClientDisconnected),  # nginx's "the client left"
        (500, InternalError),
        (503, ServiceUnavailable),
        (418, YoloServiceError),  # a status the API never answers: the base class
        (502, YoloServiceError),
    ],
)
def test_an_answer_without_an_error_name_is_typed_by_its_status(server, status, error):
    """E.g. a proxy's 413 page in front of the API: still an ImageTooLarge for the caller, its text not echoed."""
    server.answer("/models", status, b"<html><body>proxy says no</body></html>")
    with pytest.raises(YoloServiceError) as info:
        Client(server.url).models()
    assert type(info.value) is error
    assert str(info.value).startswith(f"{status} ") and "not the JSON error of a yolo-service backend" in str(
        info.value
    )
    assert "proxy says no" not in str(info.value)


def test_the_error_name_wins_over_the_status_and_an_unknown_one_falls_back_to_it(server):
    server.answer("/models", 503, {"detail": "the server is busy", "error": "Overloaded"}, **{"retry-after": "4"})
    with pytest.raises(Overloaded, match="^the server is busy$") as info:
        Client(server.url).models()
    assert info.value.retry_after == 4
    server.answer("/models", 404, {"detail": "gone", "error": "SomethingNew"})  # not the kit's: typed by status
    with pytest.raises(UnknownModel, match="^404 Not Found: not the JSON error"):
        Client(server.url).models()


@pytest.mark.parametrize(
    ("header", "seconds"), [("9", 9), ("99999", 99999), ("123456", None), ("soon", None), ("", None)]
)
def test_retry_after_is_read_when_it_is_a_number(server, header, seconds):
    server.answer("/ready", 500, {"detail": "x", "error": "InternalError"}, **{"retry-after": header})
    with pytest.raises(InternalError) as info:
        Client(server.url).ready()
    assert info.value.retry_after == seconds


def test_a_list_detail_is_typed_by_the_status_and_not_echoed(server):
    server.answer("/models", 422, {"detail": [{"loc": ["body", "image"], "msg": "Field required"}]})
    with pytest.raises(InvalidRequest, match="^422 Unprocessable Entity: not the JSON error") as info:
        Client(server.url).models()
    assert "Field required" not in str(info.value)


def test_a_success_that_is_not_json_or_not_the_contract_is_a_typed_error(server):
    server.answer("/models", 200, b"<html>a login page</html>")
    with pytest.raises(YoloServiceError, match="answered 200 with a body that is not JSON"):
        Client(server.url).models()
    server.answer("/models/shapes", 200, {"unexpected": True})
    with pytest.raises(YoloServiceError, match="not a ModelInfo"):
        Client(server.url).model_info("shapes")


def test_a_backend_that_does_not_answer_in_time_is_unreachable(server):
    server.answers["/health"] = Answer(200, b'{"status": "ok"}', delay=2.0)
    with pytest.raises(BackendUnreachable, match="did not answer in time"):
        Client(server.url, timeout=0.2).health()


# --- URLs ----------------------------------------------------------------------------------------------------------


def test_a_url_without_a_scheme_is_http(server):
    server.answer("/health", 200, {"status": "ok"})
    bare = server.url.removeprefix("http://")
    client = Client(f"  {bare}/ ")
    assert client.url == server.url
    assert client.health() == {"status": "ok"}
    assert Client("https://example.org/").url == "https://example.org"  # a scheme given is kept


# --- what the client sends -------------------------------------------------------------------------------------------

PREDICTION = {"model": "shapes", "detections": [], "time": 0.01, "image": {"width": 2, "height": 1}}


def test_predict_sends_base64_json_with_only_the_options_given(server):
    server.answer("/predict", 200, PREDICTION)
    answer = Client(server.url).predict(b"abc", "shapes", confidence=0.3, classes=["circle"])
    assert answer.image.width == 2 and answer.detections == []
    sent = json.loads(server.requests[-1]["body"])
    assert sent == {
        "model": "shapes",
        "confidence": 0.3,
        "annotate": False,
        "image": "YWJj",
        "classes": ["circle"],
    }


def test_predict_multipart_sends_the_file_and_form_fields(server):
    server.answer("/predict/file", 200, PREDICTION)
    Client(server.url).predict(b"raw", iou=0.4, max_detections=3, classes=["a", "b"], multipart=True)
    request = server.requests[-1]
    message = email.parser.BytesParser().parsebytes(
        b"content-type: " + request["headers"]["content-type"].encode() + b"\r\n\r\n" + request["body"]
    )
    parts = {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.get_payload()
    }
    assert parts == {"iou": b"0.4", "max_detections": b"3", "annotate": b"False", "classes": b"a,b", "image": b"raw"}


@pytest.mark.parametrize(("given", "sent"), [(" k3y ", "k3y"), ("", None), ("  ", None)])
def test_the_api_key_header_is_sent_only_when_there_is_one(server, given, sent):
    server.answer("/models", 200, ["shapes"])
    assert Client(server.url, api_key=given).models() == ["shapes"]
    assert server.requests[-1]["headers"].get("x-api-key") == sent


def test_predict_takes_a_path_a_pil_image_or_bytes(server, tmp_path):
    from PIL import Image

    from yolo_service import load_image

    server.answer("/predict/file", 200, PREDICTION)
    client = Client(server.url)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (3, 2), (10, 20, 30)).save(photo)
    client.predict(str(photo), model="shapes", multipart=True)  # the model by keyword, as the README shows
    assert b'filename="photo.png"' in server.requests[-1]["body"]
    client.predict(photo.read_bytes(), multipart=True)
    assert b'filename="image"' in server.requests[-1]["body"]
    server.answer("/predict", 200, PREDICTION)
    transparent = Image.new("RGBA", (3, 2), (0, 0, 0, 0))  # sent with its alpha: the server flattens it on white
    client.predict(transparent)
    sent = base64.b64decode(json.loads(server.requests[-1]["body"])["image"])
    assert load_image(sent).getpixel((1, 1)) == (255, 255, 255)
    client.predict(Image.new("CMYK", (3, 2), (0, 0, 0, 0)))  # a mode PNG cannot hold: sent as RGB
    sent = base64.b64decode(json.loads(server.requests[-1]["body"])["image"])
    assert load_image(sent).getpixel((1, 1)) == (255, 255, 255)


def test_multipart_without_classes_sends_no_classes_field(server):
    server.answer("/predict/file", 200, PREDICTION)
    Client(server.url).predict(b"raw", multipart=True)
    assert b'name="classes"' not in server.requests[-1]["body"]
    assert b'name="model"' not in server.requests[-1]["body"]  # the server's default model


def test_the_configured_api_key_is_the_default(server, monkeypatch):
    from yolo_service.config import get_settings

    server.answer("/models", 200, ["shapes"])
    monkeypatch.setenv("YOLO_SERVICE_API_KEY", "from-env")
    get_settings.cache_clear()
    try:
        Client(server.url).models()
    finally:
        monkeypatch.delenv("YOLO_SERVICE_API_KEY")
        get_settings.cache_clear()
    assert server.requests[-1]["headers"]["x-api-key"] == "from-env"
    Client(server.url).models()  # no key configured: no header
    assert "x-api-key" not in server.requests[-1]["headers"]


@pytest.mark.parametrize(("length", "shown"), [(1000, "x" * 1000), (1001, "x" * 1000 + "…")])
def test_a_long_error_detail_is_cut_at_a_thousand_characters(server, length, shown):
    server.answer("/models", 500, {"detail": "x" * length, "error": "InternalError"})
    with pytest.raises(InternalError) as info:
        Client(server.url).models()
    assert str(info.value) == shown


def test_model_info_from_a_server_that_does_not_say_which_model_is_the_default(server):
    """``default`` is optional in the contract (older servers did not send it): it reads as False."""
    server.answer(
        "/models/shapes",
        200,
        {"name": "shapes", "source": "bundled", "description": "d", "loaded": True, "available_offline": True},
    )
    info = Client(server.url).model_info("shapes")
    assert info.default is False and info.classes is None and info.loaded is True


# --- what the client reads: the size cap at its boundary, nothing compressed, no redirect ----------------------------


def json_of_size(size: int) -> bytes:
    """A JSON list of one string, exactly ``size`` bytes long."""
    return b'["' + b"x" * (size - 4) + b'"]'


@pytest.mark.parametrize("chunked", [False, True])
def test_an_answer_of_exactly_the_cap_is_read_one_byte_more_is_refused(server, chunked):
    cap = 4096
    server.answers["/models"] = Answer(200, json_of_size(cap), chunked=chunked)
    assert Client(server.url, max_response_bytes=cap).models() == ["x" * (cap - 4)]
    server.answers["/models"] = Answer(200, json_of_size(cap + 1), chunked=chunked)
    with pytest.raises(YoloServiceError, match="answered more than 4,096 bytes") as info:
        Client(server.url, max_response_bytes=cap).models()
    assert type(info.value) is YoloServiceError


def test_a_compressed_answer_is_refused(server):
    server.answer("/models", 200, ["shapes"], **{"content-encoding": "gzip"})
    with pytest.raises(YoloServiceError, match="answered a compressed body \\(gzip\\)"):
        Client(server.url).models()


def test_a_redirect_is_not_followed(server):
    server.answer("/models", 307, b"", location="http://127.0.0.1:9/models")
    with pytest.raises(YoloServiceError, match="^307 Temporary Redirect: a redirect, which the client does not follow"):
        Client(server.url).models()
    assert [r["path"] for r in server.requests] == ["/models"]


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("localhost:8000", "http://localhost:8000"),
        ("  localhost:8000/ ", "http://localhost:8000"),
        ("https://x.run.app/", "https://x.run.app"),
        ("HTTP://Host:1", "HTTP://Host:1"),  # a scheme in capitals is a scheme
    ],
)
def test_urls_are_normalised(given, url):
    from yolo_service.client import normalize_url

    assert normalize_url(given) == url == Client(given).url


def test_a_backend_that_trickles_its_answer_is_cut_at_the_whole_exchange_s_deadline(server):
    """One chunk every 0.2 s keeps each read under the timeout; the whole answer would take 4 s: cut at 1 s."""
    server.answers["/models"] = Answer(200, json_of_size(20_000), chunked=True, pause=0.2)
    with pytest.raises(BackendUnreachable, match="did not answer in time"):  # not the whole list, 4 s later
        Client(server.url, timeout=1.0).models()


def test_an_exchange_well_within_a_short_deadline_succeeds(server):
    server.answer("/health", 200, {"status": "ok"})
    assert Client(server.url, timeout=0.5).health() == {"status": "ok"}


@pytest.mark.parametrize(("version", "ok"), [("1" * 100, True), ("1" * 101, False), (42, False), (["1.0"], False)])
def test_a_version_is_a_short_string(server, version, ok):
    server.answer("/version", 200, version)
    if ok:
        assert Client(server.url).version() == version
    else:
        with pytest.raises(YoloServiceError, match="is not a version"):
            Client(server.url).version()


@pytest.mark.parametrize(("names", "ok"), [(["shapes", "yolo26n"], True), ([], True), ({"a": 1}, False), ([1], False)])
def test_models_is_a_list_of_names(server, names, ok):
    server.answer("/models", 200, names)
    if ok:
        assert Client(server.url).models() == names
    else:
        with pytest.raises(YoloServiceError, match="is not a list of names"):
            Client(server.url).models()


def test_an_error_name_without_a_detail_is_not_the_kit_s_error(server):
    server.answer("/models", 400, {"error": "InvalidImage"})
    with pytest.raises(InvalidImage, match="^400 Bad Request: not the JSON error"):
        Client(server.url).models()
    server.answer("/models", 400, {"error": "InvalidImage", "detail": ["not", "text"]})
    with pytest.raises(InvalidImage, match="^400 Bad Request: not the JSON error"):
        Client(server.url).models()


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("localhost:8000", ("http", "localhost", 8000)),
        ("http://example.org", ("http", "example.org", 80)),
        ("https://x.run.app/", ("https", "x.run.app", 443)),
        ("https://x.run.app:8443", ("https", "x.run.app", 8443)),
        ("http://good:80@evil", ("http", "evil", 80)),  # what the connection really reaches
    ],
)
def test_the_origin_a_url_connects_to(url, where):
    from yolo_service.client import origin

    assert origin(url) == where


@pytest.mark.parametrize("url", ["ftp://example.org", "http://", "file:///etc/passwd"])
def test_a_url_that_is_no_backend_is_refused_at_once(url):
    with pytest.raises(BackendUnreachable, match="is not a backend URL"):
        Client(url)


def test_the_client_keeps_twenty_connections_to_a_backend_open_between_bursts(server):
    """Two bursts of 20 requests at once from one client: the second reuses the first's 20 connections."""
    from concurrent.futures import ThreadPoolExecutor

    client = Client(server.url)
    for _ in range(2):
        server.answers["/models"] = Answer(200, b'["shapes"]', barrier=threading.Barrier(20))
        with ThreadPoolExecutor(20) as pool:
            assert list(pool.map(lambda _: client.models(), range(20))) == [["shapes"]] * 20
    assert len({r["connection"] for r in server.requests}) == 20


# --- tracing: what the client sends and repeats ----------------------------------------------------------------

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-[0-9a-f]{16}-00")


def test_every_call_sends_a_fresh_w3c_traceparent(server):
    server.answer("/models", 200, ["shapes"])
    client = Client(server.url)
    client.models()
    client.models()
    sent = [TRACEPARENT.fullmatch(r["headers"]["traceparent"]) for r in server.requests]
    assert all(sent) and sent[0][1] != sent[1][1]  # a new trace id per call


def test_a_given_traceparent_is_sent_as_it_is_and_its_trace_id_names_an_unanswered_call(server):
    server.answer("/predict", 200, PREDICTION)
    given = "00-" + "a" * 32 + "-" + "b" * 16 + "-00"
    Client(server.url).predict(b"abc", traceparent=given)
    assert server.requests[-1]["headers"]["traceparent"] == given
    with pytest.raises(BackendUnreachable) as info:
        Client(dead_url()).predict(b"abc", traceparent=given)
    assert info.value.request_id == "a" * 32  # the id the backend would have logged it under


def test_an_unsafe_trace_id_is_never_repeated(server):
    with pytest.raises(BackendUnreachable) as info:
        Client(dead_url()).predict(b"abc", traceparent="00-<b>id</b>-" + "b" * 16 + "-00")
    assert info.value.request_id is None


@pytest.mark.parametrize(("answered", "logged"), [("req-1.a_B", "req-1.a_B"), ("a b", None), ("x" * 129, None)])
def test_each_call_is_logged_once_with_the_request_id_the_backend_answered(server, caplog, answered, logged):
    server.answer("/models", 200, ["shapes"], **{"x-request-id": answered})
    with caplog.at_level("INFO", logger="yolo_service.client"):
        Client(server.url).models()
    records = [r for r in caplog.records if r.name == "yolo_service.client"]
    assert len(records) == 1 and records[0].getMessage().startswith(f"GET {server.url}/models 200 ")
    assert records[0].request_id == logged
    milliseconds = float(records[0].getMessage().split()[-2])
    assert records[0].getMessage().endswith(" ms") and 0 <= milliseconds < 60_000
