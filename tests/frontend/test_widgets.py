"""The ipywidgets demo: in-process and against a real backend, driven through its button."""

from datetime import UTC, datetime

import pytest

from yolo_service.workshop.widgets import UPLOAD, PredictDemo

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_in_process_sample_prediction_fills_image_and_table():
    demo = PredictDemo()
    demo.button.click()
    assert sorted(d.class_name for d in demo.result.detections) == ["circle", "square"]
    assert demo.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert demo.table.value.count("<tr>") == 3 and "<td>square</td>" in demo.table.value
    assert demo.status.value.startswith("2 detections by shapes on openvino in ")  # auto: the fastest engine here


def test_backend_mode_uses_the_backend_models_and_shows_errors(backend):
    demo = PredictDemo(backend.url)
    assert "shapes" in demo.model.options and demo.model.value == "shapes"
    demo.sample.value = "three shapes"
    demo.button.click()
    assert sorted(d.class_name for d in demo.result.detections) == ["circle", "square", "triangle"]
    demo.sample.value = UPLOAD
    demo.button.click()
    assert demo.status.value == "Upload an image first, or pick a sample."
    demo.upload.value = (
        {
            "name": "notes.txt",
            "type": "text/plain",
            "size": 5,
            "content": memoryview(b"hello"),
            "last_modified": datetime.now(UTC),
        },
    )
    demo.button.click()
    assert "InvalidImage: the data is not an image" in demo.status.value
