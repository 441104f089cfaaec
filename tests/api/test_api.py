"""The API in-process (FastAPI's TestClient): every route, every error status, the docs."""

from __future__ import annotations

import base64
import time

import pytest
from fastapi.testclient import TestClient

import yolo_service
from tests.helpers import assert_finds
from tests.unit.test_images import png_declaring
from yolo_service import Settings, color_for, encode_base64, encode_image, load_image, sample_scene
from yolo_service.api import TITLE, create_app

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def client(weights_dir):
    settings = Settings(weights_dir=weights_dir, offline=True, max_image_bytes=2_000_000, max_image_pixels=20_000_000)
    with TestClient(create_app(settings)) as test_client:
        deadline = time.monotonic() + 120  # the lifespan loads the model in a background thread
        while test_client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        yield test_client


@pytest.fixture(scope="module")
def scene():
    image, shapes = sample_scene()
    return encode_image(image), shapes


def test_text_routes(client):
    assert client.get("/").json() == TITLE
    assert client.get("/version").json() == yolo_service.__version__
    assert "POST /predict" in client.get("/describe").json()
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready", "default_model": "shapes"}


def test_models_and_model_details(client):
    assert client.get("/models").json() == ["yolo26n", "yolo26s", "yolo11n", "yolo11s", "yolo11m", "shapes"]
    shapes = client.get("/models/shapes").json()
    assert shapes == {
        "name": "shapes",
        "source": "bundled",
        "description": "bundled demo: circles, squares and triangles (works offline)",
        "classes": ["circle", "square", "triangle"],
        "loaded": True,
        "available_offline": True,
        "default": True,
    }
    coco = client.get("/models/yolo26n").json()
    assert (coco["loaded"], coco["available_offline"], len(coco["classes"])) == (False, False, 80)
    missing = client.get("/models/nope")
    assert missing.status_code == 404 and "unknown model 'nope'" in missing.json()["detail"]


def test_predict_json(client, scene):
    data, shapes = scene
    response = client.post("/predict", json={"image": encode_base64(data), "model": "shapes"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"model", "detections", "time", "image", "annotated_image"}
    assert body["model"] == "shapes" and body["image"] == {"width": 640, "height": 480}
    assert body["annotated_image"] is None
    from yolo_service import PredictResponse

    assert_finds(shapes, PredictResponse.model_validate(body).detections)


def test_predict_with_default_model_options_and_annotation(client, scene):
    data, _ = scene
    body = client.post(
        "/predict",
        json={
            "image": encode_base64(data),
            "classes": ["square"],
            "annotate": True,
            "confidence": 0.5,
            "iou": 0.5,
            "max_detections": 5,
        },
    ).json()
    assert [d["class_name"] for d in body["detections"]] == ["square"]
    annotated = load_image(base64.b64decode(body["annotated_image"]))
    assert annotated.size == (640, 480)
    square = body["detections"][0]
    assert abs(square["x_min"] - 100) <= 5
    # The box line is drawn on the detection's own left edge, in the class colour.
    assert annotated.getpixel((square["x_min"], 200)) == color_for("square")


def test_predict_file(client, scene):
    data, shapes = scene
    response = client.post(
        "/predict/file",
        files={"image": ("scene.png", data, "image/png")},
        data={"model": "shapes", "classes": "circle, square"},
    )
    assert response.status_code == 200, response.text
    from yolo_service import PredictResponse

    assert_finds(shapes, PredictResponse.model_validate(response.json()).detections)


@pytest.mark.parametrize(
    ("payload", "status", "error", "text"),
    [
        ({"image": "%%%", "model": "shapes"}, 400, "InvalidImage", "not valid base64"),
        ({"image": base64.b64encode(b"hello").decode(), "model": "shapes"}, 400, "InvalidImage", "not an image"),
        ({"image": "  \n", "model": "shapes"}, 400, "InvalidImage", "empty"),
        ({"image": "iVBORw0KGgo=", "model": "nope"}, 404, "UnknownModel", "unknown model 'nope'"),
        ({"image": "iVBORw0KGgo=", "model": "../../etc/passwd"}, 404, "UnknownModel", "not a path"),
        ({"image": base64.b64encode(png_declaring(30000, 30000)).decode()}, 413, "ImageTooLarge", "pixels"),
        ({"image": "iVBORw0KGgo=", "model": "yolo26n"}, 503, "ModelUnavailable", "yolo-service download yolo26n"),
    ],
)
def test_error_statuses(client, scene, payload, status, error, text):
    if payload["image"] == "iVBORw0KGgo=":
        payload = {**payload, "image": encode_base64(scene[0])}
    response = client.post("/predict", json=payload)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error and text in response.json()["detail"]
    if status == 503:
        assert response.headers["retry-after"] == "2"


def test_unsupported_format_is_415(client):
    image, _ = sample_scene()
    tga = encode_image(image, "TGA")
    response = client.post("/predict", json={"image": encode_base64(tga), "model": "shapes"})
    assert response.status_code == 415 and "TGA is not allowed" in response.json()["detail"]


def test_schema_errors_are_422(client):
    assert client.post("/predict", json={"model": "shapes"}).status_code == 422
    assert client.post("/predict", json={"image": "x", "confidence": 2}).status_code == 422
    assert client.post("/predict", json={"image": ""}).status_code == 422
    assert client.post("/predict", json={"image": "x", "annotate": 0}).status_code == 422
    assert client.post("/predict", json={"image": "x", "iou": False}).status_code == 422
    broken = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 422
    image = encode_base64(sample_scene()[0])
    unknown_class = client.post("/predict", json={"image": image, "model": "shapes", "classes": ["dog"]})
    assert unknown_class.status_code == 422 and "has no class 'dog'" in unknown_class.json()["detail"]


def test_body_over_the_limit_is_413_before_decoding(client):
    limit = Settings(max_image_bytes=2_000_000).max_body_bytes
    response = client.post("/predict", content=b"x" * (limit + 1), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "larger than the limit" in response.json()["detail"]
    big_file = client.post("/predict/file", files={"image": ("big.png", b"\0" * (limit + 10))})
    assert big_file.status_code == 413


def test_image_bytes_over_the_limit_is_413(client):
    response = client.post("/predict/file", files={"image": ("big.bin", b"\0" * 2_000_001)})
    assert response.status_code == 413 and "the limit is 2,000,000 bytes" in response.json()["detail"]


def test_docs_have_an_example_for_each_route(client):
    spec = client.get("/openapi.json").json()
    example = spec["components"]["schemas"]["PredictRequest"]["examples"][0]
    assert example["model"] == "shapes"
    result = client.post("/predict", json=example)
    assert result.status_code == 200 and {d["class_name"] for d in result.json()["detections"]} == {"square", "circle"}
    assert {"/", "/health", "/ready", "/models", "/models/{name}", "/predict", "/predict/file"} <= set(spec["paths"])
    model_param = spec["paths"]["/models/{name}"]["get"]["parameters"][0]
    assert model_param["schema"]["examples"] == ["shapes"]
    assert client.get("/models/shapes").status_code == 200
    assert client.get("/docs").status_code == 200
