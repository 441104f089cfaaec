"""The ipywidgets demo: in-process and against a real backend, driven through its button."""

from datetime import UTC, datetime

import pytest

from tests.helpers import assert_finds
from yolo_service import encode_image, load_image, sample_scenes
from yolo_service.workshop.widgets import UPLOAD, PredictDemo

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_in_process_sample_prediction_fills_image_and_table():
    demo = PredictDemo()
    demo.button.click()
    assert sorted(d.class_name for d in demo.result.detections) == ["circle", "square"]
    assert demo.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert demo.table.value.count("<tr>") == 3 and "<td>square</td>" in demo.table.value
    assert demo.status.value.startswith("2 detections by shapes on openvino in ")  # auto: the fastest engine here


def uploaded(name: str, data: bytes, kind: str = "image/png") -> tuple[dict, ...]:
    """What ipywidgets 8's FileUpload holds after the browser sent one file."""
    return (
        {
            "name": name,
            "type": kind,
            "size": len(data),
            "content": memoryview(data),
            "last_modified": datetime.now(UTC),
        },
    )


def test_an_upload_selects_itself_and_predict_runs_on_it():
    demo = PredictDemo()
    assert demo.sample.value == "square and circle"
    image, shapes = sample_scenes()["three shapes"]

    demo.upload.value = uploaded("mine.png", encode_image(image))

    assert demo.sample.value == UPLOAD
    assert demo.status.value == "mine.png uploaded: press Predict."
    demo.button.click()
    assert_finds(shapes, demo.result.detections)  # the upload's triangle, circle and square, not the sample's two


def test_backend_mode_uses_the_backend_models_and_shows_errors(backend):
    demo = PredictDemo(backend.url)
    assert "shapes" in demo.model.options and demo.model.value == "shapes"
    demo.sample.value = "three shapes"
    demo.button.click()
    assert sorted(d.class_name for d in demo.result.detections) == ["circle", "square", "triangle"]
    demo.sample.value = UPLOAD
    demo.button.click()
    assert demo.status.value == "Upload an image first, or pick a sample."
    demo.upload.value = uploaded("notes.txt", b"hello", "text/plain")
    assert demo.sample.value == UPLOAD
    demo.button.click()
    assert "InvalidImage: the data is not an image" in demo.status.value


def test_an_upload_clears_the_previous_boxes_and_table_and_shows_itself():
    demo = PredictDemo()
    demo.button.click()  # the sample's boxes and table on screen
    assert demo.result is not None and "<td>square</td>" in demo.table.value
    image, _ = sample_scenes()["three shapes"]

    demo.upload.value = uploaded("mine.png", encode_image(image))

    assert demo.result is None and demo.table.value == ""
    assert load_image(bytes(demo.image.value)).size == image.size  # the upload itself, not the sample's drawing
    assert demo.image.value == encode_image(image)

    demo.upload.value = uploaded("notes.png", b"not an image")
    assert demo.image.value == b"" and "notes.png" in demo.status.value and "color:#b00" in demo.status.value
