"""The HTTP client of the API, used by the UI, the notebooks, the CLI and the tests.

It speaks the contract in :mod:`yolo_service.schema` and raises the library's own
errors: an error response becomes the same :class:`~yolo_service.errors.YoloServiceError`
subclass the server raised, with the server's message, and a backend that does not
answer becomes :class:`~yolo_service.errors.BackendUnreachable` with a hint. httpx
only; no torch.

Each call sends a W3C ``traceparent`` header (:func:`new_traceparent`, or the one given to
:meth:`Client.predict`), so the backend files its log entries under the caller's trace id, and
logs one line (logger ``yolo_service.client``, INFO) with the id the backend answered in
``X-Request-ID``: the UI's line and the API's entries of one call share that id. The id is on
results (``PredictResponse.request_id``) and on raised errors (``error.request_id``).
"""

from __future__ import annotations

import io
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any, TypeVar

import httpx
from PIL import Image
from pydantic import BaseModel, ValidationError

from .config import get_settings
from .errors import BackendUnreachable, YoloServiceError, error_class
from .images import encode_base64, encode_image, read_image_bytes
from .schema import ModelInfo, PredictResponse

__all__ = ["Client", "new_traceparent"]

logger = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"[0-9A-Za-z._-]{1,128}")  # what the client repeats of a backend's X-Request-ID

ImageSource = str | Path | bytes | Image.Image
_Answer = TypeVar("_Answer", bound=BaseModel)


def new_traceparent(trace_id: str | None = None) -> str:
    """A W3C ``traceparent`` header: version 00, ``trace_id`` (default: 32 random hex digits), a random span.

    The flags are 00: the caller asks for no trace to be recorded; the id still ties the log entries together.
    """
    return f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-00"


def _answered_id(response: httpx.Response, body: Any = None) -> str | None:
    """The request id a backend answered: its ``X-Request-ID`` header, else its error body's ``request_id``."""
    found = response.headers.get("x-request-id") or (body.get("request_id") if isinstance(body, dict) else None)
    return found if isinstance(found, str) and _REQUEST_ID.fullmatch(found) else None


def _unanswered(call: str, sent_id: str | None, error: BackendUnreachable) -> BackendUnreachable:
    """``error`` with the id that was sent (the backend may have logged it), logged as the call's one line."""
    error.request_id = sent_id
    logger.warning("%s: no answer (%s)", call, error, extra={"request_id": sent_id})
    return error


def _image_bytes(image: ImageSource) -> tuple[bytes, str]:
    """File bytes and a file name for an image given as a path, bytes or PIL image."""
    if isinstance(image, Image.Image):
        return encode_image(image.convert("RGB") if image.mode not in {"RGB", "RGBA", "L"} else image), "image.png"
    if isinstance(image, bytes | bytearray):
        return bytes(image), "image"
    return read_image_bytes(image), Path(image).name  # a str is a path, as in the whole library


