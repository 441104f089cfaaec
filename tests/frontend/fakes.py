"""Fake backends for the UI's tests: real HTTP servers on free loopback ports, each untrustworthy in one way.

- :class:`KitBackend` answers like a yolo-service backend (health, version, models, a prediction,
  or an error) with strings of the test's choosing, and logs every request with its ``X-API-Key``.
- :class:`EndlessBackend` answers 200 and never ends its body: at full speed (the client's size cap
  must stop it) or a byte at a time (the whole-answer deadline must).

They stand where the backend should be, so the UI's whole path runs: the client, its deadline and
cap, the status and body it gets back, and what the page shows of it.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any


def markdown_payload(attacker: str) -> str:
    """Markdown and HTML that become a link, an image or styled text wherever they are rendered."""
    return (
        f"[re-enter your key]({attacker}/login) ![]({attacker}/pixel.png) "
        f"<img src='{attacker}/img.png'> <a href='{attacker}/a'>here</a> **bold** :red[red] $x^2$ {attacker}/bare"
    )


@dataclass
class Seen:
    """One request a fake backend received."""

    method: str
    path: str
    api_key: str | None


class _Server:
    """A ThreadingHTTPServer on a free loopback port, in a daemon thread; a context manager."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Any:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class KitStrings:
    """The strings a :class:`KitBackend` answers with (every one of them reaches the page)."""

    version: str = "0.0.0-fake"
    models: list[str] = field(default_factory=lambda: ["fake"])
    classes: list[str] = field(default_factory=lambda: ["thing"])
    engine: str = "fake-engine"
    #: when set, predictions get this error: (status, detail, error name)
    predict_error: tuple[int, str, str] | None = None


class KitBackend(_Server):
    """A fake yolo-service backend that logs who called it with which key."""

    def __init__(self, strings: KitStrings | None = None) -> None:
        self.strings = strings or KitStrings()
        self.seen: list[Seen] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.seen.append(Seen(self.command, self.path, self.headers.get("X-API-Key")))
                status, body = fake.route(self.command, self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer

            def log_message(self, *args: object) -> None:  # quiet
                pass

        super().__init__(Handler)

    def route(self, method: str, path: str) -> tuple[int, Any]:
        """(status, JSON body) for one request, in the API's shapes."""
        s = self.strings
        if path == "/health":
            return 200, {"status": "ok"}
        if path == "/ready":
            return 200, {"status": "ready", "default_model": s.models[0], "engine": s.engine, "precision": "f32"}
        if path == "/version":
            return 200, s.version
        if path == "/models":
            return 200, s.models
        if path.startswith("/models/"):
            info = {"name": s.models[0], "source": "local", "description": s.version, "loaded": True}
            return 200, {**info, "classes": s.classes, "available_offline": True}
        if method == "POST" and path.startswith("/predict"):
            if s.predict_error:
                status, detail, error = s.predict_error
                return status, {"detail": detail, "error": error}
            detections = [
                {"x_min": 10 + 60 * i, "y_min": 10, "x_max": 50 + 60 * i, "y_max": 50}
                | {"class_name": name, "class_id": i, "confidence": 0.9}
                for i, name in enumerate(s.classes)
            ]
            return 200, {
                "model": s.models[0],
                "detections": detections,
                "time": 0.01,
                "image": {"width": 640, "height": 480},
            }
        return 404, {"detail": "no such route", "error": "NotFound"}

    def keys(self) -> set[str | None]:
        """Every ``X-API-Key`` this backend received (``None``: a request without one)."""
        return {seen.api_key for seen in self.seen}

    def paths(self) -> list[str]:
        """The paths requested, in order."""
        return [seen.path for seen in self.seen]


class EndlessBackend(_Server):
    """Answers every request 200 with a JSON body that never ends, and counts what it managed to send."""

    def __init__(self, trickle: float = 0.0) -> None:
        """``trickle``: seconds between single bytes (0: 64 KiB chunks as fast as the client reads)."""
        self.sent = 0
        self.closed_by_client = threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()  # no Content-Length, no chunking: the body ends when the connection does
                chunk = b"[" if trickle else b'"' + b"x" * 65535
                try:
                    while True:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        fake.sent += len(chunk)
                        if trickle:
                            time.sleep(trickle)
                except OSError:  # the client closed the connection: what the test waits for
                    fake.closed_by_client.set()

            do_GET = do_POST = answer

            def log_message(self, *args: object) -> None:  # quiet
                pass

        super().__init__(Handler)


class RedirectBackend(_Server):
    """Answers every request ``307 Temporary Redirect`` to the same path on ``target``."""

    def __init__(self, target: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(307)
                self.send_header("Location", target + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = answer

            def log_message(self, *args: object) -> None:  # quiet
                pass

        super().__init__(Handler)
