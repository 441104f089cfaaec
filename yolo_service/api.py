"""The FastAPI app: thin routes over :mod:`yolo_service.models` and :mod:`yolo_service.images`.

``create_app(settings)`` builds the app; uvicorn runs it as a factory
(``uvicorn --factory yolo_service.api:create_app``). The default model loads in a
background thread started by the lifespan, so ``/health`` answers at once and
``/ready`` turns 200 when the model is loaded. Inference and decoding run in worker
threads, never on the event loop; a bounded counter turns excess load into a fast 503.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__
from .config import Settings, get_settings
from .drawing import draw_detections
from .errors import ImageTooLarge, NotReady, Overloaded, YoloServiceError
from .images import decode_base64, encode_base64, load_image, load_reduced
from .metrics import instrument
from .models import ModelRegistry
from .schema import (
    ErrorResponse,
    HealthResponse,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
)

__all__ = ["create_app"]

logger = logging.getLogger("yolo_service.api")

TITLE = "yolo-service: YOLO object detection API, created with FastAPI"
DESCRIPTION = (
    "Send an image (base64 in JSON to `POST /predict`, or a file to `POST /predict/file`) and a model "
    "name from `GET /models`; get back the detected objects' boxes (pixels of the original image), "
    "class names and confidences, and the model's processing time in seconds."
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "not base64, or not an image",
        404: "unknown model",
        413: "body or image too large",
        415: "image format not allowed",
        503: "model unavailable, not ready, or overloaded (see Retry-After)",
    }.items()
}


class Service:
    """What the routes share: settings, the model registry, readiness and the load counter."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = ModelRegistry(settings)
        self.ready = threading.Event()
        self.load_error: str | None = None
        self._in_flight = 0
        self._count_lock = threading.Lock()

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

    def admit(self) -> None:
        """Count a predict request in, or refuse it at once when the queue is full."""
        with self._count_lock:
            if self._in_flight >= self.settings.max_queue:
                raise Overloaded(f"the server is busy ({self._in_flight} requests in progress); retry in a few seconds")
            self._in_flight += 1

    def release(self) -> None:
        """Count a predict request out."""
        with self._count_lock:
            self._in_flight -= 1

    def predict(self, data: bytes, request: PredictRequest) -> PredictResponse:
        """Check readiness, decode, predict, optionally annotate: the blocking part of a request."""
        if not request.model and not self.ready.is_set():  # before decoding: no work for a request we refuse
            raise NotReady(self.load_error or "the default model is still loading; retry in a few seconds")
        # Decode only what the model sees (boxes come back in the original's pixels); annotate draws on the original.
        if request.annotate:
            image, original = load_image(data, settings=self.settings), None
        else:
            image, original = load_reduced(data, self.registry.input_size(request.model), settings=self.settings)
        response = self.registry.predict_image(
            image,
            request.model,
            original_size=original,
            confidence=request.confidence,
            iou=request.iou,
            classes=request.classes,
            max_detections=request.max_detections,
        )
        if request.annotate:
            response.annotated_image = encode_base64(draw_detections(image, response.detections))
        return response

    async def run_predict(self, data: bytes, request: PredictRequest) -> PredictResponse:
        """Run :meth:`predict` in a worker thread, within the queue bound."""
        self.admit()
        try:
            return await run_in_threadpool(self.predict, data, request)
        finally:
            self.release()


def get_service(request: Request) -> Service:
    """The app's :class:`Service` (a dependency, so tests can override it)."""
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with a 413, before they are read or decoded."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is larger than the limit of {self.limit:,} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            response = JSONResponse({"detail": message, "error": ImageTooLarge.__name__}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:  # chunked bodies carry no Content-Length
            nonlocal received
            msg = await receive()
            received += len(msg.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, message)
            return msg

        await self.app(scope, limited_receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API app for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.preload:
            threading.Thread(target=service.load_default, name="load-default-model", daemon=True).start()
        else:
            service.ready.set()
        yield

    app = FastAPI(title=TITLE, description=DESCRIPTION, version=__version__, lifespan=lifespan)
    app.state.service = service
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    @app.middleware("http")
    async def log_request(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        logger.info(
            "%s %s %d %.1f ms",
            request.method,
            request.url.path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    @app.exception_handler(YoloServiceError)
    async def handle_error(request: Request, exc: YoloServiceError) -> JSONResponse:
        # Every 503 says when to retry: the error's own delay, else the configured one.
        retry = exc.retry_after or (settings.retry_after if exc.status_code == 503 else None)
        headers = {"Retry-After": str(retry)} if retry else None
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, exc.status_code, headers=headers)

    @app.get("/", summary="The service's title")
    def root() -> str:
        return TITLE

    @app.get("/version", summary="The service's version")
    def version() -> str:
        return __version__

    @app.get("/describe", summary="What the service does")
    def describe() -> str:
        return DESCRIPTION

    @app.get("/health", summary="Liveness: 200 as soon as the process serves")
    def health() -> HealthResponse:
        return HealthResponse()

    @app.get(
        "/ready", summary="Readiness: 200 once the default model is loaded, else 503", responses={503: _ERRORS[503]}
    )
    def ready(svc: ServiceDep) -> ReadyResponse:
        if not svc.ready.is_set():
            raise NotReady(svc.load_error or "the default model is still loading")
        return ReadyResponse(default_model=svc.registry.default_model())

    @app.get("/models", summary="The names of the models this service can serve")
    def models(svc: ServiceDep) -> list[str]:
        return svc.registry.catalog.names()

    @app.get(
        "/models/{name}", summary="One model: classes, source, loaded, available offline", responses={404: _ERRORS[404]}
    )
    def model_info(name: Annotated[str, PathParam(examples=["shapes"])], svc: ServiceDep) -> ModelInfo:
        registry = svc.registry
        default = svc.ready.is_set() and registry.default_model() == registry.catalog.spec(name).name
        info = registry.catalog.info(name, loaded=registry.loaded(name), default=default)
        if info.loaded:
            info.classes = registry.get(name).classes
        return info

    @app.post(
        "/predict",
        description="Send a base64 encoded image + the model name, get detections",
        response_description="Detections + Processing time",
        responses=_ERRORS,
    )
    async def predict(body: PredictRequest, svc: ServiceDep) -> PredictResponse:
        data = decode_base64(body.image)  # fail fast on bad base64, before taking a queue slot
        return await svc.run_predict(data, body)

    @app.post(
        "/predict/file",
        description="The same as /predict, with the image as a multipart file upload (no base64)",
        response_description="Detections + Processing time",
        responses=_ERRORS,
    )
    async def predict_file(
        svc: ServiceDep,
        image: Annotated[UploadFile, File(description="the image file")],
        model: Annotated[str | None, Form(examples=["shapes"])] = None,
        confidence: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
        iou: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
        classes: Annotated[str | None, Form(description="comma-separated class names")] = None,
        max_detections: Annotated[int | None, Form(ge=1, le=1000)] = None,
        annotate: Annotated[bool, Form()] = False,
    ) -> PredictResponse:
        data = await image.read()
        # The form fields are validated above; the image travels as bytes, not as the base64 field.
        request = PredictRequest.model_construct(
            image="",
            model=model or None,
            confidence=confidence,
            iou=iou,
            max_detections=max_detections,
            classes=[c.strip() for c in classes.split(",") if c.strip()] if classes else None,
            annotate=annotate,
        )
        return await svc.run_predict(data, request)

    instrument(app, service)  # GET /metrics and the counting middleware (yolo_service/metrics.py)
    return app
