"""Logging never blocks the caller, even when nobody reads the log (a full pipe once wedged the server)."""

from __future__ import annotations

import logging
import os
import time

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
