"""One meaning for a ``str`` image: a file path, in the library, the client and the command line."""

from __future__ import annotations

import json
import subprocess

import pytest

import yolo_service
from tests.helpers import assert_finds, executable
from yolo_service import Client, encode_image, sample_scene

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


def test_library_client_and_cli_give_the_same_detections_for_one_path(backend, tmp_path):
    image, shapes = sample_scene()
    path = tmp_path / "scene.png"
    path.write_bytes(encode_image(image))

    in_process = yolo_service.predict(str(path), "shapes")
    with Client(backend.url) as client:
        over_http = client.predict(str(path), "shapes")
    cli = subprocess.run(
        [executable("yolo-service"), "predict", str(path), "--model", "shapes", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    from_cli = yolo_service.PredictResponse.model_validate(json.loads(cli.stdout))

    assert_finds(shapes, in_process.detections)
    assert over_http.detections == in_process.detections
    assert from_cli.detections == in_process.detections


def test_a_missing_path_is_the_same_error_everywhere(tmp_path):
    missing = str(tmp_path / "missing.jpg")
    with pytest.raises(FileNotFoundError):
        yolo_service.predict(missing, "shapes")
    with Client("http://127.0.0.1:9") as client, pytest.raises(FileNotFoundError):  # fails before any request
        client.predict(missing)
    cli = subprocess.run([executable("yolo-service"), "predict", missing], capture_output=True, text=True, timeout=60)
    assert (cli.returncode, cli.stderr.strip()) == (2, f"error: No such file or directory: {missing}")
