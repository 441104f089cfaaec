"""The HTTP client of the API, used by the UI, the notebooks, the CLI and the tests.

It speaks the contract in :mod:`yolo_service.schema` and raises the library's own
errors: an error response becomes the same :class:`~yolo_service.errors.YoloServiceError`
subclass the server raised, with the server's message, and a backend that does not
answer becomes :class:`~yolo_service.errors.BackendUnreachable` with a hint. httpx
only; no torch.

A backend may be anyone's URL (the UI lets visitors type one), so the client bounds what
an answer can cost: the whole exchange has a deadline (httpx's timeouts apply to each
network read, so a backend that trickles a byte a second never times out), the body is
read in chunks and refused past ``client_max_response_bytes``, redirects are not
followed, and an error body that is not the kit's JSON error is never echoed.

Each call sends a W3C ``traceparent`` header (:func:`new_traceparent`, or the one given to
:meth:`Client.predict`), so the backend files its log entries under the caller's trace id, and
logs one line (logger ``yolo_service.client``, INFO) with the id the backend answered in
``X-Request-ID``: the UI's line and the API's entries of one call share that id. The id is on
results (``PredictResponse.request_id``) and on raised errors (``error.request_id``).
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import time
from contextvars import ContextVar
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpcore
import httpx
from PIL import Image
from pydantic import BaseModel, ValidationError

from .config import get_settings
from .errors import BackendUnreachable, YoloServiceError, error_class
from .images import encode_base64, encode_image, read_image_bytes
from .schema import ModelInfo, PredictResponse, ReadyResponse

__all__ = ["Client", "new_traceparent", "normalize_url", "origin"]

logger = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"[0-9A-Za-z._-]{1,128}")  # what the client repeats of a backend's request id

ImageSource = str | Path | bytes | Image.Image
_Answer = TypeVar("_Answer", bound=BaseModel)


#: The longest error detail from a backend the client passes on (the kit's own are one or two sentences).
MAX_DETAIL_CHARS = 1000


def normalize_url(url: str) -> str:
    """A backend URL as the client calls it: no surrounding space or trailing slash, ``http://`` when no scheme."""
    url = url.strip()
    if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", url):
        url = "http://" + url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.rstrip('/')}"


def origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` the client connects to: ``localhost:8000`` is ``("http", "localhost", 8000)``.

    Parsed by httpx, the parser the connection itself uses, so ``http://good:80@evil`` is ``evil``.
    Raises ``httpx.InvalidURL`` for a URL the client cannot call (no host, not http or https).
    """
    parsed = httpx.URL(normalize_url(url))
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise httpx.InvalidURL(f"{url!r} is not an http:// or https:// URL with a host")
    return parsed.scheme, parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80)


# --- The whole exchange's deadline ------------------------------------------------------------
# httpx applies its timeout to each network operation: a backend that sends a byte every few
# seconds, or an endless body, never times out. Every connect, read and write of the client's
# connections goes through _DeadlineNetwork, which shortens its timeout to what is left of the
# deadline of the exchange in progress (a ContextVar: one per thread, so one client may serve
# several threads, as the UI's cached clients do).
_deadline: ContextVar[float | None] = ContextVar("yolo_service_client_deadline", default=None)


def _until_deadline(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    """``timeout`` shortened to the time left before the current deadline; ``expired`` once it has passed."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the whole answer did not arrive before the deadline")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose reads and writes end at the current exchange's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _until_deadline(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _until_deadline(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        secured = self._stream.start_tls(
            ssl_context, server_hostname, _until_deadline(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(secured)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineNetwork(httpcore.NetworkBackend):
    """httpcore's socket backend, connecting through :class:`_DeadlineStream`."""

    def __init__(self) -> None:
        self._network = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        timeout = _until_deadline(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._network.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        timeout = _until_deadline(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._network.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._network.sleep(seconds)


def _deadline_transport() -> httpx.HTTPTransport:
    """httpx's own transport (connection pool, limits, TLS), on :class:`_DeadlineNetwork`.

    httpx takes no network backend, so its pool is swapped for httpcore's with one (the
    pool's ``network_backend`` is httpcore's public API; ``_pool`` is httpx's attribute).
    """
    transport = httpx.HTTPTransport()
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)  # httpx's
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_DeadlineNetwork(),
    )
    return transport


def new_traceparent(trace_id: str | None = None) -> str:
    """A W3C ``traceparent`` header: version 00, ``trace_id`` (default: 32 random hex digits), a random span.

    The flags are 00: the caller asks for no trace to be recorded; the id still ties the log entries together.
    """
    return f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-00"


def _answered_id(response: httpx.Response, error: Any = None) -> str | None:
    """The request id a backend answered: its ``X-Request-ID`` header, else its error body's ``request_id``."""
    found = response.headers.get("x-request-id") or (error.get("request_id") if isinstance(error, dict) else None)
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
        timeout: seconds for a whole exchange: connecting, sending, and the complete answer.
        api_key: sent as the ``X-API-Key`` header when the backend requires one; default:
            the ``YOLO_SERVICE_API_KEY`` setting (unset or empty: no header).
        max_response_bytes: the largest answer read; default: the ``client_max_response_bytes`` setting.
    """

    def __init__(
        self,
        url: str = "http://localhost:8000",
        timeout: float = 30.0,
        api_key: str | None = None,
        max_response_bytes: int | None = None,
    ) -> None:
        self.url = normalize_url(url)
        try:
            origin(self.url)
        except httpx.InvalidURL as exc:
            raise BackendUnreachable(
                f"{url!r} is not a backend URL ({exc}): give one such as http://localhost:8000 "
                "or the https://…run.app URL of a Cloud Run service"
            ) from exc
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes or get_settings().client_max_response_bytes
        if api_key is None:
            configured = get_settings().api_key
            api_key = configured.get_secret_value() if configured else ""
        # identity: a compressed answer could grow a thousandfold past the byte count the cap sees
        headers = {"Accept-Encoding": "identity"}
        if api_key.strip():
            headers["X-API-Key"] = api_key.strip()
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers=headers,
            follow_redirects=False,
            transport=_deadline_transport(),  # a transport of our own also means no proxy from the environment
        )

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
        token = _deadline.set(time.monotonic() + self.timeout)
        try:
            with self._http.stream(method, path, headers={"traceparent": traceparent}, **kwargs) as response:
                body = self._read(response)
        except httpx.TimeoutException as exc:
            raise _unanswered(f"{method} {self.url}{path}", sent_id, BackendUnreachable(
                f"{self.url} did not answer in time ({exc.__class__.__name__}): is it overloaded, or still starting?"
            )) from exc  # fmt: skip
        except httpx.HTTPError as exc:
            raise _unanswered(f"{method} {self.url}{path}", sent_id, BackendUnreachable(
                f"cannot reach the backend at {self.url} ({exc}): check the URL and that the backend runs. "
                "Inside docker compose the backend is http://backend:8000, not localhost."
            )) from exc  # fmt: skip
        finally:
            _deadline.reset(token)
        milliseconds = (time.perf_counter() - started) * 1000
        logger.info(
            "%s %s%s %d %.0f ms", method, self.url, path, response.status_code, milliseconds,
            extra={"request_id": _answered_id(response)},
        )  # fmt: skip
        return self._answer(response, body, path)

    def _read(self, response: httpx.Response) -> bytes:
        """The body of ``response``, read in chunks and refused past ``max_response_bytes``."""
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise YoloServiceError(
                f"{self.url} answered a compressed body ({encoding[:20]}) though the client asked for none: "
                "is this the URL of a yolo-service backend?"
            )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise self._too_large(int(declared))
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > self.max_response_bytes:
                raise self._too_large(size)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, size: int) -> YoloServiceError:
        return YoloServiceError(
            f"{self.url} answered more than {self.max_response_bytes:,} bytes (at least {size:,}), "
            "the client's limit (YOLO_SERVICE_CLIENT_MAX_RESPONSE_BYTES): is this the URL of a yolo-service backend?"
        )

    def _answer(self, response: httpx.Response, body: bytes, path: str) -> Any:
        """The JSON of a success; else the error the backend named, raised again."""
        status = response.status_code
        if response.is_success:
            try:
                return json.loads(body)
            except (ValueError, RecursionError) as exc:  # an HTML page, a cut-off answer, [[[[…: not this API
                raise YoloServiceError(
                    f"{self.url}{path} answered {status} with a body that is not JSON ({exc}): "
                    "is this the URL of a yolo-service backend?"
                ) from exc
        try:
            error = json.loads(body)
        except (ValueError, RecursionError):
            error = None
        name = error.get("error") if isinstance(error, dict) else None
        detail = error.get("detail") if isinstance(error, dict) else None
        retry = response.headers.get("retry-after", "")
        retry_after = int(retry) if retry.isdigit() and len(retry) < 6 else None
        cls = error_class(name if isinstance(name, str) else None, status)
        if isinstance(name, str) and isinstance(detail, str) and cls.__name__ == name:  # the kit's error shape
            if len(detail) > MAX_DETAIL_CHARS:
                detail = detail[:MAX_DETAIL_CHARS] + "…"
            refused = cls(detail, retry_after=retry_after)
            refused.request_id = _answered_id(response, error)
            raise refused
        # Anything else is not echoed: its text is whatever the server at that URL chose to say.
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "(unknown status)"
        if response.is_redirect:
            hint = "a redirect, which the client does not follow: give the final URL (https://… for Cloud Run)"
        else:
            hint = "not the JSON error of a yolo-service backend: is this the right URL?"
        failure = cls(f"{status} {phrase}: {hint}", retry_after=retry_after)
        failure.request_id = _answered_id(response)
        raise failure

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
        version = self._request("GET", "/version")
        if not isinstance(version, str) or len(version) > 100:
            raise YoloServiceError(f"{self.url}/version is not a version: is this the URL of a yolo-service backend?")
        return version

    def health(self) -> dict[str, str]:
        """``{"status": "ok"}`` when the backend is alive; raises otherwise."""
        answer: dict[str, str] = self._request("GET", "/health")
        return answer

    def ready(self) -> bool:
        """True once the backend's default model is loaded."""
        return self.readiness() is not None

    def readiness(self) -> ReadyResponse | None:
        """The backend's ``/ready`` answer (its default model, and the engine and precision serving it);
        None while that model is still loading."""
        try:
            answer = self._request("GET", "/ready")
        except YoloServiceError as exc:
            if exc.status_code == 503 and not isinstance(exc, BackendUnreachable):
                return None
            raise
        return self._parse(ReadyResponse, answer)

    def models(self) -> list[str]:
        """The names of the models the backend serves."""
        names = self._request("GET", "/models")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise YoloServiceError(
                f"{self.url}/models is not a list of names: is this the URL of a yolo-service backend?"
            )
        return names

    def model_info(self, name: str) -> ModelInfo:
        """Details of one model: classes, source, loaded, available offline."""
        return self._parse(ModelInfo, self._request("GET", f"/models/{quote(name, safe='')}"))

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
        result = self._parse(PredictResponse, body)
        if result.request_id is not None and not _REQUEST_ID.fullmatch(result.request_id):
            result.request_id = None  # not an id this client repeats: the backend's text, whatever it is
        return result
