"""The FastAPI app: thin routes over :mod:`yolo_service.models` and :mod:`yolo_service.images`.

``create_app(settings)`` builds the app; uvicorn runs it as a factory
(``uvicorn --factory yolo_service.api:create_app``). The default model loads in a
background thread started by the lifespan, so ``/health`` answers at once and
``/ready`` turns 200 when the model is loaded.

Around the routes, pure ASGI middlewares, outermost first:

- :class:`~yolo_service.logs.RequestContextMiddleware` gives each request its id (the caller's
  trace id from ``traceparent`` or ``X-Cloud-Trace-Context``, else a new one), answered in
  ``X-Request-ID`` and carried by every log entry of the request and by its error body.
- :class:`RequestLog` logs one entry per request (its severity from the status), errors included,
  tells the response's observers (the ``/metrics`` counters), and is the last resort: an
  exception nobody expected becomes a JSON 500, logged once with its traceback; a request the
  server cancels (its shutdown grace period is over) gets a JSON 503, not uvicorn's plain-text 500.
- :class:`HeaderLimit` refuses a request with too many headers, or too many bytes of them (431).
- :class:`ApiKeyGate` refuses a request without the configured key (401) before its body is read.
- :class:`BodyLimit` refuses a body over the limit (413) before it is read or as it streams in.
- :class:`Admission` refuses a predict request when ``max_queue`` are in flight (503 +
  ``Retry-After``) before its body is read, so a full server does no work for it; reads the body,
  which must keep arriving (408 otherwise); only then counts the request as in flight, so a
  silent or trickling client holds a connection, never a place in the queue.

Inside, decoding, prediction and drawing (the work that holds pixels) run in worker threads,
at most ``worker_slots`` at once; admitted requests wait for a slot without a thread. A model
loads outside those slots, and a request whose client has gone is dropped while it waits,
stopped while it decodes, and never reaches the model. A JSON body is parsed in a worker
thread, its values counted first (:func:`parse_predict_json`).
Every error, the framework's own included, is rendered by :func:`error_response` as
``{"detail": str, "error": str, "request_id": str}`` (schema errors add ``fields``). Logging
goes through :mod:`yolo_service.logs`, so a slow log reader can never stop the event loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import hmac
import http
import json
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import aclosing, asynccontextmanager
from tempfile import SpooledTemporaryFile
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, FastAPI, File, Form, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette._utils import AwaitableOrContextManager, AwaitableOrContextManagerWrapper
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__, logs
from .config import Settings, get_settings
from .drawing import draw_detections
from .errors import (
    ClientDisconnected,
    HeadersTooLarge,
    ImageTooLarge,
    InternalError,
    InvalidRequest,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    NotReady,
    Overloaded,
    RequestTimeout,
    ShuttingDown,
    Unauthorized,
    YoloServiceError,
)
from .images import decode_base64, load_reduced
from .metrics import instrument
from .models import ModelRegistry
from .schema import (
    Detection,
    ErrorResponse,
    HealthResponse,
    ModelInfo,
    PredictOptions,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
)

__all__ = ["create_app", "error_response", "parse_predict_json"]

logger = logging.getLogger("yolo_service.api")
T = TypeVar("T")

TITLE = "yolo-service: YOLO object detection API, created with FastAPI"
DESCRIPTION = (
    "Send an image (base64 in JSON to `POST /predict`, or a file to `POST /predict/file`) and a model "
    "name from `GET /models`; get back the detected objects' boxes (pixels of the original image), "
    "class names and confidences, and the model's processing time in seconds."
)
PREDICT_PATHS = frozenset({"/predict", "/predict/file"})
PROBE_PATHS = frozenset({"/health", "/ready"})
#: Open even when an API key is set: probes and healthchecks carry no key (/health, /ready), and the
#: title, version and API description are the public contract; Swagger's "Authorize" button needs
#: /docs and /openapi.json to send the key. Everything that touches a model or costs CPU needs it.
OPEN_PATHS = frozenset(
    {"/", "/version", "/describe", "/health", "/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
API_KEY_HEADER = "X-API-Key"
_WHEN = {
    400: "not base64, not an image, or a body that cannot be parsed",
    401: f"an API key is configured and the {API_KEY_HEADER} header is missing, wrong or sent twice",
    404: "unknown model",
    408: "the request body stopped arriving, or trickled in slower than the server accepts",
    413: "body or image too large, or an image that would cost too much to decode",
    415: "image format not allowed",
    422: "a field outside the schema (see `fields`), an unknown class name, or too many values",
    500: "a defect of the service (logged with its traceback); never an answer to an input",
    503: "model unavailable, not ready, or overloaded (see Retry-After)",
}
_STATUS_ERRORS: dict[int, type[YoloServiceError]] = {
    400: MalformedRequest,
    401: Unauthorized,
    404: NotFound,
    405: MethodNotAllowed,
    408: RequestTimeout,
    413: ImageTooLarge,
    422: InvalidRequest,
}
#: The fields of the predict contract (PredictRequest); a JSON body's other keys are dropped after parsing.
CONTRACT_FIELDS = frozenset(PredictRequest.model_fields)


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses: each error code answered with :class:`ErrorResponse` (500 and 401: see _openapi)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in sorted(codes):
        responses[code] = {"model": ErrorResponse, "description": _WHEN[code]}
        if code == 503:
            responses[code]["headers"] = {
                "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}
            }
    return responses


def error_response(
    error: YoloServiceError, settings: Settings, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The one rendering of every error: ``{"detail", "error", "request_id"}`` (+ ``fields``), status, headers."""
    headers = dict(headers or {})
    # Every 503 says when to retry: the error's own delay, else the configured one.
    retry = error.retry_after or (settings.retry_after if error.status_code == 503 else None)
    if retry:
        headers["Retry-After"] = str(retry)
    logs.annotate(error=type(error).__name__)  # the request's log entry says which error it answered
    body = ErrorResponse(
        detail=str(error),
        error=type(error).__name__,
        fields=getattr(error, "fields", None),
        request_id=logs.request_id(),
    )
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), error.status_code, headers=headers or None)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(part) for part in loc]
    if len(parts) > 1 and parts[0] in {"body", "query", "path", "header", "form"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _validation_error(exc: RequestValidationError | ValidationError) -> InvalidRequest:
    """A 422 from pydantic's errors: one summary line and ``fields``; the offending values are not echoed."""
    fields = []
    for problem in exc.errors():
        message = problem.get("msg", "invalid")
        if problem.get("type") == "json_invalid" and (ctx := problem.get("ctx")):
            message = f"{message}: {ctx.get('error')}"
        loc = [part if isinstance(part, int) else str(part) for part in problem.get("loc", ())]
        fields.append({"loc": loc, "msg": message, "type": str(problem.get("type", "invalid"))})
    summary = "; ".join(f"{_field_name(tuple(f['loc']))}: {f['msg']}" for f in fields[:5])
    more = f" (and {len(fields) - 5} more)" if len(fields) > 5 else ""
    return InvalidRequest(f"the request does not match the schema (see /docs): {summary}{more}", fields=fields)


def _http_error(exc: HTTPException) -> YoloServiceError:
    """A typed error for Starlette's own HTTP errors (no route, wrong method, unparsable body …)."""
    detail = exc.detail if isinstance(exc.detail, str) else http.HTTPStatus(exc.status_code).phrase
    if exc.status_code == 400 and exc.__cause__ is not None and str(exc.__cause__):
        detail = f"{detail}: {exc.__cause__}"  # e.g. "There was an error parsing the body: Missing boundary …"
    if exc.status_code == 404:
        detail = "no such route: see GET /docs for the routes of this API"
    elif exc.status_code == 405:
        detail = f"this route does not take this method; it takes: {(exc.headers or {}).get('Allow', '?')}"
    error = _STATUS_ERRORS.get(exc.status_code, YoloServiceError)(detail)
    error.status_code = exc.status_code  # an unexpected status keeps its code
    return error


class Service:
    """What the routes share: settings, the model registry, readiness, the queue count and the slots."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = ModelRegistry(settings)
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.in_flight = 0  # predict requests admitted and not yet answered (event loop only: no lock)
        self.receiving = 0  # predict requests whose body is still arriving (event loop only)
        self.body_bytes = 0  # bytes of predict bodies being received or held by admitted requests
        self._slots: anyio.CapacityLimiter | None = None
        self._threads: set[asyncio.Future[Any]] = set()  # work in worker threads, until it ends
        # Called with (scope, status, seconds) after every HTTP response, e.g. the /metrics counters.
        self.on_response: list[Callable[[Scope, int, float], None]] = []

    @property
    def slots(self) -> anyio.CapacityLimiter:
        """The worker slots: requests holding decoded pixels at once (created in the event loop)."""
        if self._slots is None:
            self._slots = anyio.CapacityLimiter(self.settings.worker_slots)
        return self._slots

    def load_default(self) -> None:
        """Resolve and load the default model (run in a background thread at start-up)."""
        try:
            name = self.registry.default_model()
            self.registry.get(name)
            logger.info("ready: default model %s", name)
            self.ready.set()
        except YoloServiceError as exc:
            self.load_error = str(exc)
            logger.error("the default model could not be loaded: %s", exc)

    def check(self, options: PredictOptions) -> None:
        """What can be refused before any work: readiness, and the class names against the model.

        Runs before the worker slot is taken, so a model that is not loaded yet loads here,
        never in a slot that loaded models serve from.

        Raises:
            NotReady: no model is named and the default one is still loading.
            InvalidRequest: more than ``max_classes`` class names, or names the model does not have.
        """
        if not options.model and not self.ready.is_set():  # before decoding: no work for a request we refuse
            raise NotReady(self.load_error or "the default model is still loading; retry in a few seconds")
        if options.classes and len(options.classes) > self.settings.max_classes:
            raise InvalidRequest(
                f"{len(options.classes):,} class names; a request may name at most {self.settings.max_classes:,}"
            )
        detector = self.registry.get(options.model)  # a first use loads it here, outside the worker slots
        detector.class_ids(options.classes)

    def predict(
        self, data: bytes | str, options: PredictOptions, cancelled: Callable[[], bool] | None = None
    ) -> PredictResponse:
        """Decode, predict, optionally annotate: the blocking part of a request, run in a worker slot.

        ``data``: the image file's bytes, or ``/predict``'s base64 text (decoded here: one trip to a
        worker thread per request, not one per step). ``cancelled``: polled while decoding and before
        the model runs; True stops the work.
        """
        self.check(options)  # again: the model may have been unloaded (and reloaded) meanwhile
        if isinstance(data, str):
            data = decode_base64(data)
        # Decode only what is needed (a JPEG at 1/2, 1/4 or 1/8 scale): what the model sees, or the bounded
        # annotated image when asked for. Boxes come back in the original's pixels either way.
        size = self.registry.input_size(options.model)
        if options.annotate:
            size = max(size, self.settings.annotate_max_side)
        image, original = load_reduced(data, size, settings=self.settings, cancelled=cancelled)
        if cancelled is not None and cancelled():
            raise ClientDisconnected("the client closed the connection: the model did not run")
        response = self.registry.predict_image(
            image,
            options.model,
            original_size=original,
            confidence=options.confidence,
            iou=options.iou,
            classes=options.classes,
            max_detections=options.max_detections,
        )
        if options.annotate:
            response.annotated_image = annotated_jpeg(
                image, response.detections, original, self.settings.annotate_max_side
            )
        return response

    async def run_predict(
        self, data: bytes | str, options: PredictOptions, receive: Receive | None = None
    ) -> PredictResponse:
        """Run :meth:`predict` in a worker thread once a worker slot is free, while watching the client.

        The checks run first, outside the slots: here on the event loop when the model is loaded (a
        few microseconds), else in a thread of their own, where a first use loads the model without
        holding a slot. ``receive``: the request's ASGI receive, its body already read; when it says the client
        disconnected, a request still waiting for a slot is dropped, and one that runs stops at its next
        check (its decoder's next read, or before the model). A request cancelled by the server (its
        shutdown) returns at once; its thread, told to stop, keeps its slot until it has.
        """
        if self.registry.loaded(options.model):
            self.check(options)
        else:
            await asyncio.shield(self._in_thread(self.check, options))
        gone = threading.Event()
        job = self._in_thread(self.predict, data, options, gone.is_set, limiter=self.slots)
        try:
            if receive is None:
                response = await asyncio.shield(job)
                response.request_id = logs.request_id()
                return response
            watcher: asyncio.Future[Any] = asyncio.ensure_future(_disconnected(receive))
            try:
                await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                watcher.cancel()
            if not job.done():
                job.cancel()  # waiting for a slot: dropped; running: stops at its next check (gone is set below)
                raise ClientDisconnected("the client closed the connection before its answer: the work was stopped")
            response = job.result()
            response.request_id = logs.request_id()
            return response
        finally:
            if not job.done():
                gone.set()

    def _in_thread(
        self, function: Callable[..., T], *args: Any, limiter: anyio.CapacityLimiter | None = None
    ) -> asyncio.Future[T]:
        """``function(*args)`` in a worker thread, as a task of its own: awaiting it may stop, the thread does not.

        The task is kept until it ends, and its outcome read, so one nobody awaits any more (its request
        was cancelled) logs no "exception was never retrieved".
        """
        task = asyncio.ensure_future(anyio.to_thread.run_sync(function, *args, limiter=limiter))
        self._threads.add(task)
        task.add_done_callback(_forget(self._threads))
        return task


async def _disconnected(receive: Receive) -> None:
    """Return when ``receive`` (a request's, its body already read) says the client disconnected."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _forget(tasks: set[asyncio.Future[Any]]) -> Callable[[asyncio.Future[Any]], None]:
    """A done-callback: drop the task from ``tasks`` and read its outcome (nobody may await it any more)."""

    def done(task: asyncio.Future[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()

    return done


def annotated_jpeg(image: Any, detections: list[Detection], original: tuple[int, int], max_side: int) -> str:
    """Base64 JPEG of ``image`` with ``detections`` (in ``original`` pixels) drawn, its longest side <= ``max_side``."""
    import base64
    import io

    from PIL import Image

    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR
        )
    sx, sy = image.width / original[0], image.height / original[1]
    if (sx, sy) != (1.0, 1.0):
        detections = [d.scaled(sx, sy) for d in detections]
    buffer = io.BytesIO()
    # 4:4:4 chroma: thin coloured box lines keep their colour (4:2:0 would blur them into the photo).
    draw_detections(image, detections).save(buffer, "JPEG", quality=85, subsampling=0)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


async def get_service(request: Request) -> Service:
    """The app's :class:`Service` (a dependency, so tests can override it).

    ``async``: FastAPI runs a plain ``def`` dependency in a worker thread, a thread hop per request for a lookup.
    """
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


class RequestLog:
    """One log entry per request; any unexpected exception becomes a JSON 500.

    The entry says method, path, status and milliseconds; its severity follows the status (see
    :func:`_severity`), and in JSON it adds the bytes in and out and an
    ``httpRequest`` (the model, engine and image size come from :func:`~yolo_service.logs.annotate`).
    uvicorn's access log is off (``yolo-service serve``): it would say the same thing twice.
    ``observers`` are called with (scope, status, seconds) after each response, refusals included.
    """

    def __init__(self, app: ASGIApp, settings: Settings, observers: list[Callable[[Scope, int, float], None]]) -> None:
        self.app, self.settings, self.observers = app, settings, observers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = received = sent = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def logged_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counted_receive, logged_send)
        except Exception:  # the last resort: a defect, never an answer to an input; log it, answer JSON
            logger.exception("unexpected error in %s %s", scope["method"], scope["path"])
            if not status:  # else the response has started: nothing to do but let the connection end
                status = 500
                error = InternalError("internal error: the server logged the details; please report it")
                await error_response(error, self.settings)(scope, receive, send)
        except anyio.get_cancelled_exc_class():
            # uvicorn cancels the requests still running when its shutdown grace period is over, and would
            # answer each with a plain-text 500 and log a traceback. The 503 is this request's answer, and
            # the cancellation ends here: the task has nothing left to do.
            if not status:
                status = 503
                stopping = ShuttingDown("the server is shutting down and this request did not finish in time; retry")
                with anyio.CancelScope(shield=True):
                    await error_response(stopping, self.settings, {"Connection": "close"})(scope, receive, send)
        finally:
            seconds = time.perf_counter() - started
            for observe in self.observers:
                observe(scope, status, seconds)
            level = _severity(scope["path"], status)
            entry = _request_entry(scope, status, seconds, received, sent)
            logger.log(level, "%s %s %d %.1f ms", scope["method"], scope["path"], status, seconds * 1000, extra=entry)


def _severity(path: str, status: int) -> int:
    """The request entry's level: ERROR for a 5xx, WARNING for a 4xx (or no answer), else INFO.

    The probes' answers (``/health``, ``/ready``, every few seconds from Cloud Run or compose) are not
    faults: a 200 is DEBUG (hidden at the default level), and "not ready yet" is INFO.
    """
    if path in PROBE_PATHS:
        return logging.DEBUG if status == 200 else logging.INFO
    if status >= 500:
        return logging.ERROR
    return logging.WARNING if status >= 400 or not status else logging.INFO


def _request_entry(scope: Scope, status: int, seconds: float, received: int, sent: int) -> dict[str, Any]:
    """The request log's own fields (``extra=``): status, latency, bytes, and Cloud Logging's ``httpRequest``."""
    query = scope.get("query_string", b"").decode("latin-1")
    agent = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"user-agent"), None)
    http_request = {
        "requestMethod": scope["method"],
        "requestUrl": scope["path"] + (f"?{query}" if query else ""),
        "status": status,
        "latency": f"{seconds:.6f}s",
        "requestSize": str(received),
        "responseSize": str(sent),
        "userAgent": agent,
        "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
    }
    fields = {"status": status, "latency_ms": round(seconds * 1000, 1), "bytes_in": received, "bytes_out": sent}
    return {"fields": fields, "http_request": {k: v for k, v in http_request.items() if v is not None}}


