"""The service's logs: one entry per line, one request id throughout, and never a write on the event loop.

**Two formats** (:func:`configure` picks one from the settings). For people, in a terminal,
``docker compose logs`` or a notebook, :class:`TextFormatter` writes
``TIME LEVEL LOGGER [REQUEST_ID]: MESSAGE``. On Cloud Run, every line a container writes to
stdout or stderr becomes one Cloud Logging entry, so :class:`CloudLoggingFormatter` writes one
JSON object per line in Cloud Logging's structured format
(https://cloud.google.com/logging/docs/structured-logging): ``severity`` (so "errors only"
finds them), ``message`` (a traceback stays inside it: one entry, not one per line), the
request's fields (method, path, status, latency, model, engine, image size, bytes, error),
``httpRequest`` on the request's own line, and ``logging.googleapis.com/trace`` set to
``projects/PROJECT/traces/TRACE_ID``, which ties the entry to Cloud Run's request log for the
same request (https://cloud.google.com/run/docs/logging#correlate-logs). JSON is the choice
when ``YOLO_SERVICE_LOG_FORMAT=json``, or with the default ``auto`` when ``K_SERVICE`` is set
(Cloud Run sets it).

**One request id.** :class:`RequestContextMiddleware` takes the caller's trace id from the
W3C ``traceparent`` header, else from Cloud Run's ``X-Cloud-Trace-Context``, else makes one
(https://cloud.google.com/trace/docs/trace-context), keeps it in a context variable for the
request's lifetime (worker threads started for the request inherit it), and answers it in
``X-Request-ID``. Every entry logged during the request carries it; :func:`annotate` adds
fields (the model, the image size) to the request's later entries.

**Never blocking.** A server's log goes to a pipe read by docker, Cloud Run or a parent
process. When the reader is slow or gone, the pipe's 64 KiB buffer fills and the next
``write()`` blocks; on the event loop's thread, that stops every request, ``/health``
included, while the process stays alive (nine tracebacks did it once). So :func:`install`
puts a :class:`DroppingQueueHandler` (the standard ``QueueHandler``) in front of the handlers
that write to a file descriptor, and a ``QueueListener`` thread writes for them. When the
queue is full (the writer is stuck), records are dropped and counted; nobody waits.
Tracebacks are formatted at once, so a queued record holds no frames (and no images in their
locals).

Standard library only; starlette's types are only annotations.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import io
import json
import logging
import logging.handlers
import queue
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from .config import Settings

__all__ = [
    "REQUEST_ID_HEADER",
    "CloudLoggingFormatter",
    "DroppingQueueHandler",
    "RequestContext",
    "RequestContextMiddleware",
    "TextFormatter",
    "annotate",
    "configure",
    "context_from_headers",
    "dropped",
    "flush",
    "install",
    "request_id",
    "uninstall",
]

REQUEST_ID_HEADER = "X-Request-ID"
#: Cloud Logging's special fields of a structured entry: the trace, the span, and the sampling decision.
TRACE_FIELD = "logging.googleapis.com/trace"
SPAN_FIELD = "logging.googleapis.com/spanId"
SAMPLED_FIELD = "logging.googleapis.com/trace_sampled"
#: Loggers whose handlers write from the event loop under uvicorn and ``yolo-service serve``.
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
CAPACITY = 2048
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"


# --- The request's context ---------------------------------------------------------------------------------


@dataclass
class RequestContext:
    """What every log entry of one request carries: its id (the trace id), the caller's span, and fields."""

    request_id: str
    span_id: str | None = None
    sampled: bool | None = None
    fields: dict[str, Any] = field(default_factory=dict)


_request: ContextVar[RequestContext | None] = ContextVar("yolo_service_request", default=None)
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_CLOUD_TRACE = re.compile(r"([0-9a-f]{32})(?:/([0-9]{1,20}))?(?:;o=([0-9]))?")


def request_id() -> str | None:
    """The id of the request being served (None outside a request)."""
    context = _request.get()
    return context.request_id if context else None


def annotate(**fields: Any) -> None:
    """Add ``fields`` (e.g. ``model="shapes"``) to the current request's next log entries; outside one, nothing."""
    context = _request.get()
    if context is not None:
        context.fields.update(fields)


def _from_traceparent(value: str) -> RequestContext | None:
    """W3C Trace Context: ``VERSION-TRACE_ID-PARENT_ID-FLAGS``; None when malformed (then it is ignored)."""
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace, parent, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace == "0" * 32 or parent == "0" * 16:
        return None
    return RequestContext(trace, parent, bool(int(flags, 16) & 1))


def _from_cloud_trace(value: str) -> RequestContext | None:
    """Google's older ``TRACE_ID/SPAN_ID;o=OPTIONS`` (the span in decimal); None when malformed."""
    match = _CLOUD_TRACE.fullmatch(value.strip().lower())
    if match is None or match[1] == "0" * 32:
        return None
    span = int(match[2]) if match[2] else 0
    sampled = None if match[3] is None else match[3] == "1"
    return RequestContext(match[1], f"{span:016x}" if 0 < span < 2**64 else None, sampled)


