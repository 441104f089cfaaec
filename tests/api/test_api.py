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


def close_colour(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 12) -> bool:
    """Equal up to JPEG's rounding."""
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) <= tolerance


@pytest.fixture(scope="module")
def scene():
    image, shapes = sample_scene()
    return encode_image(image), shapes


def test_text_routes(client):
    assert client.get("/").json() == TITLE
    assert client.get("/version").json() == yolo_service.__version__
    assert "POST /predict" in client.get("/describe").json()
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    # engine auto, the default: the bundled model's ONNX file on OpenVINO, float (bf16 where the CPU has it)
    assert ready.pop("precision") in {"f32", "bf16"}
    assert ready == {"status": "ready", "default_model": "shapes", "engine": "openvino"}


def test_models_and_model_details(client):
    assert client.get("/models").json() == ["yolo26n", "yolo26s", "yolo11n", "yolo11s", "yolo11m", "shapes"]
    shapes = client.get("/models/shapes").json()
    assert shapes.pop("precision") in {"f32", "bf16"}
    assert shapes == {
        "name": "shapes",
        "source": "bundled",
        "description": "bundled demo: circles, squares and triangles (works offline)",
        "classes": ["circle", "square", "triangle"],
        "loaded": True,
        "available_offline": True,
        "default": True,
        "engine": "openvino",
    }
    coco = client.get("/models/yolo26n").json()
    assert (coco["loaded"], coco["available_offline"], len(coco["classes"])) == (False, False, 80)
    # not loaded: the engine that will serve it once downloaded (its .pt exported to ONNX on first load)
    assert (coco["engine"], coco["precision"]) == ("openvino", None)
    missing = client.get("/models/nope")
    assert missing.status_code == 404 and "unknown model 'nope'" in missing.json()["detail"]


def test_predict_json(client, scene):
    data, shapes = scene
    response = client.post("/predict", json={"image": encode_base64(data), "model": "shapes"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"model", "engine", "detections", "time", "image", "annotated_image", "request_id"}
    assert body["model"] == "shapes" and body["engine"] == "openvino" and body["image"] == {"width": 640, "height": 480}
    assert body["request_id"] == response.headers["X-Request-ID"] and len(body["request_id"]) == 32
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
    jpeg = base64.b64decode(body["annotated_image"])
    assert jpeg[:3] == b"\xff\xd8\xff"  # JPEG: compact, whatever the upload's format
    annotated = load_image(jpeg)
    assert annotated.size == (640, 480)
    square = body["detections"][0]
    assert abs(square["x_min"] - 100) <= 5
    # The box line is drawn on the detection's own left edge, in the class colour (JPEG: within a few levels).
    assert close_colour(annotated.getpixel((square["x_min"], 200)), color_for("square"))


def test_the_annotated_image_is_bounded_and_its_boxes_scaled(client):
    image, shapes = sample_scene()
    big = image.resize((3200, 2400))  # 5x: the longest side goes 3200 -> 1920, a scale of 0.6
    body = client.post("/predict", json={"image": encode_base64(encode_image(big, "JPEG")), "annotate": True}).json()
    assert body["image"] == {"width": 3200, "height": 2400}  # boxes stay in the original's pixels
    annotated = load_image(base64.b64decode(body["annotated_image"]))
    assert annotated.size == (1920, 1440)
    square = next(d for d in body["detections"] if d["class_name"] == "square")
    assert abs(square["x_min"] - 500) <= 15
    x, y = round(square["x_min"] * 0.6), round((square["y_min"] + square["y_max"]) / 2 * 0.6)
    assert close_colour(annotated.getpixel((x + 1, y)), color_for("square"))


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


@pytest.mark.parametrize(
    ("payload", "field", "kind"),
    [
        ({"model": "shapes"}, ["body", "image"], "missing"),
        ({"image": "x", "confidence": 2}, ["body", "confidence"], "less_than_equal"),
        ({"image": ""}, ["body", "image"], "string_too_short"),
        ({"image": "x", "annotate": 0}, ["body", "annotate"], "bool_type"),
        ({"image": "x", "iou": False}, ["body", "iou"], "float_type"),
    ],
)
def test_schema_errors_are_422_in_the_one_error_shape(client, payload, field, kind):
    response = client.post("/predict", json=payload)
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"detail", "error", "fields", "request_id"} and body["error"] == "InvalidRequest"
    assert body["fields"][0]["loc"] == field and body["fields"][0]["type"] == kind
    assert body["detail"].startswith("the request does not match the schema") and field[-1] in body["detail"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"image": "x", "confidence": NaN}', "confidence"),
        (b'{"image": "x", "confidence": Infinity}', "confidence"),
        (b'{"image": "x", "iou": -Infinity}', "iou"),
        (b'{"image": "x", "confidence": 1e309}', "confidence"),
        (b'{"image": "x", "max_detections": 1e400}', "max_detections"),
    ],
)
def test_non_finite_numbers_are_a_422_that_renders(client, raw, field):
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "InvalidRequest" and body["fields"][0]["loc"] == ["body", field]
    assert "inf" not in response.text.lower().replace("info", "")  # the offending value is not echoed


