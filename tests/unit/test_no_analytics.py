"""The kit sends no analytics for the libraries it runs: OpenVINO's telemetry, Streamlit's usage statistics.

No test here touches the network: OpenVINO is imported through the kit only (a plain ``import openvino``
with no recorded choice would report the import), in a subprocess with an empty home directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from yolo_service.cli import _streamlit_argv

IMPORT_THROUGH_THE_KIT = """
import os, sys
from yolo_service.engines.exported import import_openvino
import_openvino()
assert "openvino" in sys.modules
print(os.environ.get("CI"))
"""

WOULD_ASSUME_CONSENT = """
from openvino_telemetry.utils.opt_in_checker import OptInChecker
print(OptInChecker().check(enable_opt_in_dialog=False, disable_in_ci=True).name)
"""


def python(code: str, home: Path) -> str:
    """Run ``code`` with ``home`` as the home directory and no CI variable; return its stdout."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["HOME"] = str(home)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_openvino_would_assume_consent_in_an_empty_home(tmp_path):
    # What makes the guard below necessary: with no recorded choice, OpenVINO's telemetry assumes consent.
    assert python(WOULD_ASSUME_CONSENT, tmp_path) == "NO_FILE"


def test_importing_openvino_through_the_kit_writes_and_sends_nothing(tmp_path):
    assert python(IMPORT_THROUGH_THE_KIT, tmp_path) == "None"  # and the environment is as it was
    assert not (tmp_path / "intel").exists()  # no client id, no usage counters: telemetry never started


def test_a_recorded_choice_is_left_to_decide(tmp_path):
    (tmp_path / "intel").mkdir()
    (tmp_path / "intel" / "openvino_telemetry").write_text("0\n")  # what `opt_in_out --opt_out` writes
    assert python(IMPORT_THROUGH_THE_KIT, tmp_path) == "None"
    assert sorted(p.name for p in (tmp_path / "intel").iterdir()) == ["openvino_telemetry"]


def test_streamlit_sends_no_usage_statistics_and_looks_up_no_external_ip():
    argv = _streamlit_argv(Path("frontend/app.py"), 8501)
    options = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert options["--browser.gatherUsageStats"] == "false"
    # Set (to Streamlit's own default): a headless start on 0.0.0.0 then prints this URL instead of asking
    # checkip.amazonaws.com for the machine's external IP.
    assert options["--browser.serverAddress"] == "localhost" and options["--server.address"] == "0.0.0.0"
