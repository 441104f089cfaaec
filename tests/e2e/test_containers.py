"""Dockerfiles checked with real tools; the containers' exact commands run as processes.

Fast checks without a container engine: hadolint lints the Dockerfiles and each Dockerfile's CMD runs
as a local process on $PORT. The images themselves are built and run in tests/e2e/test_images.py; the
layer order, the pinned requirement sets, the compose file's schema and the namespace run of the
backend image are in tests/deploy/.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, Server, assert_finds, executable, free_port
from yolo_service import encode_base64, sample_scene
from yolo_service.workshop.deploy import dockerfile_cmd

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
DOCKERFILES = {"backend": ROOT / "backend" / "Dockerfile", "frontend": ROOT / "frontend" / "Dockerfile"}


@pytest.mark.parametrize("service", DOCKERFILES)
def test_hadolint_is_clean_with_no_ignores(service):
    text = DOCKERFILES[service].read_text()
    assert "hadolint ignore" not in text
    result = subprocess.run([executable("hadolint"), str(DOCKERFILES[service])], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service", DOCKERFILES)
def test_dockerfile_essentials(service):
    text = DOCKERFILES[service].read_text()
    assert re.search(r"^FROM python:3\.11-slim-bookworm( AS base)?$", text, re.M)  # pinned base
    assert re.search(r"^USER 10001$", text, re.M)  # non-root
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    assert re.search(r"pip install --no-deps -r /tmp/requirements/\w+\.txt", text)  # the pinned closure
    assert dockerfile_cmd(DOCKERFILES[service])[0] == "yolo-service"


def test_backend_cmd_serves_ready_and_predict_on_PORT():
    port = free_port()
    argv = dockerfile_cmd(DOCKERFILES["backend"])
    with Server(argv, port, env={"PORT": str(port)}, ready_path="/ready") as server:
        image, shapes = sample_scene()
        response = httpx.post(
            server.url + "/predict", json={"model": "shapes", "image": encode_base64(image)}, timeout=60
        )
        assert response.status_code == 200
        from yolo_service import PredictResponse

        assert_finds(shapes, PredictResponse.model_validate(response.json()).detections)
        health = subprocess.run(
            [executable("yolo-service"), "healthcheck", "--path", "/ready"],
            env={**server.env},
            capture_output=True,
            text=True,
        )
        assert health.returncode == 0 and health.stdout.strip().endswith(": 200")


def test_frontend_cmd_serves_streamlit_on_PORT():
    port = free_port()
    argv = dockerfile_cmd(DOCKERFILES["frontend"])
    with Server(
        argv, port, env={"PORT": str(port), "BACKEND_URL": "http://backend:8000"}, ready_path="/_stcore/health"
    ) as server:
        assert httpx.get(server.url + "/_stcore/health").text == "ok"
        # `yolo-service ui` exec'd Streamlit in its own process, with the backend's upload limit (20 MiB).
        cmdline = (Path("/proc") / str(server.proc.pid) / "cmdline").read_bytes().split(b"\0")
        assert cmdline[1:4] == [b"-m", b"streamlit", b"run"]
        assert cmdline[cmdline.index(b"--server.maxUploadSize") + 1] == b"20"
        assert cmdline[cmdline.index(b"--server.port") + 1] == str(port).encode()
        # Headless on 0.0.0.0, it printed a URL without asking a third party for this machine's external IP.
        assert f"URL: http://localhost:{port}" in server.log() and "External URL" not in server.log()


def test_healthcheck_fails_when_nothing_listens():
    result = subprocess.run(
        [executable("yolo-service"), "healthcheck", "--url", f"http://127.0.0.1:{free_port()}/"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "unhealthy" in result.stderr
