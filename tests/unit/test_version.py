"""One version, read from the package metadata: the package, the CLI and the API all report it."""

from __future__ import annotations

import subprocess
import tomllib
from importlib import metadata

import yolo_service
from tests.helpers import ROOT, executable


def test_the_version_is_the_installed_distributions_and_pyprojects():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert yolo_service.__version__ == metadata.version("yolo-service") == declared
    assert yolo_service.__version__ != "0.0.0"  # the fallback of a source tree that was never installed


def test_the_cli_reports_the_package_version():
    result = subprocess.run([executable("yolo-service"), "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"yolo-service {yolo_service.__version__}"
