"""The bundled ``shapes`` detector through the library: accuracy on known scenes, threads, errors."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

import yolo_service
from tests.helpers import assert_finds
from yolo_service import (
    InvalidRequest,
    ModelCatalog,
    ModelRegistry,
    ModelUnavailable,
    Settings,
    encode_image,
    random_scene,
    sample_scene,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def registry(weights_dir) -> ModelRegistry:
    return ModelRegistry(Settings(weights_dir=weights_dir, offline=True))


def jpeg(image: Image.Image, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **kw)
    return buffer.getvalue()


def scaled(shapes, factor):
    return [type(s)(s.class_name, *(round(v * factor) for v in s.box), s.color) for s in shapes]


def exif_rotated() -> bytes:
    stored = sample_scene()[0].transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the displayed image is the sample scene
    return jpeg(stored, exif=exif)


VARIANTS = {
    "640x480 PNG": lambda im: encode_image(im),
    "RGBA PNG": lambda im: encode_image(im.convert("RGBA")),
    "palette PNG": lambda im: encode_image(im.convert("P", palette=Image.Palette.ADAPTIVE)),
    "greyscale PNG": lambda im: encode_image(im.convert("L")),
    "EXIF orientation 6 JPEG": lambda im: exif_rotated(),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_finds_the_square_and_the_circle(registry, variant):
    image, shapes = sample_scene()
    response = registry.predict(VARIANTS[variant](image), "shapes")
    assert (response.model, response.image.width, response.image.height) == ("shapes", 640, 480)
    assert_finds(shapes, response.detections)
    assert 0 < response.time < 10


def test_boxes_are_in_the_original_pixels_of_a_4000x3000_jpeg(registry):
    image, shapes = sample_scene()
    big = jpeg(image.resize((4000, 3000), Image.Resampling.BICUBIC))
    response = registry.predict(big, "shapes")
    assert (response.image.width, response.image.height) == (4000, 3000)
    assert_finds(scaled(shapes, 6.25), response.detections)


def test_module_level_predict_uses_the_default_registry():
    from yolo_service.models import _default_registry

    default = _default_registry()
    assert _default_registry() is default  # one per process
    seen = []
    default.on_predict.append(seen.append)  # the default registry's own observers see what it predicts
    try:
        image, shapes = sample_scene()
        response = yolo_service.predict(image, "shapes")
    finally:
        default.on_predict.remove(seen.append)
    assert seen == [response] and seen[0] is response
    assert default.loaded("shapes")
    assert_finds(shapes, response.detections)


def test_options_filter_detections(registry):
    image, _ = sample_scene()
    only_circles = registry.predict(image, "shapes", classes=["circle"])
    assert [d.class_name for d in only_circles.detections] == ["circle"]
    assert len(registry.predict(image, "shapes", max_detections=1).detections) == 1
    assert registry.predict(image, "shapes", confidence=0.999).detections == []
    with pytest.raises(InvalidRequest, match="has no class 'dog'"):
        registry.predict(image, "shapes", classes=["dog"])


def test_eight_threads_give_exactly_the_serial_results(registry):
    import random

    images = [random_scene(random.Random(seed), (480, 360))[0] for seed in range(8)]
    serial = [registry.predict(im, "shapes").detections for im in images]
    assert sum(len(d) for d in serial) >= 8
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda im: registry.predict(im, "shapes").detections, images))
    assert parallel == serial


def test_models_load_once_and_are_cached(registry):
    assert registry.get("shapes") is registry.get("shapes.pt") is registry.get("shapes")
    assert registry.loaded("shapes")


def test_default_model_offline_is_shapes_with_one_log_line(weights_dir, caplog):
    fresh = ModelRegistry(Settings(weights_dir=weights_dir, offline=True))
    with caplog.at_level("WARNING"):
        assert fresh.default_model() == "shapes"
        assert fresh.default_model() == "shapes"
    lines = [r.getMessage() for r in caplog.records if "default model" in r.getMessage()]
    assert lines == [
        "default model: shapes, because model 'yolo26n' is not available offline: run `yolo-service download "
        "yolo26n` with internet, or choose one of: shapes"
    ]


def test_catalog_lists_coco_bundled_and_local_models(weights_dir):
    catalog = ModelCatalog(Settings(weights_dir=weights_dir, offline=True))
    (weights_dir / "my_model.pt").write_bytes(b"not really weights")
    try:
        assert catalog.names() == ["yolo26n", "yolo26s", "yolo11n", "yolo11s", "yolo11m", "shapes", "my_model"]
        assert catalog.spec("my_model").path == weights_dir / "my_model.pt"
        info = catalog.info("yolo26n")
        assert (info.source, info.available_offline, info.classes[:2]) == ("coco", False, ["person", "bicycle"])
        with pytest.raises(ModelUnavailable, match="could not be loaded from my_model.pt"):
            ModelRegistry(catalog.settings).get("my_model")
    finally:
        (weights_dir / "my_model.pt").unlink()


def test_unavailable_coco_model_says_how_to_fix_it(registry):
    with pytest.raises(ModelUnavailable) as info:
        registry.get("yolo11n")
    assert str(info.value) == (
        "model 'yolo11n' is not available offline: run `yolo-service download yolo11n` with internet, "
        "or choose one of: shapes"
    )
    assert info.value.status_code == 503