def test_unknown_class_and_broken_json_are_the_same_422_shape(client):
    broken = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 422 and broken.json()["error"] == "InvalidRequest"
    assert broken.json()["fields"][0]["type"] == "json_invalid"
    image = encode_base64(sample_scene()[0])
    unknown_class = client.post("/predict", json={"image": image, "model": "shapes", "classes": ["dog"]})
    assert unknown_class.status_code == 422 and "has no class 'dog'" in unknown_class.json()["detail"]
    assert unknown_class.json()["error"] == "InvalidRequest"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "error", "text"),
    [
        ("GET", "/nowhere", {}, 404, "NotFound", "no such route"),
        ("DELETE", "/predict", {}, 405, "MethodNotAllowed", "POST"),
        ("GET", "/predict", {}, 405, "MethodNotAllowed", "POST"),
        (
            "POST",
            "/predict/file",
            {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}},
            400,
            "MalformedRequest",
            "boundary",
        ),
        (
            "POST",
            "/predict/file",
            {"files": [("image", ("a.png", b"1"))] + [("other", ("b.png", b"1"))] * 1000},
            400,
            "MalformedRequest",
            "Too many files",
        ),
        (
            "POST",
            "/predict/file",
            {"files": [("image", ("a.png", b"1")), ("image", ("b.png", b"2"))]},
            400,
            "MalformedRequest",
            "more than one image part",
        ),
        ("POST", "/predict/file", {"data": {"model": "shapes"}}, 422, "InvalidRequest", "image"),
        ("POST", "/predict/file", {"files": {"image": ("a.png", b"1")}, "data": {"confidence": "nan"}}, 422, "", ""),
    ],
)
def test_the_frameworks_own_errors_have_the_one_shape(client, method, path, kwargs, status, error, text):
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["detail"], str) and text in body["detail"]
    assert body["error"] == (error or "InvalidRequest")
    if status == 405:
        assert "POST" in response.headers["allow"]


def test_a_body_over_the_limit_while_streaming_is_the_one_413_shape(client):
    limit = Settings(max_image_bytes=2_000_000).max_body_bytes

    def chunks():
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    body = response.json()
    assert body.pop("request_id") == response.headers["X-Request-ID"]  # the id of the request, in both
    assert body == {
        "detail": f"the request body is larger than the limit of {limit:,} bytes",
        "error": "ImageTooLarge",
    }


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


def test_the_openapi_schema_documents_exactly_the_one_error_shape(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["ErrorResponse"]["required"]) == {"detail", "error"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            errors = {code: r for code, r in operation["responses"].items() if int(code) >= 400}
            assert "500" in errors, (method, path)
            for code, response in errors.items():
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorResponse", (method, path, code)
    assert set(spec["paths"]["/predict"]["post"]["responses"]) == {
        "200", "400", "404", "408", "413", "415", "422", "500", "503"
    }  # fmt: skip
    assert "security" not in spec["paths"]["/predict"]["post"]  # no key configured here


def test_an_unexpected_exception_in_a_route_is_a_logged_json_500(weights_dir, caplog):
    from yolo_service.api import get_service

    app = create_app(Settings(weights_dir=weights_dir, offline=True, preload=False))

    def broken_service():
        raise RuntimeError("injected failure")

    app.dependency_overrides[get_service] = broken_service
    with TestClient(app) as test_client, caplog.at_level("INFO", logger="yolo_service.api"):
        for _ in range(20):
            response = test_client.get("/models")
            assert response.status_code == 500
            assert response.json()["error"] == "InternalError" and "Traceback" not in response.text
        assert test_client.get("/health").json() == {"status": "ok"}
    failures = [r for r in caplog.records if r.getMessage() == "unexpected error in GET /models"]
    assert len(failures) == 20 and "RuntimeError: injected failure" in (failures[0].exc_text or "")
    assert sum("GET /models 500" in r.getMessage() for r in caplog.records) == 20


def test_with_an_api_key_in_process(weights_dir):
    from yolo_service import Client

    settings = Settings(weights_dir=weights_dir, offline=True, preload=False, api_key="k3y")
    with TestClient(create_app(settings)) as test_client:
        assert test_client.get("/health").status_code == 200
        assert test_client.get("/openapi.json").status_code == 200
        refused = test_client.get("/models")
        assert refused.status_code == 401
        assert refused.json() == {
            "request_id": refused.headers["X-Request-ID"],
            "detail": "this service requires an API key: the request sent no API key in the X-API-Key header",
            "error": "Unauthorized",
        }
        assert test_client.get("/models", headers={"X-API-Key": "k3y"}).status_code == 200
        assert test_client.get("/models", headers={"X-API-Key": "k3y "}).status_code == 401
        twice = test_client.get("/models", headers=[("X-API-Key", "k3y"), ("X-API-Key", "wrong")])
        assert twice.status_code == 401 and "2 X-API-Key headers" in twice.json()["detail"]
        twice_right = test_client.get("/models", headers=[("X-API-Key", "k3y"), ("X-API-Key", "k3y")])
        assert twice_right.status_code == 401
        spec = test_client.get("/openapi.json").json()
        assert "401" in spec["paths"]["/models"]["get"]["responses"]
        assert "401" not in spec["paths"]["/health"]["get"]["responses"]
    assert repr(Settings(api_key="k3y")).count("k3y") == 0  # a SecretStr: never in logs or reprs
    assert Settings(api_key="").api_key is None  # an empty variable means no key
    assert Client("http://x", api_key="k3y")._http.headers["x-api-key"] == "k3y"
    assert "x-api-key" not in Client("http://x", api_key="")._http.headers
