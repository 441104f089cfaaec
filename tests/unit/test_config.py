"""Settings come from the environment, refuse nonsense, and honour $PORT."""

import pytest
from pydantic import ValidationError

from yolo_service import Settings
from yolo_service.config import available_cpus


def test_port_comes_from_PORT(monkeypatch):
    monkeypatch.setenv("PORT", "9123")
    assert Settings().port == 9123
    monkeypatch.delenv("PORT")
    assert Settings().port == 8000


def test_prefixed_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("YOLO_SERVICE_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("YOLO_SERVICE_ALLOWED_FORMATS", "png, jpeg")
    monkeypatch.setenv("YOLO_SERVICE_MAX_QUEUE", "4")
    settings = Settings()
    assert settings.weights_dir == tmp_path
    assert settings.allowed_formats == frozenset({"PNG", "JPEG"})
    assert settings.max_queue == 4


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("YOLO_SERVICE_CONFIDENCE", "1.5"),
        ("PORT", "0"),
        ("YOLO_SERVICE_LOG_LEVEL", "loud"),
        ("YOLO_SERVICE_MAX_QUEUE", "0"),
    ],
)
def test_nonsense_is_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_body_limit_leaves_room_for_base64():
    settings = Settings(max_image_bytes=3_000_000)
    assert settings.max_body_bytes >= 4_000_000


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "100000 100000\n"}, 1),
        ({"cpu.max": "150000 100000\n"}, 2),
        ({"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({}, None),
    ],
)
def test_available_cpus_honours_cgroup_quotas(tmp_path, files, expected):
    import os

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path) == (min(affinity, expected) if expected else affinity)


def test_the_readme_documents_every_setting():
    from tests.helpers import ROOT

    readme = (ROOT / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"`YOLO_SERVICE_{name.upper()}`" not in readme]
    assert missing == []


def test_engine_defaults_to_auto_and_precision_takes_int8(monkeypatch):
    assert Settings().engine == "auto"
    monkeypatch.setenv("YOLO_SERVICE_ENGINE", "ultralytics")
    monkeypatch.setenv("YOLO_SERVICE_PRECISION", "int8")
    forced = Settings()
    assert (forced.engine, forced.precision) == ("ultralytics", "int8")
    monkeypatch.setenv("YOLO_SERVICE_ENGINE", "tensorrt")
    with pytest.raises(ValueError, match="auto"):
        Settings()


def test_worker_slots_default_per_engine():
    """PyTorch: one slot per model copy; exported engines and auto: two per thread, the next image decoded meanwhile."""
    assert Settings(engine="ultralytics", threads=2, replicas=2).worker_slots == 2
    assert Settings(threads=2, replicas=2).worker_slots == 4  # auto, the default
    assert Settings(engine="openvino", threads=2, replicas=2).worker_slots == 4
    assert Settings(engine="onnxruntime", threads=4).worker_slots == 8
    assert Settings(engine="openvino", threads=2, workers=1).worker_slots == 1  # the setting wins
