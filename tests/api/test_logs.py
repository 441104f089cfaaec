"""Logging never blocks the caller, even when nobody reads the log (a full pipe once wedged the server);
its entries are what Cloud Logging reads.

The request id comes from the caller's trace context (W3C ``traceparent``, Cloud Run's ``X-Cloud-Trace-Context``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import pytest

from yolo_service import logs


def test_a_log_nobody_reads_never_blocks_the_caller_and_a_drained_one_is_restored():
    read_end, write_end = os.pipe()  # a pipe nobody reads: a blocking write stops after ~64 KiB
    stuck = logging.getLogger("yolo_service.test_logs_stuck")
    stuck.propagate = False
    direct = logging.StreamHandler(os.fdopen(write_end, "w"))
    direct.handleError = lambda record: None  # type: ignore[method-assign]  # the broken pipe after the test
    stuck.addHandler(direct)
    try:
        logs.install(names=(stuck.name,), capacity=100)
        started = time.monotonic()
        for i in range(2000):  # ~2 MB: thirty times the pipe's buffer
            stuck.error("line %d %s", i, "x" * 1000)
        assert time.monotonic() - started < 5  # a blocking handler would never return
        assert logs.dropped() > 0
        logs.uninstall(timeout=0.2)  # the writer is stuck: the queue stays, shutdown is not blocked
        assert direct not in stuck.handlers
    finally:
        os.close(read_end)


def test_uninstall_gives_a_healthy_logger_its_handler_back(tmp_path):
    healthy = logging.getLogger("yolo_service.test_logs_healthy")
    healthy.propagate = False
    path = tmp_path / "log.txt"
    direct = logging.FileHandler(path)
    healthy.addHandler(direct)
    logs.install(names=(healthy.name,))
    assert direct not in healthy.handlers
    healthy.warning("through the queue")
    logs.uninstall()
    assert healthy.handlers == [direct]
    healthy.warning("direct again")
    direct.close()
    assert path.read_text().splitlines() == ["through the queue", "direct again"]


def _record(message: str, level: int = logging.INFO, **extra) -> logging.LogRecord:
    record = logging.LogRecord("yolo_service.test", level, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


def test_a_json_entry_is_one_line_with_severity_message_and_the_traceback_inside():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "yolo_service.test", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
        )
    line = logs.CloudLoggingFormatter(project="p").format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["severity"] == "ERROR" and entry["logger"] == "yolo_service.test"
    assert entry["message"].startswith("failed here\nTraceback (most recent call last):")
    assert entry["message"].endswith("ValueError: boom") and entry["time"].endswith("Z")
    assert "request_id" not in entry and "logging.googleapis.com/trace" not in entry  # outside a request


@pytest.mark.parametrize(
    ("level", "name"), [(5, "DEFAULT"), (10, "DEBUG"), (20, "INFO"), (25, "INFO"), (30, "WARNING"), (50, "CRITICAL")]
)
def test_python_levels_become_cloud_logging_severities(level, name):
    assert logs.severity(level) == name


def test_a_record_with_its_own_request_id_names_its_trace_only_when_it_is_a_trace_id():
    formatter = logs.CloudLoggingFormatter(project="p")
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    entry = json.loads(formatter.format(_record("call", request_id=trace, fields={"status": 200})))
    assert entry["logging.googleapis.com/trace"] == f"projects/p/traces/{trace}" and entry["status"] == 200
    other = json.loads(formatter.format(_record("call", request_id="not-a-trace")))
    assert other["request_id"] == "not-a-trace" and "logging.googleapis.com/trace" not in other
    text = logs.TextFormatter().format(_record("call", request_id=trace))
    assert text.endswith(f" INFO yolo_service.test [{trace}]: call")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({b"traceparent": b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
         ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True)),
        ({b"x-cloud-trace-context": b"105445AA7843BC8BF206B12000100000/1;o=0"},
         ("105445aa7843bc8bf206b12000100000", "0000000000000001", False)),
        ({b"x-cloud-trace-context": b"105445aa7843bc8bf206b12000100000"},
         ("105445aa7843bc8bf206b12000100000", None, None)),
        # traceparent first; a malformed one (version ff, zero ids, upper case, extra fields in 00) is ignored
        ({b"traceparent": b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
          b"x-cloud-trace-context": b"105445aa7843bc8bf206b12000100000/1;o=1"},
         ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", False)),
        ({b"traceparent": b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
          b"x-cloud-trace-context": b"105445aa7843bc8bf206b12000100000/1;o=1"},
         ("105445aa7843bc8bf206b12000100000", "0000000000000001", True)),
    ],
)  # fmt: skip
def test_the_request_id_is_the_callers_trace_id(headers, expected):
    context = logs.context_from_headers(headers.items())
    assert (context.request_id, context.span_id, context.sampled) == expected


@pytest.mark.parametrize(
    "value",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "x" * 10_000,
    ],
)
def test_a_malformed_traceparent_gets_a_new_id(value):
    context = logs.context_from_headers([(b"traceparent", value.encode())])
    assert len(context.request_id) == 32 and context.request_id not in value.lower() and context.span_id is None


def test_text_and_json_follow_the_settings(monkeypatch):
    from yolo_service.config import Settings

    monkeypatch.delenv("K_SERVICE", raising=False)
    assert not Settings().json_logs and Settings(log_format="json").json_logs
    monkeypatch.setenv("K_SERVICE", "yolo-backend")
    assert Settings().json_logs and not Settings(log_format="text").json_logs
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-cloud")
    assert Settings().gcp_project == "from-cloud" and Settings(gcp_project="mine").gcp_project == "mine"
    monkeypatch.setenv("YOLO_SERVICE_GCP_PROJECT", "the-setting")
    assert Settings().gcp_project == "the-setting"