class HeaderLimit:
    """Refuse a request with more than ``max_header_count`` headers, or more than ``max_header_bytes`` of them (431).

    The HTTP parser caps a head still arriving at ``max_header_bytes`` (:mod:`yolo_service.server`);
    one that arrives whole in a single read is counted here, before anything else reads it.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            size = sum(len(name) + len(value) + 4 for name, value in headers)  # "name: value\r\n"
            if len(headers) > self.settings.max_header_count or size > self.settings.max_header_bytes:
                error = HeadersTooLarge(
                    f"the request has {len(headers)} headers, {size:,} bytes; the limits are "
                    f"{self.settings.max_header_count} headers and {self.settings.max_header_bytes:,} bytes"
                )
                await error_response(error, self.settings, {"Connection": "close"})(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ApiKeyGate:
    """With an API key configured, refuse requests without it (401) before reading them; see OPEN_PATHS.

    A request with two ``X-API-Key`` headers is refused too: which one counts would depend on the code reading them.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self.key = settings.api_key.get_secret_value().encode() if settings.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        keys = [value for name, value in scope["headers"] if name == b"x-api-key"]
        given = keys[0] if len(keys) == 1 else b""
        if hmac.compare_digest(given, self.key):
            await self.app(scope, receive, send)
            return
        what = "a wrong API key" if given else "no API key"
        sent = (
            f"{len(keys)} {API_KEY_HEADER} headers; send one"
            if len(keys) > 1
            else f"{what} in the {API_KEY_HEADER} header"
        )
        error = Unauthorized(f"this service requires an API key: the request sent {sent}")
        await error_response(error, self.settings)(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with a 413, before they are read or decoded.

    The Content-Length is checked here for every route; a predict body's bytes are counted as they
    arrive by :class:`Admission`, which reads it; other routes' bodies, as the app reads them.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings, self.limit = app, settings, settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is larger than the limit of {self.limit:,} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await error_response(ImageTooLarge(message), self.settings)(scope, receive, send)
            return
        if is_predict(scope):
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:  # chunked bodies carry no Content-Length
            nonlocal received
            msg = await receive()
            received += len(msg.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, message)  # FastAPI passes HTTPExceptions from body reading through
            return msg

        await self.app(scope, limited_receive, send)


def is_predict(scope: Scope) -> bool:
    """A predict request: the only routes that take a body."""
    return scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in PREDICT_PATHS


class Admission:
    """The predict queue: refused before the body when full, entered only once the body has arrived.

    1. At the headers: when ``max_queue`` requests are in flight, a 503 + Retry-After, body unread.
    2. The body is read here, and must keep arriving: a pause longer than ``body_timeout``, or an
       average below ``body_min_rate`` once that has passed, is a 408 that closes the connection;
       more than ``max_body_bytes`` a 413; bodies being received or held by queued requests take at
       most ``max_queue`` bodies' worth of memory in all (else a 503).
    3. Only then is the request in flight (and counted against ``max_queue``), until answered.

    So a client that sends its headers and then nothing, or one byte a second, holds a connection
    for ``body_timeout`` seconds, never a place in the queue.
    """

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_predict(scope):
            await self.app(scope, receive, send)
            return
        service, settings = self.service, self.service.settings
        if service.in_flight >= settings.max_queue:
            await error_response(self._busy(), settings)(scope, receive, send)
            return
        held = 0
        try:
            try:
                body = await self._read_body(receive)
            except YoloServiceError as exc:  # 408, 413, 503: the body is unread, so the connection ends
                await error_response(exc, settings, {"Connection": "close"})(scope, receive, send)
                return
            if body is None:  # the client left while sending
                return
            held = len(body)
            service.body_bytes += held
            if service.in_flight >= settings.max_queue:
                await error_response(self._busy(), settings)(scope, receive, send)
                return
            service.in_flight += 1
            try:
                await self.app(scope, _replay(body, receive), send)
            finally:
                service.in_flight -= 1
        finally:
            service.body_bytes -= held

    def _busy(self) -> Overloaded:
        return Overloaded(f"the server is busy ({self.service.in_flight} requests in progress); retry in a few seconds")

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None if the client disconnected; bytes are added to ``service.body_bytes``.

        Raises:
            RequestTimeout: a pause over ``body_timeout``, or too slow on average after it.
            ImageTooLarge: more than ``max_body_bytes``.
            Overloaded: all bodies together would exceed ``max_queue`` bodies' worth.
        """
        service, settings = self.service, self.service.settings
        budget = settings.max_queue * settings.max_body_bytes
        chunks: list[bytes] = []
        received = 0
        started = anyio.current_time()
        service.receiving += 1
        try:
            while True:
                # The whole body may take body_timeout plus one second per body_min_rate bytes received.
                allowed = settings.body_timeout + received / settings.body_min_rate
                wait = min(settings.body_timeout, started + allowed - anyio.current_time())
                with anyio.move_on_after(max(wait, 0)):
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    received += len(chunk)
                    service.body_bytes += len(chunk)
                    if received > settings.max_body_bytes:
                        raise ImageTooLarge(
                            f"the request body is larger than the limit of {settings.max_body_bytes:,} bytes"
                        )
                    if service.body_bytes > budget:
                        raise Overloaded("the server holds as many request bodies as it takes; retry in a few seconds")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
                    continue
                raise RequestTimeout(
                    f"the request body stopped arriving ({received:,} bytes in {anyio.current_time() - started:.0f} s):"
                    f" it must not pause for more than {settings.body_timeout:g} s, nor average less than"
                    f" {settings.body_min_rate:,} bytes/s after that"
                )
        finally:
            service.receiving -= 1
            service.body_bytes -= received  # what the request keeps is counted again by its caller


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives ``body`` as the one request message, then whatever ``receive`` says (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


#: Predict bodies up to this size are parsed on the event loop (0.5 ms here), bigger ones in a worker thread.
INLINE_JSON_BYTES = 256 * 1024


def parse_predict_json(body: bytes, max_values: int) -> Any:
    """A predict body's JSON: its values counted first, only the contract's fields kept.

    Every JSON value but the first follows a comma or opens with a bracket, and a base64 image has
    none of them, so counting those bytes (fast, in C) bounds the number of values before a parser
    turns them into Python objects: 25 MB of ``[1,1,1,…]`` in a field the contract ignores would be
    millions of them (about 20 times the body's size for ``[{},{},…]``).

    Raises:
        HTTPException: 422 when the body holds more than ``max_values`` values (FastAPI passes
            HTTPExceptions from body parsing through; any other exception becomes its generic 400).
        json.JSONDecodeError: not JSON (FastAPI answers its usual 422 ``json_invalid``).
    """
    values = body.count(b",") + body.count(b"[") + body.count(b"{")
    if values > max_values:
        raise HTTPException(
            422,
            f"the JSON body holds about {values:,} values; a predict request has at most {max_values:,} "
            "(its fields and the class names): send only the fields of the contract (see /docs)",
        )
    data = json.loads(body)
    if isinstance(data, dict):
        data = {key: value for key, value in data.items() if key in CONTRACT_FIELDS}
    return data


class ImageParts(MultiPartParser):
    """Starlette's multipart parser, for the predict form: an ``image`` part is a file, with or without a filename.

    Starlette decodes a part without a filename as text (a failed UTF-8 decode falls back to
    latin-1), which FastAPI encodes back as UTF-8: an image sent that way arrived changed. A second
    ``image`` part is refused: the last one would silently have won.
    """

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        part = self._current_part
        if part.field_name != "image":
            return
        if any(name == "image" for name, _ in self.items):
            raise MultiPartException("the form has more than one image part: send exactly one")
        if part.file is None:  # no filename: still the file's bytes
            self._current_fields -= 1
            self._current_files += 1
            tempfile = SpooledTemporaryFile(max_size=self.spool_max_size)  # noqa: SIM115 (closed with the form)
            self._files_to_close_on_error.append(tempfile)
            headers = Headers(raw=part.item_headers)
            part.file = UploadFile(file=tempfile, size=0, filename="image", headers=headers)  # type: ignore[arg-type]


class PredictRouteRequest(Request):
    """The predict routes' request: JSON parsed by :func:`parse_predict_json`, multipart by :class:`ImageParts`."""

    max_values = Settings.model_fields["max_classes"].default + 64  # set per app by predict_route()

    async def body(self) -> bytes:
        """The body without a copy: :class:`Admission` hands it over whole (Starlette joins it with an empty end)."""
        if not hasattr(self, "_body"):
            chunks = [chunk async for chunk in self.stream() if chunk]
            self._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            if len(body) <= INLINE_JSON_BYTES:  # parsing takes about as long as a trip to a thread would
                self._json = parse_predict_json(body, self.max_values)
            else:  # a bigger body would hold up every other request: parsed in a worker thread
                self._json = await run_in_threadpool(parse_predict_json, body, self.max_values)
        return self._json

    def form(
        self, *, max_files: int | float = 1000, max_fields: int | float = 1000, max_part_size: int = 1024 * 1024
    ) -> AwaitableOrContextManager[FormData]:
        return AwaitableOrContextManagerWrapper(self._image_form(max_files, max_fields, max_part_size))

    async def _image_form(self, max_files: int | float, max_fields: int | float, max_part_size: int) -> FormData:
        if self._form is None and self.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            try:
                async with aclosing(self.stream()) as stream:
                    parser = ImageParts(
                        self.headers, stream, max_files=max_files, max_fields=max_fields, max_part_size=max_part_size
                    )
                    self._form = await parser.parse()
            except MultiPartException as exc:
                raise HTTPException(400, exc.message) from None
        return await super().form(max_files=max_files, max_fields=max_fields, max_part_size=max_part_size)


def predict_route(settings: Settings) -> type[APIRoute]:
    """The route class of the predict routes: their requests are :class:`PredictRouteRequest` (FastAPI's custom
    route class, as in its docs' "Custom Request and APIRoute class")."""

    class PredictRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def predict_handler(request: Request) -> Response:
                custom = PredictRouteRequest(request.scope, request.receive)
                custom.max_values = settings.max_json_values
                return await handler(custom)

            return predict_handler

    return PredictRoute


def _openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The OpenAPI schema: every operation documents its 500 (and, with an API key, its 401) as ErrorResponse."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.setdefault("500", {"description": _WHEN[500], **error})
                if settings.api_key is not None and path not in OPEN_PATHS:
                    responses.setdefault("401", {"description": _WHEN[401], **error})
                    operation["security"] = [{"APIKey": []}]
        if settings.api_key is not None:
            schema.setdefault("components", {})["securitySchemes"] = {
                "APIKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}
            }
        app.openapi_schema = schema
    return app.openapi_schema


def return_freed_memory() -> None:
    """Have glibc give freed image buffers back to the system (mallopt M_MMAP_THRESHOLD = 1 MiB).

    glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
    the next images' buffers come from its heaps, where freed memory mostly stays resident (eight
    rotated RGBA images could leave 2.3 GB). A fixed threshold keeps every buffer of 1 MiB or more mmapped,
    so freeing it returns it. Nothing to do on other C libraries.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_mmap_threshold = -3  # <malloc.h>
    if hasattr(libc, "mallopt"):
        libc.mallopt(m_mmap_threshold, 1024 * 1024)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API app for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logs.install()  # from here on, no log write can block the event loop
        return_freed_memory()
        if settings.preload:
            threading.Thread(target=service.load_default, name="load-default-model", daemon=True).start()
        else:
            service.ready.set()
        yield
        logs.uninstall()  # no more requests: the last lines are written directly, none lost at exit

    app = FastAPI(title=TITLE, description=DESCRIPTION, version=__version__, lifespan=lifespan)
    app.state.service = service
    app.openapi = lambda: _openapi(app, settings)  # type: ignore[method-assign]
    # add_middleware wraps: the last added is the outermost.
    app.add_middleware(Admission, service=service)
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(ApiKeyGate, settings=settings)
    app.add_middleware(HeaderLimit, settings=settings)
    app.add_middleware(RequestLog, settings=settings, observers=service.on_response)
    app.add_middleware(logs.RequestContextMiddleware)  # outermost: every entry and error of a request has its id

    async def handle_error(request: Request, exc: Exception) -> JSONResponse:
        headers = None
        if isinstance(exc, RequestValidationError):
            exc = _validation_error(exc)
        elif isinstance(exc, HTTPException):
            headers = exc.headers
            exc = _http_error(exc)
        assert isinstance(exc, YoloServiceError)
        return error_response(exc, settings, headers)

    for kind in (YoloServiceError, RequestValidationError, HTTPException):
        app.add_exception_handler(kind, handle_error)

    @app.get("/", summary="The service's title")
    def root() -> str:
        return TITLE

    @app.get("/version", summary="The service's version")
    def version() -> str:
        return __version__

    @app.get("/describe", summary="What the service does")
    def describe() -> str:
        return DESCRIPTION

    # The probes are async: answered on the event loop, never queued behind busy worker threads.
    @app.api_route("/health", methods=["GET", "HEAD"], summary="Liveness: 200 as soon as the process serves")
    async def health() -> HealthResponse:
        return HealthResponse()

    @app.get("/ready", summary="Readiness: 200 once the default model is loaded, else 503", responses=_responses(503))
    async def ready(svc: ServiceDep) -> ReadyResponse:
        if not svc.ready.is_set():
            raise NotReady(svc.load_error or "the default model is still loading")
        detector = svc.registry.get(None)  # the default model, loaded: nothing to read or load here
        return ReadyResponse(default_model=detector.spec.name, engine=detector.engine, precision=detector.precision)

    @app.get("/models", summary="The names of the models this service can serve")
    def models(svc: ServiceDep) -> list[str]:
        return svc.registry.catalog.names()

    @app.get(
        "/models/{name}",
        summary="One model: classes, source, loaded, available offline",
        responses=_responses(404, 422, 503),
    )
    def model_info(name: Annotated[str, PathParam(examples=["shapes"])], svc: ServiceDep) -> ModelInfo:
        registry = svc.registry
        default = svc.ready.is_set() and registry.default_model() == registry.catalog.spec(name).name
        info = registry.catalog.info(name, loaded=registry.loaded(name), default=default)
        if info.loaded:
            detector = registry.get(name)
            info.classes, info.engine, info.precision = detector.classes, detector.engine, detector.precision
        return info

    predict_errors = _responses(400, 404, 408, 413, 415, 422, 503)
    predict_class = predict_route(settings)

    def post_predict(path: str, description: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """``@app.post`` with the predict routes' request class (an APIRouter would hide the routes from app.routes)."""

        def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
            app.router.add_api_route(
                path,
                endpoint,
                methods=["POST"],
                description=description,
                response_description="Detections + Processing time",
                responses=predict_errors,
                route_class_override=predict_class,
            )
            return endpoint

        return register

    @post_predict("/predict", "Send a base64 encoded image + the model name, get detections")
    async def predict(body: PredictRequest, svc: ServiceDep, request: Request) -> PredictResponse:
        return await svc.run_predict(body.image, body.options, request.receive)  # base64: decoded in the worker

    @post_predict("/predict/file", "The same as /predict, with the image as a multipart file upload (no base64)")
    async def predict_file(
        svc: ServiceDep,
        request: Request,
        # bytes, not UploadFile: the schema says "a binary string", and a plain form field is one too.
        image: Annotated[bytes, File(description="the image file")],
        model: Annotated[str | None, Form(examples=["shapes"])] = None,
        confidence: Annotated[float | None, Form(ge=0.0, le=1.0, allow_inf_nan=False)] = None,
        iou: Annotated[float | None, Form(ge=0.0, le=1.0, allow_inf_nan=False)] = None,
        classes: Annotated[str | None, Form(description="comma-separated class names")] = None,
        max_detections: Annotated[int | None, Form(ge=1, le=1000)] = None,
        annotate: Annotated[bool, Form()] = False,
    ) -> PredictResponse:
        try:  # the same validated options as /predict: one model, one meaning
            options = PredictOptions(
                model=model or None,
                confidence=confidence,
                iou=iou,
                max_detections=max_detections,
                classes=[c.strip() for c in classes.split(",") if c.strip()] if classes else None,
                annotate=annotate,
            )
        except ValidationError as exc:
            raise _validation_error(exc) from None
        return await svc.run_predict(image, options, request.receive)

    instrument(app, service, PREDICT_PATHS)  # GET /metrics and its counters (yolo_service/metrics.py)

    def log_prediction(response: PredictResponse) -> None:  # in the worker thread, within the request's context
        size = f"{response.image.width}x{response.image.height}"
        logs.annotate(model=response.model, engine=response.engine or settings.engine, image_size=size)

    service.registry.on_predict.append(log_prediction)
    return app
