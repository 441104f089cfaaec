"""The library's typed errors, one per thing that can go wrong for a user.

    YoloServiceError                 base: every error the library raises on purpose
    ├── InvalidImage           400   empty, not base64, not an image, truncated
    │   └── UnsupportedImageFormat 415   an image, but of a format the service refuses
    ├── MalformedRequest       400   a body that cannot be parsed (broken multipart, …)
    ├── InvalidRequest         422   a parameter outside the schema, or one it cannot check (unknown class)
    ├── ImageTooLarge          413   too many bytes, pixels, scans or decoding work (decompression bombs too)
    ├── RequestTimeout         408   the body stopped arriving (or trickled) before it was complete
    ├── HeadersTooLarge        431   more request headers than the server takes
    ├── ClientDisconnected     499   the client left before its answer: the work for it was stopped
    ├── Unauthorized           401   an API key is required and was missing or wrong
    ├── UnknownModel           404   a name the catalog does not hold (or an unsafe one)
    ├── NotFound               404   no such route
    ├── MethodNotAllowed       405   the route exists, not with this method
    ├── InternalError          500   a defect of the service (logged with its traceback)
    └── ServiceUnavailable     503   try again later (``retry_after`` seconds)
        ├── ModelUnavailable         weights cannot be obtained (offline, download failed)
        ├── NotReady                 the default model is still loading
        ├── Overloaded               the request queue is full
        ├── ShuttingDown             the server stopped before this request finished
        └── BackendUnreachable       (client side) no answer from the backend URL

Each class carries the HTTP status the API answers with; the API maps errors to
responses in one handler, and :mod:`yolo_service.client` raises the same classes
again from the response, so callers catch the same types in-process and remotely.
:class:`InvalidRequest` may carry ``fields``: one ``{"loc", "msg", "type"}`` per problem; an error
raised by the client carries the request's ``request_id``, the key to its entries in the backend's log.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendUnreachable",
    "ClientDisconnected",
    "HeadersTooLarge",
    "ImageTooLarge",
    "InvalidImage",
    "InternalError",
    "InvalidRequest",
    "MalformedRequest",
    "MethodNotAllowed",
    "ModelUnavailable",
    "NotFound",
    "NotReady",
    "Overloaded",
    "RequestTimeout",
    "ServiceUnavailable",
    "ShuttingDown",
    "Unauthorized",
    "UnknownModel",
    "UnsupportedImageFormat",
    "YoloServiceError",
    "error_class",
]


class YoloServiceError(Exception):
    """Base class of every error the library raises on purpose."""

    status_code: int = 500
    #: Set by the client: the id the backend answered (``X-Request-ID``), or the one it sent when no answer came.
    request_id: str | None = None

    def __init_subclass__(cls, status_code: int | None = None, **kwargs: Any) -> None:
        """``class NotFound(YoloServiceError, status_code=404)``: the status stands on the class's line."""
        super().__init_subclass__(**kwargs)
        if status_code is not None:
            cls.status_code = status_code

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class InvalidImage(YoloServiceError, status_code=400):
    """The bytes are not a readable image (empty, bad base64, truncated, not an image)."""


class UnsupportedImageFormat(InvalidImage, status_code=415):
    """A readable image whose format is not in the allowed list."""


class MalformedRequest(YoloServiceError, status_code=400):
    """The request body cannot be parsed at all (e.g. multipart without a boundary, too many files)."""


class InvalidRequest(YoloServiceError, status_code=422):
    """A request parameter outside the schema, or one the schema cannot check (e.g. an unknown class name)."""

    def __init__(
        self, message: str, *, fields: list[dict[str, Any]] | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.fields = fields


class ImageTooLarge(YoloServiceError, status_code=413):
    """The image (or the request body) exceeds the configured byte or pixel limit."""


class RequestTimeout(YoloServiceError, status_code=408):
    """The request body stopped arriving, or arrived slower than the server accepts."""


class HeadersTooLarge(YoloServiceError, status_code=431):
    """The request has more headers than the server takes."""


class ClientDisconnected(YoloServiceError, status_code=499):
    """The client closed its connection before the answer; the work for it was stopped (nginx's 499)."""


class UnknownModel(YoloServiceError, status_code=404):
    """The model name is not in the catalog, or is not a safe file name."""


class Unauthorized(YoloServiceError, status_code=401):
    """The service requires an API key (header ``X-API-Key``) and the request had none or a wrong one."""


class NotFound(YoloServiceError, status_code=404):
    """No route at this path."""


class MethodNotAllowed(YoloServiceError, status_code=405):
    """The route exists but does not take this HTTP method."""


class InternalError(YoloServiceError, status_code=500):
    """A defect of the service: an exception nobody expected (the server logs its traceback)."""


class ServiceUnavailable(YoloServiceError, status_code=503):
    """Temporarily unable to serve; ``retry_after`` says when to try again."""


class ModelUnavailable(ServiceUnavailable):
    """The model is in the catalog but its weights cannot be obtained (e.g. offline)."""


class NotReady(ServiceUnavailable):
    """The service is up but its default model is still loading."""


class Overloaded(ServiceUnavailable):
    """Too many requests are queued; retry after ``retry_after`` seconds."""


class ShuttingDown(ServiceUnavailable):
    """The server is stopping (SIGTERM) and this request did not finish within its grace period."""


class BackendUnreachable(ServiceUnavailable):
    """The client got no HTTP answer from the backend URL (down, wrong URL, timeout)."""


_BY_NAME = {
    cls.__name__: cls
    for cls in (
        YoloServiceError,
        InvalidImage,
        UnsupportedImageFormat,
        MalformedRequest,
        InvalidRequest,
        ImageTooLarge,
        RequestTimeout,
        HeadersTooLarge,
        ClientDisconnected,
        Unauthorized,
        UnknownModel,
        NotFound,
        MethodNotAllowed,
        InternalError,
        ServiceUnavailable,
        ModelUnavailable,
        NotReady,
        Overloaded,
        ShuttingDown,
        BackendUnreachable,
    )
}
_BY_STATUS = {
    400: InvalidImage,
    401: Unauthorized,
    404: UnknownModel,
    405: MethodNotAllowed,
    408: RequestTimeout,
    413: ImageTooLarge,
    415: UnsupportedImageFormat,
    422: InvalidRequest,
    431: HeadersTooLarge,
    499: ClientDisconnected,
    500: InternalError,
    503: ServiceUnavailable,
}


def error_class(name: str | None, status_code: int) -> type[YoloServiceError]:
    """The error class for an API error response: by its ``error`` name, else by status."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    return _BY_STATUS.get(status_code, YoloServiceError)
