"""The Streamlit companion app: upload an image, send it to the backend, see the boxes.

A thin script over :mod:`yolo_service.client` (HTTP) and :mod:`yolo_service.drawing`:
it never loads a model and never imports torch, so its container stays small.
Run it with ``yolo-service ui`` (or ``streamlit run frontend/app.py``).

It may face the public, so it trusts no backend: the server's API key goes only to the
backend it was configured with (``BACKEND_URL``), visitors may change the backend only
where ``YOLO_SERVICE_UI_BACKEND_EDITABLE`` allows it, and every string a backend sends
(version, model and class names, error details) is shown as text, never as Markdown:
a model named ``[re-enter your key](https://…)`` must not become a link.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Literal, NamedTuple

import httpx
import streamlit as st

from yolo_service import logs
from yolo_service.client import Client, origin
from yolo_service.config import get_settings
from yolo_service.drawing import draw_detections
from yolo_service.errors import BackendUnreachable, YoloServiceError
from yolo_service.images import encode_image, load_image
from yolo_service.samples import sample_photos
from yolo_service.schema import Detection, ImageInfo, PredictResponse
from yolo_service.shapes import Shape, sample_scenes

UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"]
SERVER_DEFAULT = "(server default)"
COMPOSE_HINT = (
    "Check the URL and that the backend is running. Inside docker compose the backend is "
    "`http://backend:8000`, not `localhost`; on Cloud Run use the service's `https://…run.app` URL."
)


def default_backend_url() -> str:
    """``$BACKEND_URL`` (set by compose and the container), else the local default."""
    return os.environ.get("BACKEND_URL", "http://localhost:8000")


def is_configured_backend(url: str) -> bool:
    """True when ``url`` reaches the backend this server was configured with (same scheme, host and port)."""
    try:
        return origin(url) == origin(default_backend_url())
    except httpx.InvalidURL:
        return False


class BackendNotAllowed(YoloServiceError):
    """A backend other than ``BACKEND_URL``, where visitors may not change it."""

    status_code = 403


def api_key_for(url: str) -> str:
    """The key sent to ``url``: the one the visitor typed, else the server's own, but only to its configured backend.

    The server's ``YOLO_SERVICE_API_KEY`` never goes to a URL a visitor typed: that backend could
    be anyone's, and would log it.
    """
    typed = (st.session_state.get("api_key") or "").strip()
    if typed:
        return typed
    configured = get_settings().api_key
    return configured.get_secret_value() if configured and is_configured_backend(url) else ""


def get_client(url: str, api_key: str | None = None) -> Client:
    """The client of ``url`` with ``api_key`` (default: the key :func:`api_key_for` allows).

    Every call to a backend comes through here, so this is where a backend other than
    BACKEND_URL is refused when visitors may not change it.
    """
    if not get_settings().ui_backend_editable and not is_configured_backend(url):
        raise BackendNotAllowed(f"this UI talks only to its configured backend, {default_backend_url()}")
    return _client(url, api_key_for(url) if api_key is None else api_key)


@st.cache_resource(max_entries=8)
def _client(url: str, api_key: str) -> Client:
    """One HTTP client (connection pool) per backend URL and key, shared by the sessions that use them."""
    return Client(url, timeout=get_settings().ui_timeout, api_key=api_key)


# The answers depend on the key (a backend may list other models to other keys): the key is part of
# the cache key, so one visitor's answers never serve another's.
@st.cache_data(ttl=30, show_spinner=False)
def list_models(url: str, api_key: str) -> list[str]:
    """The backend's model names (cached for 30 s)."""
    return get_client(url, api_key).models()


@st.cache_data(ttl=300, show_spinner=False)
def model_classes(url: str, api_key: str, model: str) -> list[str]:
    """The class names of one model (empty when the backend does not know them yet)."""
    return get_client(url, api_key).model_info(model).classes or []


@st.cache_data(show_spinner=False)
def sample_images() -> dict[str, tuple[bytes, list[Shape] | None]]:
    """The generated scenes as PNG bytes with their known shapes, then Ultralytics' photos where installed."""
    samples = {name: (encode_image(image), shapes) for name, (image, shapes) in sample_scenes().items()}
    photos = {name: (path.read_bytes(), None) for name, path in sample_photos().items()}
    return {**samples, **photos}  # photos only where Ultralytics is installed: not in the frontend image


def fake_prediction(name: str | None, width: int, height: int) -> PredictResponse:
    """Test mode: the known shapes of a sample, or one box in the middle of an upload."""
    shapes = sample_images().get(name or "", (b"", None))[1]
    if shapes is not None:
        detections = [
            Detection(
                x_min=s.x_min,
                y_min=s.y_min,
                x_max=s.x_max,
                y_max=s.y_max,
                class_name=s.class_name,
                class_id=s.class_id,
                confidence=1.0,
            )
            for s in shapes
        ]
    else:
        detections = [
            Detection(
                x_min=width // 4,
                y_min=height // 4,
                x_max=3 * width // 4,
                y_max=3 * height // 4,
                class_name="fake object",
                class_id=0,
                confidence=0.5,
            )
        ]
    return PredictResponse(
        model="test-mode", detections=detections, time=0.0, image=ImageInfo(width=width, height=height)
    )


