"""``GET /metrics`` of a real server counts what it served: routes, statuses, model time, refusals."""

from __future__ import annotations

import base64

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import api_server
from yolo_service import encode_image, sample_scene

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    env = {
        "YOLO_SERVICE_ENGINE": "openvino",  # the torch-free engine: starts in about a second
        "YOLO_SERVICE_DEFAULT_MODEL": "shapes",
        "YOLO_SERVICE_MAX_IMAGE_BYTES": "300000",
    }
    with api_server(env) as running:
        yield running


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of the exposition as {(name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_requests_statuses_model_time_and_refusals(server):
    png = encode_image(sample_scene()[0])
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(3):
            assert http.post("/predict", json={"image": base64.b64encode(png).decode(), "model": "shapes"}).is_success
        assert http.post("/predict/file", files={"image": ("s.png", png, "image/png")}).status_code == 200
        assert http.post("/predict", json={"image": base64.b64encode(b"not an image").decode()}).status_code == 400
        assert http.post("/predict", json={"image": "A" * 500_000}).status_code == 413  # over the body limit
        assert http.get("/models/no-such-model").status_code == 404
        assert http.get("/health").status_code == 200
        response = http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    values = samples(response.text)

    def requests(route, method, status):
        return values.get(
            ("yolo_service_requests_total", (("method", method), ("route", route), ("status", status))), 0
        )

    assert requests("/predict", "POST", "200") == 3
    assert requests("/predict/file", "POST", "200") == 1
    assert requests("/predict", "POST", "400") == 1
    assert requests("/predict", "POST", "413") == 1
    assert requests("/models/{name}", "GET", "404") == 1  # the route's template, not the path sent
    assert requests("/health", "GET", "200") >= 1
    assert values[("yolo_service_request_duration_seconds_count", (("route", "/predict"),))] == 5
    assert values[("yolo_service_model_seconds_count", (("model", "shapes"),))] == 4
    assert 0 < values[("yolo_service_model_seconds_sum", (("model", "shapes"),))] < 4 * 5
    assert values[("yolo_service_images_refused_total", (("reason", "invalid_image"),))] == 1
    assert values[("yolo_service_images_refused_total", (("reason", "too_large"),))] == 1
    assert values[("yolo_service_queue_depth", ())] == 0
    # The four predictions came one at a time: each ran alone, on every thread (warm-ups are not counted).
    assert values[("yolo_service_inferences_total", (("mode", "latency"), ("model", "shapes")))] == 4
    assert values[("yolo_service_inferences_total", (("mode", "throughput"), ("model", "shapes")))] == 0
