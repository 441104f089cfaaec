"""Shared fixtures. Every test runs offline: no test may touch the network."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before anything imports yolo_service or Ultralytics: offline, and a private weights dir.
_TMP = Path(tempfile.mkdtemp(prefix="yolo-service-tests-"))
os.environ["YOLO_SERVICE_OFFLINE"] = "1"
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_AUTOINSTALL"] = "false"
os.environ["YOLO_SERVICE_WEIGHTS_DIR"] = str(_TMP / "weights")
os.environ.setdefault("YOLO_CONFIG_DIR", str(_TMP / "ultralytics"))
os.environ.pop("PORT", None)

import pytest  # noqa: E402

from tests.helpers import ARTIFACTS, REPORT, Server, api_server  # noqa: E402


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    """The weights directory every test process uses (empty but for what a test puts there)."""
    path = Path(os.environ["YOLO_SERVICE_WEIGHTS_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where tests keep screenshots and images for people to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def backend() -> Server:
    """One real uvicorn process serving the API on a free loopback port, for the whole session."""
    with api_server() as server:
        yield server


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the figures tests reported (tests.helpers.REPORT), e.g. the container engine and the images' sizes."""
    lines = [line for line in REPORT if line]
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)
