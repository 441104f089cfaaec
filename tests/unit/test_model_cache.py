"""The registry is a bounded cache of models: least recently used goes, the default stays, one load each."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from yolo_service import ModelRegistry, Settings
from yolo_service.errors import UnknownModel
from yolo_service.models import BUNDLED_DIR


@pytest.fixture
def weights(tmp_path):
    """Three local models, a, b and c: copies of the bundled shapes model (its ONNX file for the exported engines)."""
    for name in "abc":
        shutil.copy(BUNDLED_DIR / "shapes.pt", tmp_path / f"{name}.pt")
        shutil.copy(BUNDLED_DIR / "shapes.onnx", tmp_path / f"{name}.onnx")
    return tmp_path


def registry(weights, max_models: int) -> ModelRegistry:
    settings = Settings(
        weights_dir=weights, offline=True, engine="onnxruntime", default_model="shapes", max_models=max_models
    )
    return ModelRegistry(settings)


def test_the_least_recently_used_model_goes_and_the_default_stays(weights, caplog):
    models = registry(weights, max_models=3)
    shapes = models.get()  # the default
    a, b = models.get("a"), models.get("b")
    assert list(models.detectors()) == ["shapes", "a", "b"]
    assert models.get("a") is a  # used again: now b is the least recently used
    with caplog.at_level("INFO", logger="yolo_service.models"):
        models.get("c")
    assert list(models.detectors()) == ["shapes", "a", "c"]
    assert not models.loaded("b") and models.get() is shapes
    assert "unloaded model b (least recently used; at most 3 stay loaded)" in caplog.text
    models.get("shapes")  # the default, most recently used: still never the one to go
    models.get("b")
    assert set(models.detectors()) == {"shapes", "c", "b"}
    assert models.get("b") is not b  # loaded again: a new copy, the old one freed once unused


def test_with_room_for_one_the_default_stays_and_others_take_turns(weights):
    models = registry(weights, max_models=1)
    models.get()
    models.get("a")
    models.get("b")
    assert set(models.detectors()) == {"shapes", "b"}


def test_a_model_loads_once_under_concurrent_first_use(weights, caplog):
    models = registry(weights, max_models=2)
    with caplog.at_level("INFO", logger="yolo_service.models"), ThreadPoolExecutor(8) as pool:
        detectors = list(pool.map(lambda _: models.get("a"), range(8)))
    assert all(d is detectors[0] for d in detectors)
    assert sum("loaded model a " in r.getMessage() for r in caplog.records) == 1


def test_a_loaded_model_is_served_from_memory_its_files_no_longer_read(weights):
    """A request for a loaded model looks at no file: served even once its weights are gone from the folder."""
    models = registry(weights, max_models=3)
    assert not models.loaded(None)  # the default is not even resolved yet
    a = models.get("a")
    (weights / "a.pt").unlink()
    (weights / "a.onnx").unlink()
    assert models.get("a") is a and models.get("a.pt") is a and models.loaded("a.onnx")
    with pytest.raises(UnknownModel, match="unknown model 'b2'"):  # a name never loaded is still looked up
        models.get("b2")
    models.get()
    assert models.loaded(None) and models.get(None).spec.name == "shapes"