def context_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> RequestContext:
    """The request's context from its ``traceparent``, else ``X-Cloud-Trace-Context``, else a new random id."""
    found = {name.lower(): value.decode("latin-1") for name, value in headers}
    for name, parse in ((b"traceparent", _from_traceparent), (b"x-cloud-trace-context", _from_cloud_trace)):
        if name in found and (context := parse(found[name])) is not None:
            return context
    return RequestContext(secrets.token_hex(16))


class RequestContextMiddleware:
    """Give each HTTP request its id for its whole lifetime, and answer it in ``X-Request-ID`` (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context = context_from_headers(scope["headers"])
        context.fields.update(method=scope["method"], path=scope["path"])
        header = (REQUEST_ID_HEADER.lower().encode(), context.request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        token = _request.set(context)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request.reset(token)


def _stamp(record: logging.LogRecord) -> None:
    """Copy the current request's id and fields onto ``record``, once, in the thread that logged it.

    A record may carry its own ``request_id`` (``extra=``: the client logs the id a backend answered).
    """
    if hasattr(record, "request_fields"):
        return
    context = _request.get()
    if getattr(record, "request_id", None) is None:
        record.request_id = context.request_id if context else None
    record.span_id = context.span_id if context else None
    record.trace_sampled = context.sampled if context else None
    record.request_fields = dict(context.fields) if context else {}


# --- Formats ---------------------------------------------------------------------------------------------


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER [REQUEST_ID]: MESSAGE`` (no brackets outside a request); a traceback follows."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        _stamp(record)
        identifier = getattr(record, "request_id", None)
        record.request_tag = f" [{identifier}]" if identifier else ""
        return super().format(record)


def severity(levelno: int) -> str:
    """Cloud Logging's severity name for a Python level (a custom level takes the one below it)."""
    for level, name in ((50, "CRITICAL"), (40, "ERROR"), (30, "WARNING"), (20, "INFO"), (10, "DEBUG")):
        if levelno >= level:
            return name
    return "DEFAULT"


class CloudLoggingFormatter(logging.Formatter):
    """One JSON object per record, on one line, in Cloud Logging's structured format.

    Args:
        project: the Google Cloud project; with it, an entry of a request names its trace
            (``projects/PROJECT/traces/REQUEST_ID``), and Cloud Logging groups it with Cloud Run's
            request log of the same request.
    """

    def __init__(self, project: str | None = None) -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        _stamp(record)
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # inside the message: one entry, and Error Reporting finds the traceback there
            message = f"{message}\n{record.exc_text}"
        if record.stack_info:
            message = f"{message}\n{self.formatStack(record.stack_info)}"
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds")
        entry: dict[str, Any] = {
            "severity": severity(record.levelno),
            "message": message,
            "time": when.replace("+00:00", "Z"),
            "logger": record.name,
        }
        identifier = getattr(record, "request_id", None)
        if identifier:
            entry["request_id"] = identifier
            if self.project and _TRACE_ID.fullmatch(identifier):
                entry[TRACE_FIELD] = f"projects/{self.project}/traces/{identifier}"
                if span := getattr(record, "span_id", None):
                    entry[SPAN_FIELD] = span
                if (sampled := getattr(record, "trace_sampled", None)) is not None:
                    entry[SAMPLED_FIELD] = sampled
        fields = {**getattr(record, "request_fields", {}), **(getattr(record, "fields", None) or {})}
        for name, value in fields.items():
            entry.setdefault(name, value)
        if http_request := getattr(record, "http_request", None):
            entry["httpRequest"] = http_request
        return json.dumps(entry, default=str)


def formatter(settings: Settings) -> logging.Formatter:
    """The formatter the settings ask for: JSON entries (Cloud Run) or text."""
    return CloudLoggingFormatter(settings.gcp_project) if settings.json_logs else TextFormatter()


class _LinesToLog(io.TextIOBase):
    """A stand-in for ``sys.stdout`` / ``sys.stderr``: each line a library prints becomes one log record.

    In JSON mode every line must be a JSON entry; a library that prints plain text (Ultralytics
    announcing its settings file, a progress bar) would break that, so its lines go through logging.
    """

    def __init__(self, name: str, level: int, original: TextIO) -> None:
        super().__init__()
        self.logger, self.level, self.original = logging.getLogger(name), level, original
        self._pending = ""
        self._lock = threading.Lock()
        self._inside = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if getattr(self._inside, "active", False):  # logging itself failed and reports it: no loop
            return self.original.write(text)
        with self._lock:
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
        self._inside.active = True
        try:
            for line in lines:
                if line.strip():
                    self.logger.log(self.level, "%s", line.rstrip("\r"))
        finally:
            self._inside.active = False
        return len(text)

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.original.encoding


_configured: logging.Handler | None = None


