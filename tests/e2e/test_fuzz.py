"""Schemathesis against the real server's OpenAPI schema: every check, a fixed seed, no 500, no schema violation.

It runs the ``st`` command line (Schemathesis 4) on ``/openapi.json`` of a ``yolo-service serve``
process. Its cache and report go to a temporary directory (never into the repository).
``positive_data_acceptance`` is told which answers a schema-valid request may rightly get:
schema-valid is not image-valid (random base64 is not a picture: 400), a generated model
name is unknown (404), a COCO model cannot be downloaded offline (503).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers import api_server, executable

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SEED = 20261126
MAX_EXAMPLES = 150  # per operation, fuzzing phase; the examples and coverage phases add their own cases
CONFIG = """
[cache]
enabled = false

# 503 is a documented answer here (a COCO model cannot be downloaded offline), not a crash;
# the test checks the server's own log for 500s separately.
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503"]

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "404", "413", "415", "422", "503"]
"""


@pytest.fixture(scope="module")
def fuzz_target():
    env = {"YOLO_SERVICE_REPLICAS": "1", "YOLO_SERVICE_MAX_IMAGE_BYTES": "2000000"}
    with api_server(env) as server:
        yield server


def test_schemathesis_finds_no_server_error_and_no_schema_violation(fuzz_target, tmp_path):
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            executable("st"),
            "--config-file",
            str(tmp_path / "schemathesis.toml"),
            "run",
            f"{fuzz_target.url}/openapi.json",
            "--checks",
            "all",
            "--seed",
            str(SEED),
            "--max-examples",
            str(MAX_EXAMPLES),
            "--generation-database",
            "none",
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            "2",
            "--request-timeout",
            "60",
            "--max-response-time",  # `all` includes a response-time check; speed is not what this test measures
            "60",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # anything it writes stays out of the repository
    )
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary + result.stderr[-2000:]
    run = json.loads(report.read_text())
    cases = run["test_cases"]["generated"]
    print(f"schemathesis: {cases} cases in {run['running_time']:.0f} s, failures: {run['failures']}")
    assert cases >= 500, (cases, summary)
    assert "Exception in ASGI application" not in fuzz_target.log()
    assert " 500 " not in "\n".join(line for line in fuzz_target.log().splitlines() if "yolo_service.api" in line)
