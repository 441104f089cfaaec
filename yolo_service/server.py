"""uvicorn, set up for a public port: what the server does about silent, slow and greedy connections.

The app (:mod:`yolo_service.api`) bounds what a request may cost once its head has arrived. This
module bounds what a connection may hold before that, below the app, where uvicorn's defaults
leave it open:

- **Request heads are capped** at ``max_header_bytes`` (request line and headers): the h11
  parser refuses more (``h11_max_incomplete_event_size``); httptools, uvicorn's default, has no
  such cap (it buffers and parses a 64 MB header value).
- **A connection must send a complete request head** within ``idle_timeout`` seconds of opening,
  and of each answer (:class:`Connection`): uvicorn's keep-alive timer starts only after a first
  answer and stops at the first byte: a socket that sends nothing, or half a head, would stay open.
- **Pipelined requests wait in the socket**: h11 parses one request at a time and stops reading
  until it is answered (httptools parses every queued request at once: 200,000 of them took 355 MB).
- **At most ``max_connections`` connections**: beyond it, the one idle the longest (no request in
  progress) is closed, so idle sockets can never take the last file descriptors from ``/health``;
  the file-descriptor soft limit is raised to the hard limit, and the cap kept below it.
- **Shutdown**: requests get ``shutdown_timeout`` seconds to finish; the app answers the ones
  still running with a JSON 503 (:class:`~yolo_service.api.RequestLog`).

uvicorn's own ``limit_concurrency`` is not used: past its limit it answers every new request,
``/health`` included, with a plain-text 503, where closing an idle connection serves the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import Settings

__all__ = ["Connection", "raise_file_limit", "run", "uvicorn_options"]

logger = logging.getLogger("yolo_service.server")

#: File descriptors kept free under the limit for what is not a connection (logs, models, threads).
SPARE_DESCRIPTORS = 64


class Connection(H11Protocol):  # type: ignore[misc]  # uvicorn is typed as Any here (pyproject.toml)
    """uvicorn's h11 connection, with a deadline for each request head and a cap on open connections.

    ``settings`` and ``max_connections`` are set on the class by :func:`uvicorn_options` (uvicorn
    creates one instance per connection, with its own arguments).
    """

    settings: ClassVar[Settings] = Settings()
    max_connections: ClassVar[int] = Settings().max_connections

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_deadline: asyncio.TimerHandle | None = None
        self.idle_since = self.loop.time()

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self.wait_for_head()
        if len(self.connections) > self.max_connections:
            self.shed()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_waiting()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.wait_for_head()

    def wait_for_head(self) -> None:
        """(Re)start the clock: a complete request head must arrive within ``idle_timeout`` seconds."""
        self.stop_waiting()
        self.idle_since = self.loop.time()
        self.head_deadline = self.loop.call_later(self.settings.idle_timeout, self.head_overdue)

    def stop_waiting(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    @property
    def idle(self) -> bool:
        """No request in progress: none yet, or the last one answered and no new head complete."""
        return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

    def head_overdue(self) -> None:
        """The deadline passed: close the connection if it is still waiting for a head (else a request runs)."""
        self.head_deadline = None
        if self.idle and not self.transport.is_closing():
            self.close()

    def close(self) -> None:
        """Close the connection between requests, as uvicorn's keep-alive timeout does."""
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()

    def shed(self) -> None:
        """Over ``max_connections``: close the connection idle the longest, or this new one if none is idle."""
        idle = [c for c in self.connections if isinstance(c, Connection) and c is not self and c.idle]
        victim = min(idle, key=lambda c: c.idle_since) if idle else self
        logger.warning(
            "%d connections open (the limit is %d): closing one idle", len(self.connections), self.max_connections
        )
        victim.close()

    def send_400_response(self, msg: str) -> None:
        """A request head h11 refuses (over ``max_header_bytes``, or not HTTP/1.1) gets the API's JSON error shape."""
        detail = (
            f"the request could not be read: its line and headers must be valid HTTP/1.1 and at most "
            f"{self.settings.max_header_bytes:,} bytes"
        )
        body = json.dumps({"detail": detail, "error": "MalformedRequest"}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        try:
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # a response had already started on this connection
            pass
        self.transport.close()


def raise_file_limit() -> int:
    """Raise this process's file-descriptor soft limit to its hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` that bound connections (and the :class:`Connection` they use)."""
    descriptors = raise_file_limit()
    Connection.settings = settings
    Connection.max_connections = max(1, min(settings.max_connections, descriptors - SPARE_DESCRIPTORS))
    return {
        "http": Connection,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.idle_timeout,
        "timeout_graceful_shutdown": int(settings.shutdown_timeout),
    }


def run(settings: Settings, host: str, port: int) -> None:
    """Serve the API (``yolo_service.api:create_app``) with uvicorn on ``host:port``, bounded as above."""
    import uvicorn

    uvicorn.run(
        "yolo_service.api:create_app",
        factory=True,
        host=host,
        port=port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's own lines go through logs.configure's handler, in the same format
        access_log=False,  # the app logs one entry per request, with latency: the same thing twice otherwise
        **uvicorn_options(settings),
    )