class Notice(NamedTuple):
    """What to tell the visitor: this UI's own words (Markdown), then what the backend or the network said.

    ``said`` comes from outside (a backend's version, names and error details, an exception's text):
    :func:`show` writes it with ``st.text``, which parses neither Markdown nor HTML.
    """

    kind: Literal["success", "warning", "error"]
    message: str
    said: str = ""


def show(notice: Notice) -> None:
    """The notice's message in a coloured box, and what was said under it as plain text."""
    box = {"success": st.success, "warning": st.warning, "error": st.error}[notice.kind]
    box(notice.message)
    if notice.said:
        st.text(notice.said)


def unreachable(url: str, exc: BackendUnreachable) -> Notice:
    """The notice for a backend that does not answer: what happened, then what to do."""
    if isinstance(exc.__cause__, httpx.TimeoutException):
        message = (
            f"The backend did not answer within {get_settings().ui_timeout:.0f} s: it may be busy, or still "
            "starting (a Cloud Run service can take a minute on its first request). Try again in a moment."
        )
        return Notice("error", message, f"Backend at {url}")
    return Notice("error", f"The backend is not reachable.\n\n{COMPOSE_HINT}", f"{url}: {exc.__cause__ or exc}")


def show_request_id(request_id: str | None) -> None:
    """The backend's id for a request, as plain text: the key to its entries in the backend's logs."""
    if request_id:
        st.text(f"Request id: {request_id}", help="find this request in the backend's logs with it (workshop step 6)")


@st.cache_resource
def configure_logging() -> None:
    """Log one line per backend call (the client's, with its request id), once per process.

    Unless the host configured logging already (a test runner): then its handlers stay in charge.
    """
    if not logging.getLogger().handlers:
        logs.configure(get_settings())


def failed(exc: YoloServiceError) -> Notice:
    """The notice for an error answer: the request's fault (4xx), or the backend's (anything else)."""
    if isinstance(exc, BackendNotAllowed):
        return Notice("error", "This UI cannot call that backend.", str(exc))
    if 400 <= exc.status_code < 500:
        return Notice("error", "The backend refused the request:", str(exc))
    return Notice(
        "error", "The backend failed to answer. Try again; if it keeps failing, look at the backend's log.", str(exc)
    )


def check_backend(url: str) -> tuple[Notice, list[str]]:
    """The "Is alive" check: (what to tell people, model names)."""
    try:
        client = get_client(url)
        client.health()
        version, models, ready = client.version(), client.models(), client.readiness()
    except BackendUnreachable as exc:
        return unreachable(url, exc), []
    except YoloServiceError as exc:
        return failed(exc), []
    if ready is None:
        return Notice("success", "Backend is alive (model still loading)", f"yolo-service {version}"), models
    serving = f"default model {ready.default_model[:100]}"
    if ready.engine:  # older backends do not say
        serving += f" on {ready.engine[:40]}" + (f" ({ready.precision[:40]})" if ready.precision else "")
    return Notice("success", "Backend is alive", f"yolo-service {version}, {serving}"), models


def choose_backend() -> str:
    """The Backend URL box: editable where YOLO_SERVICE_UI_BACKEND_EDITABLE allows it, else fixed to BACKEND_URL."""
    editable = get_settings().ui_backend_editable
    if not editable or "backend_url" not in st.session_state:
        # Not editable: the box is disabled, and whatever a crafted client sends for it is overwritten here.
        st.session_state["backend_url"] = default_backend_url()
    url = st.text_input(
        "Backend URL",
        key="backend_url",
        disabled=not editable,
        help=None if editable else "This UI talks only to the backend it was configured with.",
    ).strip()
    return url if editable else default_backend_url()


def sidebar() -> tuple[str, bool]:
    """Backend URL, API key, test mode and the "Is alive" check."""
    with st.sidebar:
        st.header("Backend")
        url = choose_backend()
        # The configured key stays on the server (never sent to the browser); a typed key replaces it.
        st.text_input("API key", type="password", key="api_key", help="the backend's X-API-Key, if it needs one")
        test_mode = st.toggle("Test mode (no backend: fake detections)", key="test_mode")
        if st.button("Is alive", key="is_alive"):
            st.session_state["alive"] = (url, *check_backend(url))
        checked = st.session_state.get("alive")
        if checked and checked[0] == url:  # kept across reruns, forgotten when the URL changes
            _, notice, models = checked
            show(notice)
            if models:
                st.text("Models: " + ", ".join(models))
    return url, test_mode


