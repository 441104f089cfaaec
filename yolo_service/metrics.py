"""``GET /metrics`` (Prometheus text format): requests, latencies, model time, queue depth, refusals, inferences.

One :class:`Metrics` per app, on its own ``CollectorRegistry`` (two apps in one process, as in
tests, count separately). The app's request log (:class:`~yolo_service.api.RequestLog`) reports
every response here, including the ones that never reach a route (the body limit's 413); routes
are labelled by their template (``/models/{name}``), so label values stay few whatever paths
clients send.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import Scope

    from .engines import DetectorBase
    from .models import ModelRegistry
    from .schema import PredictResponse

__all__ = ["Metrics", "Observed", "instrument"]

#: Why a predict request got no detections, by status.
REFUSALS = {400: "invalid_image", 413: "too_large", 415: "unsupported_format", 503: "unavailable"}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's Prometheus metrics, on a registry of their own."""

    def __init__(self, predict_routes: frozenset[str], queue_depth: Callable[[], float] | None = None) -> None:
        self.predict_routes = predict_routes  # where a 4xx/5xx is an image refused
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "yolo_service_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "yolo_service_request_duration_seconds",
            "HTTP request latency, from the first byte in to the last out",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_time = Histogram(
            "yolo_service_model_seconds",
            "time in the model per prediction (the response's `time`)",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.refused = Counter(
            "yolo_service_images_refused", "predict requests refused, by reason", ["reason"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "yolo_service_queue_depth", "predict requests in flight or waiting", registry=self.registry
        )
        if queue_depth is not None:
            self.queue_depth.set_function(queue_depth)

    def observe_prediction(self, response: PredictResponse) -> None:
        """Record one prediction's model time."""
        self.model_time.labels(response.model).observe(response.time)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one HTTP response."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if route in self.predict_routes and status in REFUSALS:
            self.refused.labels(REFUSALS[status]).inc()

    def render(self) -> bytes:
        """The metrics in Prometheus' text exposition format."""
        return generate_latest(self.registry)


class InferenceModes(Collector):
    """Inferences by model and mode, read from the loaded detectors at each scrape.

    ``latency``: a request alone, on every thread; ``throughput``: one thread each while requests
    queue. Mostly ``latency`` under steady load means requests reach the model one at a time.
    """

    def __init__(self, models: Callable[[], dict[str, DetectorBase]]) -> None:
        self.models = models

    def collect(self) -> Iterator[CounterMetricFamily]:
        help_text = "inferences by model and mode (latency: alone; throughput: side by side)"
        family = CounterMetricFamily("yolo_service_inferences", help_text, labels=["model", "mode"])
        for name, detector in sorted(self.models().items()):
            for mode, count in sorted(detector.inferences.items()):
                family.add_metric([name, mode], count)
        yield family


class Observed(Protocol):
    """What :func:`instrument` reads of the service (:class:`yolo_service.api.Service` is one)."""

    registry: ModelRegistry  # its predictions' model time, and the loaded detectors' inferences
    in_flight: int  # the queue depth
    receiving: int  # predict bodies still arriving (not yet in the queue)
    on_response: list[Callable[[Scope, int, float], None]]  # called after every HTTP response


def instrument(app: FastAPI, service: Observed, predict_routes: frozenset[str]) -> Metrics:
    """Add ``GET /metrics`` to ``app`` and count what ``service`` answers and predicts.

    ``predict_routes``: the routes that take images, whose refusals are counted by reason.
    """
    from fastapi.responses import PlainTextResponse

    metrics = Metrics(predict_routes, queue_depth=lambda: service.in_flight)
    arriving = Gauge(
        "yolo_service_bodies_arriving",
        "predict requests whose body is still arriving (they are not in the queue yet)",
        registry=metrics.registry,
    )
    arriving.set_function(lambda: service.receiving)
    service.registry.on_predict.append(metrics.observe_prediction)
    metrics.registry.register(InferenceModes(service.registry.detectors))

    @functools.cache
    def paths() -> frozenset[str]:  # the app's routes, read on the first request (all are defined by then)
        return frozenset(getattr(route, "path", "") for route in app.routes)

    # response_class and response_model=None: FastAPI must not read the return annotation, a string
    # here (PEP 563) naming a class imported inside this function, which it cannot resolve.
    @app.get(
        "/metrics",
        summary="Prometheus metrics: requests, latencies, model time, queue depth, refusals",
        response_class=PlainTextResponse,
        response_model=None,
    )
    def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def observe(scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None)
        if route is None:  # refused before routing (body limit) or no such path
            route = scope["path"] if scope["path"] in paths() else "other"
        metrics.observe_request(route, scope["method"], status, seconds)

    service.on_response.append(observe)
    app.state.metrics = metrics
    return metrics
