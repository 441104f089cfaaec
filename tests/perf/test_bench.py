"""bench.py's building blocks with tiny counts against a real server: the keys notebook 07 reads, and the plot."""

from __future__ import annotations

import pytest

from tests.helpers import api_server, free_port
from yolo_service import sample_scene
from yolo_service.workshop.bench import (
    jpeg_bytes,
    measure_concurrency,
    measure_requests,
    peak_rss_mib,
    plot_concurrency,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    env = {"YOLO_SERVICE_ENGINE": "onnxruntime", "YOLO_SERVICE_DEFAULT_MODEL": "shapes"}
    with api_server(env) as running:
        yield running


def test_measure_concurrency_and_plot(server, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    results = measure_concurrency(server.url, sample_scene()[0], levels=(1, 2), requests_per_level=3)
    assert [r["concurrency"] for r in results] == [1, 2]
    for r in results:
        assert {"concurrency", "requests", "p50_ms", "p99_ms", "throughput_rps"} <= r.keys()
        assert r["requests"] == 3 and r["ok"] == 3
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["throughput_rps"] > 0
    ax = plot_concurrency(results)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2"]
    ax.figure.savefig(tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_measure_requests_on_both_routes(server):
    data = jpeg_bytes(sample_scene()[0])
    for route in ("/predict", "/predict/file"):
        stats = measure_requests(server.url, data, n=2, route=route, model="shapes")
        assert stats["ok"] == 2 and stats["p50_ms"] > 0
    assert 20 < peak_rss_mib(server.proc.pid) < 4096


def test_interleaved_measures_each_call_in_turns():
    """Each call runs three warm-ups, then the calls take turns: a slow spell hits every side alike."""
    from yolo_service.workshop.bench import _interleaved

    order = []
    stats = _interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, n=4)
    assert order == ["a"] * 3 + ["b"] * 3 + ["a", "b"] * 4
    assert set(stats) == {"a", "b"} and {"p50_ms", "p95_ms", "cpu_ms_per_call"} <= set(stats["a"])


def test_connection_reports_a_refused_connection_as_status_0():
    from yolo_service.workshop.bench import _Connection

    connection = _Connection(f"http://127.0.0.1:{free_port()}", "/predict/file", b"jpeg", "shapes", timeout=2)
    status, seconds, retry = connection.post()  # nothing listens there: tried twice, then given up
    assert (status, retry) == (0, False) and seconds < 2