def choose_model(url: str, test_mode: bool) -> tuple[str | None, float, list[str]]:
    """Model, confidence threshold and class filter, filled from the backend."""
    models: list[str] = []
    if not test_mode:
        try:
            models = list_models(url, api_key_for(url))
        except BackendUnreachable:
            show(
                Notice(
                    "warning",
                    "Cannot list the backend's models: the backend is not reachable. "
                    "Click **Is alive** in the sidebar for help, or switch on test mode.",
                    f"Backend at {url}",
                )
            )
        except YoloServiceError as exc:
            show(Notice("warning", "Cannot list the backend's models:", str(exc)))
    left, middle, right = st.columns(3)
    model = left.selectbox("Model", [SERVER_DEFAULT, *models], key="model")
    confidence = middle.slider("Confidence threshold", 0.0, 1.0, get_settings().confidence, 0.05, key="confidence")
    classes: list[str] = []
    if model != SERVER_DEFAULT:
        try:
            classes = model_classes(url, api_key_for(url), model)
        except YoloServiceError:
            classes = []
    chosen = right.multiselect("Only these classes (optional)", classes, key="classes")
    return (None if model == SERVER_DEFAULT else model), confidence, chosen


def choose_image() -> tuple[str | None, bytes | None]:
    """An uploaded file or a generated sample: (name, file bytes)."""
    source = st.radio("Image", ["Upload a file", "Try a sample"], horizontal=True, key="source")
    if source == "Upload a file":
        limit = get_settings().max_image_bytes
        upload = st.file_uploader(
            f"Image ({', '.join(UPLOAD_TYPES)}; at most {limit // 2**20} MB)", type=UPLOAD_TYPES, key="upload"
        )
        if upload is None:
            return None, None
        data = upload.getvalue()
        if len(data) > limit:
            st.error(f"This file is {len(data):,} bytes; the backend accepts at most {limit:,} bytes.")
            return None, None
        return upload.name, data
    samples = sample_images()
    name = st.selectbox("Sample image", list(samples), key="sample")
    return name, samples[name][0]


def predict(
    url: str, test_mode: bool, name: str, data: bytes, model: str | None, confidence: float, classes: list[str]
) -> None:
    """Run the prediction and keep the result in the session."""
    try:
        image = load_image(data)
    except YoloServiceError as exc:
        show(Notice("error", "This file cannot be used:", str(exc)))
        return
    started = time.perf_counter()
    try:
        if test_mode:
            result = fake_prediction(name, image.width, image.height)
        else:
            with st.spinner("Detecting…"):
                result = get_client(url).predict(
                    data, model, confidence=confidence, classes=classes or None, multipart=True
                )
    except BackendUnreachable as exc:
        show(unreachable(url, exc))
        show_request_id(exc.request_id)
        return
    except YoloServiceError as exc:
        show(failed(exc))
        show_request_id(exc.request_id)
        return
    st.session_state["result"] = {
        "name": name,
        "response": result,
        "round_trip": time.perf_counter() - started,
        "annotated": encode_image(draw_detections(image, result.detections)),
        "test_mode": test_mode,
    }


def show_result() -> None:
    """The annotated image, the detections table, the timings and a download button."""
    saved = st.session_state.get("result")
    if not saved:
        return
    result: PredictResponse = saved["response"]
    if saved["test_mode"]:
        st.info("TEST MODE: these detections are fake; no backend was called.")
    server, round_trip, count = st.columns(3)
    server.metric("Server processing time", f"{result.time * 1000:.0f} ms")
    round_trip.metric("Round-trip time", f"{saved['round_trip'] * 1000:.0f} ms")
    count.metric("Detections", len(result.detections))
    show_request_id(result.request_id)
    st.image(saved["annotated"])
    engine = f", engine {result.engine}" if result.engine else ""  # older backends do not say
    st.text(
        f"{saved['name']} — model {result.model}{engine}"
    )  # a caption would be Markdown, and the name is the backend's
    st.dataframe(
        [
            {
                "class_name": d.class_name,
                "confidence": round(d.confidence, 3),
                "x_min": d.x_min,
                "y_min": d.y_min,
                "x_max": d.x_max,
                "y_max": d.y_max,
            }
            for d in result.detections
        ],
        hide_index=True,
        key="detections",
    )
    st.download_button(
        "Download annotated image",
        saved["annotated"],
        file_name=f"annotated-{saved['name'].rsplit('.', 1)[0]}.png",
        mime="image/png",
    )


def main() -> None:
    """The page."""
    st.set_page_config(page_title="yolo-service", page_icon="🔎", layout="wide")
    configure_logging()
    st.title("YOLO object detection")
    st.caption("Upload an image, the backend API detects objects, this page draws the boxes.")
    url, test_mode = sidebar()
    model, confidence, classes = choose_model(url, test_mode)
    name, data = choose_image()
    if st.button("Predict", type="primary", disabled=data is None, key="predict"):
        predict(url, test_mode, name or "image", data, model, confidence, classes)
    show_result()


if __name__ == "__main__":
    main()
