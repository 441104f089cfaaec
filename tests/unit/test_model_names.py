"""Model names are never paths: a real ``.pt`` file planted outside the weights directory is never served.

The planted file is a copy of the bundled model, so if a name ever reached it, it would
load and predict: these tests fail when the name check in ``ModelCatalog.spec`` goes.
The control model (the same weights, inside the weights directory) shows the route does
serve what it should.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from yolo_service import ModelCatalog, ModelRegistry, Settings, UnknownModel, encode_base64, encode_image, sample_scene
from yolo_service.api import create_app
from yolo_service.models import BUNDLED_DIR

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Settings, Path]:
    """A weights directory holding ``mine.pt``, and ``evil.pt`` next to it and one directory further."""
    root = tmp_path_factory.mktemp("names")
    weights = root / "weights"
    weights.mkdir()
    shutil.copyfile(BUNDLED_DIR / "shapes.pt", weights / "mine.pt")
    shutil.copyfile(BUNDLED_DIR / "shapes.pt", root / "evil.pt")
    (root / "elsewhere").mkdir()
    shutil.copyfile(BUNDLED_DIR / "shapes.pt", root / "elsewhere" / "evil.pt")
    return Settings(weights_dir=weights, offline=True, preload=False, default_model="mine"), root


def attacks(root: Path) -> list[str]:
    """Names that point at the planted files, as an attacker would write them."""
    weights = root / "weights"
    return [
        "../evil",
        "../evil.pt",
        "./../evil",
        "mine/../../evil",
        "..%2Fevil",
        "%2e%2e%2fevil",
        "..\\evil",
        "../elsewhere/evil",
        str(root / "evil"),
        str(root / "evil.pt"),
        str(root / "elsewhere" / "evil.pt"),
        f"{weights}/../evil",
        "evil",  # evil.pt exists, but not in the weights directory
        "evil.pt",
    ]


def test_the_control_model_is_served_and_the_planted_files_exist(planted):
    settings, root = planted
    assert ModelCatalog(settings).spec("mine").path == settings.weights_dir / "mine.pt"
    assert (root / "evil.pt").read_bytes() == (settings.weights_dir / "mine.pt").read_bytes()


def test_the_catalog_never_resolves_a_name_to_a_planted_file(planted):
    settings, root = planted
    catalog = ModelCatalog(settings)
    assert catalog.names() == ["yolo26n", "yolo26s", "yolo11n", "yolo11s", "yolo11m", "shapes", "mine"]
    for name in attacks(root):
        with pytest.raises(UnknownModel):
            catalog.spec(name)


_OPENED: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], str | Path):
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; it records only while _OPENED is a list


def test_the_registry_never_opens_a_planted_file(planted):
    global _OPENED
    settings, root = planted
    registry = ModelRegistry(settings)
    _OPENED = []
    try:
        for name in attacks(root):
            with pytest.raises(UnknownModel):
                registry.get(name)
        opened = [Path(path).resolve() for path in _OPENED]
    finally:
        _OPENED = None
    assert [path for path in opened if path.name == "evil.pt"] == []
    assert registry._detectors == {}


@pytest.fixture(scope="module")
def api(planted):
    with TestClient(create_app(planted[0])) as client:
        yield client


def test_the_api_serves_the_control_model(api):
    image = encode_base64(sample_scene()[0])
    started = time.monotonic()
    response = api.post("/predict", json={"image": image, "model": "mine"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "mine" and sorted(d["class_name"] for d in body["detections"]) == ["circle", "square"]
    assert time.monotonic() - started < 120


def test_the_api_never_serves_a_planted_file(api, planted):
    _, root = planted
    png = encode_image(sample_scene()[0])
    for name in attacks(root):
        response = api.post("/predict", json={"image": encode_base64(png), "model": name})
        assert response.status_code == 404, (name, response.text)
        assert response.json()["error"] == "UnknownModel"
        response = api.post("/predict/file", data={"model": name}, files={"image": ("scene.png", png, "image/png")})
        assert response.status_code == 404, (name, response.text)
        # As a URL path segment, %2F-encoded: the route does not match (404), or the catalog refuses it (404).
        assert api.get(f"/models/{quote(name, safe='')}").status_code == 404, name
    assert api.get("/models").json()[-1] == "mine"
