"""Logging that never blocks the event loop: records go to a bounded queue, one thread writes them.

Why: a server's log goes to stdout/stderr, a pipe read by docker, Cloud Run or the parent
process. When the reader is slow or gone, the pipe's 64 KiB buffer fills and the next
``write()`` blocks. If that write is on the event loop's thread, every request waits,
``/health`` included, while the process stays alive and listening: nine unexpected
exceptions (a ~7 KB traceback each) were enough to stop the service this way.

So :func:`install` puts a :class:`DroppingQueueHandler` in front of the handlers of the
root, ``uvicorn`` and ``uvicorn.access`` loggers: the caller only appends the record to a
bounded queue, and a daemon thread hands it to the original handlers. When the queue is
full (the writer is stuck), records are dropped and counted; nobody waits. Tracebacks are
formatted at once, so a queued record holds no frames (and no images in their locals).
Standard library only.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import sys
import threading
import time

__all__ = ["DroppingQueueHandler", "dropped", "flush", "install", "uninstall"]

#: Loggers whose handlers write from the event loop under uvicorn and ``yolo-service serve``.
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
CAPACITY = 2048

_lock = threading.Lock()
_handlers: list[DroppingQueueHandler] = []
_installed: list[tuple[logging.Logger, DroppingQueueHandler]] = []


class DroppingQueueHandler(logging.Handler):
    """Queue records for a writer thread; when the queue is full, drop and count them instead of waiting."""

    def __init__(self, targets: list[logging.Handler], capacity: int = CAPACITY) -> None:
        super().__init__()
        self.targets = targets
        self.queue: queue.Queue[logging.LogRecord | None] = queue.Queue(capacity)
        self.dropped = 0
        self._writer = threading.Thread(target=self._write, name="log-writer", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record`` without blocking (the traceback is formatted now, its frames released)."""
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def _write(self) -> None:
        while True:
            record = self.queue.get()
            if record is None:  # uninstall(): this writer is done
                return
            try:
                for target in self.targets:
                    if record.levelno >= target.level:
                        target.handle(record)
            finally:
                self.queue.task_done()

    def drain(self, timeout: float = 2.0) -> bool:
        """Wait up to ``timeout`` s for the queued records to be written; True if they were."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.queue.unfinished_tasks


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
            fallback.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
        logging.captureWarnings(True)  # warnings.showwarning writes to stderr directly; route it through logging


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
            with contextlib.suppress(queue.Full):  # a writer stuck on a full pipe stays stuck, harmlessly
                handler.queue.put_nowait(None)
            _handlers.remove(handler)


def dropped() -> int:
    """How many records were dropped because the log writer could not keep up."""
    return sum(handler.dropped for handler in _handlers)
