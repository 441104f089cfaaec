"""A test-only server whose predict routes raise an unexpected exception, or wait, on demand.

``python -m tests.e2e.faulty_app`` runs exactly ``yolo-service serve`` (same launcher, same
logging), with differences injected through FastAPI's ``dependency_overrides``: a request
carrying the header ``X-Inject-Failure`` raises ``RuntimeError`` inside the route; one carrying
``X-Inject-Print`` prints its value to stdout and stderr first, as a chatty library would; one
carrying ``X-Inject-Hold`` waits inside the route (admitted, its body read, holding its place in
the queue) until its client disconnects or that many seconds pass. Production code has no such
route or switch.
"""

from __future__ import annotations

import asyncio
import sys
import time

from fastapi import FastAPI, Request

from yolo_service import api, cli

FAILURE_HEADER = "X-Inject-Failure"
HOLD_HEADER = "X-Inject-Hold"
PRINT_HEADER = "X-Inject-Print"
_create_app = api.create_app


def create_faulty_app(settings=None) -> FastAPI:  # noqa: ANN001 (Settings | None, as create_app)
    """The real app, with the service dependency overridden to raise when asked."""
    app = _create_app(settings)

    async def failing_service(request: Request) -> api.Service:
        if text := request.headers.get(PRINT_HEADER):
            print(text)
            print(text, file=sys.stderr)
        if request.headers.get(FAILURE_HEADER):
            raise RuntimeError("injected failure: a defect nobody expected (test only)")
        if hold := request.headers.get(HOLD_HEADER):
            deadline = time.monotonic() + float(hold)
            while time.monotonic() < deadline and not await request.is_disconnected():
                await asyncio.sleep(0.05)
        return await api.get_service(request)

    app.dependency_overrides[api.get_service] = failing_service
    return app


if __name__ == "__main__":
    api.create_app = create_faulty_app  # what `yolo-service serve` imports by name
    sys.exit(cli.main(["serve", *sys.argv[1:]]))