def configure(settings: Settings, *, capture_output: bool = False) -> logging.Handler:
    """Send every log record to stderr in the settings' format and level, through one root handler.

    Idempotent: a second call replaces the handler of the first. uvicorn's loggers keep no
    handler of their own and pass their records to this one (run it with ``log_config=None``).
    ``capture_output`` (JSON only): lines printed by libraries become log entries too.
    """
    global _configured
    root = logging.getLogger()
    if _configured is not None:
        root.removeHandler(_configured)
    stream = getattr(sys.stderr, "original", sys.stderr)  # never a _LinesToLog: that would loop
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(settings))
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    _configured = handler
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call; the kit's client logs its own, with ids
    logging.captureWarnings(True)  # warnings.showwarning writes to stderr directly; route it through logging
    if capture_output and settings.json_logs and not isinstance(sys.stdout, _LinesToLog):
        sys.stdout = _LinesToLog("stdout", logging.INFO, sys.stdout)
        sys.stderr = _LinesToLog("stderr", logging.WARNING, sys.stderr)
    return handler


# --- Never blocking --------------------------------------------------------------------------------------

_PLAIN = logging.Formatter()
_lock = threading.Lock()
_handlers: list[DroppingQueueHandler] = []
_installed: list[tuple[logging.Logger, DroppingQueueHandler]] = []


class DroppingQueueHandler(logging.handlers.QueueHandler):
    """A ``QueueHandler`` that never waits: a record that finds the queue full is dropped and counted.

    Its ``QueueListener`` thread hands the queued records to ``targets`` (each at its own level).
    """

    def __init__(self, targets: list[logging.Handler], capacity: int = CAPACITY) -> None:
        super().__init__(queue.Queue(capacity))
        self.targets = targets
        self.dropped = 0
        self.listener = logging.handlers.QueueListener(self.queue, *targets, respect_handler_level=True)
        self.listener.start()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """In the logging thread: stamp the request, render the message and the traceback, keep the fields.

        (The standard ``prepare`` would format the whole line here, with this handler's formatter:
        the targets' formatters, JSON or text, would then only see a string.)
        """
        _stamp(record)
        record = copy.copy(record)
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = record.exc_text or _PLAIN.formatException(record.exc_info)
            record.exc_info = None  # no frames, hence no locals (images) held by the queue
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def drain(self, timeout: float = 2.0) -> bool:
        """Wait up to ``timeout`` s for the queued records to be written; True if they were."""
        pending = self.queue
        assert isinstance(pending, queue.Queue)
        deadline = time.monotonic() + timeout
        while pending.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not pending.unfinished_tasks


def _blocks(handler: logging.Handler) -> bool:
    """True for a handler that writes to a file descriptor (a pipe, a tty, a file): a write that can block."""
    stream = getattr(handler, "stream", None)
    if not isinstance(handler, logging.StreamHandler) or stream is None:
        return False
    try:
        stream.fileno()
    except (OSError, ValueError, AttributeError):  # io.StringIO (pytest's capture), closed streams
        return False
    return True


def install(names: tuple[str, ...] = LOGGERS, capacity: int = CAPACITY) -> None:
    """Move the handlers of ``names`` behind non-blocking queues (idempotent, process-wide)."""
    with _lock:
        root = logging.getLogger()
        if not root.handlers:  # else records would reach logging.lastResort: a blocking write to stderr
            fallback = logging.StreamHandler(sys.stderr)
            fallback.setFormatter(TextFormatter())
            root.addHandler(fallback)
        for name in names:
            logger = logging.getLogger(name)
            targets = [h for h in logger.handlers if _blocks(h)]
            if not targets:
                continue
            for target in targets:
                logger.removeHandler(target)
            handler = DroppingQueueHandler(targets, capacity)
            logger.addHandler(handler)
            if not _handlers:
                atexit.register(flush)
            _handlers.append(handler)
            _installed.append((logger, handler))
        logging.captureWarnings(True)


def flush(timeout: float = 1.0) -> None:
    """Give the writer threads up to ``timeout`` s to write what is queued (at exit; never hangs on a stuck pipe)."""
    deadline = time.monotonic() + timeout
    for handler in list(_handlers):
        handler.drain(max(0.0, deadline - time.monotonic()))


def uninstall(timeout: float = 1.0) -> None:
    """Write what is queued (up to ``timeout`` s), then give the loggers their own handlers back.

    Called when the app shuts down: the last lines (uvicorn's "Application shutdown complete.")
    are then written directly, before uvicorn ends the process with a signal that skips atexit.
    A logger whose writer is stuck (its reader gone) keeps its queue: shutdown must not block.
    """
    with _lock:
        deadline = time.monotonic() + timeout
        for logger, handler in list(_installed):
            if not handler.drain(max(0.0, deadline - time.monotonic())):
                continue  # the reader is stuck: a direct write would block the shutdown; keep dropping instead
            _installed.remove((logger, handler))
            logger.removeHandler(handler)
            for target in handler.targets:
                logger.addHandler(target)
            with contextlib.suppress(queue.Full):  # ends the listener's thread; never joined: it may be stuck
                handler.listener.enqueue_sentinel()
            _handlers.remove(handler)


def dropped() -> int:
    """How many records were dropped because the log writer could not keep up."""
    return sum(handler.dropped for handler in _handlers)