class Client:
    """A client of one yolo-service backend.

    Args:
        url: the backend's base URL, e.g. ``http://localhost:8000`` or a Cloud Run URL.
        timeout: seconds to wait for an answer (connect and read).
        api_key: sent as the ``X-API-Key`` header when the backend requires one; default:
            the ``YOLO_SERVICE_API_KEY`` setting (unset or empty: no header).
    """

    def __init__(self, url: str = "http://localhost:8000", timeout: float = 30.0, api_key: str | None = None) -> None:
        self.url = url.strip().rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            self.url = "http://" + self.url
        if api_key is None:
            configured = get_settings().api_key
            api_key = configured.get_secret_value() if configured else ""
        headers = {"X-API-Key": api_key.strip()} if api_key.strip() else None
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __repr__(self) -> str:  # never shows the key
        return f"Client({self.url!r})"

    def _request(self, method: str, path: str, *, traceparent: str | None = None, **kwargs: Any) -> Any:
        traceparent = traceparent or new_traceparent()
        parts = traceparent.split("-")
        sent_id = parts[1] if len(parts) >= 4 and _REQUEST_ID.fullmatch(parts[1]) else None
        started = time.perf_counter()
        try:
            response = self._http.request(method, path, headers={"traceparent": traceparent}, **kwargs)
        except httpx.TimeoutException as exc:
            raise _unanswered(f"{method} {self.url}{path}", sent_id, BackendUnreachable(
                f"{self.url} did not answer in time ({exc.__class__.__name__}): is it overloaded, or still starting?"
            )) from exc  # fmt: skip
        except httpx.HTTPError as exc:
            raise _unanswered(f"{method} {self.url}{path}", sent_id, BackendUnreachable(
                f"cannot reach the backend at {self.url} ({exc}): check the URL and that the backend runs. "
                "Inside docker compose the backend is http://backend:8000, not localhost."
            )) from exc  # fmt: skip
        request_id = _answered_id(response)
        milliseconds = (time.perf_counter() - started) * 1000
        logger.info(
            "%s %s%s %d %.0f ms", method, self.url, path, response.status_code, milliseconds,
            extra={"request_id": request_id},
        )  # fmt: skip
        if response.is_success:
            try:
                return response.json()
            except ValueError as exc:  # an HTML page or a cut-off answer: not this API speaking
                raise YoloServiceError(
                    f"{self.url}{path} answered {response.status_code} with a body that is not JSON ({exc}): "
                    "is this the URL of a yolo-service backend?"
                ) from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        detail = body.get("detail") if isinstance(body, dict) else None
        if not isinstance(detail, str):  # FastAPI's 422 gives a list of problems
            detail = f"{response.status_code} {response.reason_phrase}: {detail or response.text[:200]}"
        cls = error_class(body.get("error") if isinstance(body, dict) else None, response.status_code)
        retry = response.headers.get("retry-after")
        error = cls(detail, retry_after=int(retry) if retry and retry.isdigit() else None)
        error.request_id = _answered_id(response, body)
        raise error

    def _parse(self, model: type[_Answer], body: Any) -> _Answer:
        """``body`` as ``model``; JSON that is not what the API promises is a typed error, not a crash."""
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise YoloServiceError(
                f"{self.url} answered JSON that is not a {model.__name__} ({exc.error_count()} problems): "
                "is this the URL of a yolo-service backend?"
            ) from exc

    def root(self) -> str:
        """The service's title (``GET /``)."""
        return str(self._request("GET", "/"))

    def version(self) -> str:
        """The service's version (``GET /version``)."""
        return str(self._request("GET", "/version"))

    def health(self) -> dict[str, str]:
        """``{"status": "ok"}`` when the backend is alive; raises otherwise."""
        answer: dict[str, str] = self._request("GET", "/health")
        return answer

    def ready(self) -> bool:
        """True once the backend's default model is loaded."""
        try:
            self._request("GET", "/ready")
        except YoloServiceError as exc:
            if exc.status_code == 503 and not isinstance(exc, BackendUnreachable):
                return False
            raise
        return True

    def models(self) -> list[str]:
        """The names of the models the backend serves."""
        names: list[str] = self._request("GET", "/models")
        return names

    def model_info(self, name: str) -> ModelInfo:
        """Details of one model: classes, source, loaded, available offline."""
        return self._parse(ModelInfo, self._request("GET", f"/models/{name}"))

    def predict(
        self,
        image: ImageSource,
        model: str | None = None,
        *,
        confidence: float | None = None,
        iou: float | None = None,
        classes: list[str] | None = None,
        max_detections: int | None = None,
        annotate: bool = False,
        multipart: bool = False,
        traceparent: str | None = None,
    ) -> PredictResponse:
        """Detect objects in ``image`` (a path, file bytes, or PIL image) on the backend.

        ``multipart=True`` uploads the file to ``/predict/file`` instead of sending
        base64 JSON to ``/predict`` (a third less data on the wire). ``traceparent``: the
        caller's W3C trace context, to continue its trace (default: a new one). The result's
        ``request_id`` is the backend's id for this request.
        """
        data, filename = _image_bytes(image)
        options = {
            "model": model,
            "confidence": confidence,
            "iou": iou,
            "max_detections": max_detections,
            "annotate": annotate,
        }
        if multipart:
            form = {k: str(v) for k, v in options.items() if v is not None}
            if classes:
                form["classes"] = ",".join(classes)
            upload = {"image": (filename, io.BytesIO(data))}
            body = self._request("POST", "/predict/file", traceparent=traceparent, data=form, files=upload)
        else:
            payload: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
            payload.update(image=encode_base64(data), classes=classes)
            body = self._request("POST", "/predict", traceparent=traceparent, json=payload)
        return self._parse(PredictResponse, body)
