"""The Streamlit script's logic with ``AppTest``, against a real backend process where it needs one."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

import yolo_service
from tests.helpers import ROOT, free_port

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
APP = str(ROOT / "frontend" / "app.py")


def app(url: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.text_input(key="backend_url").set_value(url).run()
    for key, value in state.items():
        at.session_state[key] = value
    return at


def test_defaults_come_from_backend_url(monkeypatch):
    monkeypatch.setenv("BACKEND_URL", "http://backend:8000")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert at.text_input(key="backend_url").value == "http://backend:8000"
    assert at.button(key="predict").disabled is True  # nothing to predict yet
    assert not at.exception


def test_is_alive_with_a_running_backend(backend):
    at = app(backend.url)
    at.button(key="is_alive").click().run()
    assert not at.exception and not at.error
    assert at.success[0].value == f"Backend is alive: yolo-service {yolo_service.__version__}"
    assert "shapes" in at.sidebar.caption[0].value
    assert "shapes" in at.selectbox(key="model").options


def test_is_alive_with_a_dead_backend_gives_a_hint_not_a_traceback():
    url = f"http://127.0.0.1:{free_port()}"
    at = app(url)
    at.button(key="is_alive").click().run()
    assert not at.exception
    assert f"Backend at {url} is not reachable" in at.error[0].value
    assert "http://backend:8000" in at.error[0].value
    assert "Cannot list the backend's models" in at.warning[0].value


def test_predict_a_sample_lists_the_shapes(backend):
    at = app(backend.url)
    at.radio(key="source").set_value("Try a sample").run()
    at.selectbox(key="model").set_value("shapes").run()
    assert at.multiselect(key="classes").options == ["circle", "square", "triangle"]
    at.button(key="predict").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert sorted(table["class_name"]) == ["circle", "square"]
    assert table.loc[table["class_name"] == "square", ["x_min", "y_min"]].iloc[0].between(90, 110).all()
    assert [m.label for m in at.metric] == ["Server processing time", "Round-trip time", "Detections"]
    assert at.metric[2].value == "2"


def test_upload_a_file_and_filter_classes(backend):
    from yolo_service import encode_image, sample_scene

    at = app(backend.url)
    at.selectbox(key="model").set_value("shapes").run()
    at.multiselect(key="classes").set_value(["circle"]).run()
    at.file_uploader(key="upload").set_value(("scene.png", encode_image(sample_scene()[0]), "image/png")).run()
    at.button(key="predict").click().run()
    assert not at.exception and not at.error
    assert list(at.dataframe[0].value["class_name"]) == ["circle"]


def test_test_mode_fakes_a_labelled_response_without_a_backend():
    at = app(f"http://127.0.0.1:{free_port()}")
    at.toggle(key="test_mode").set_value(True).run()
    at.radio(key="source").set_value("Try a sample").run()
    at.button(key="predict").click().run()
    assert not at.exception and not at.error
    assert at.info[0].value.startswith("TEST MODE")
    assert sorted(at.dataframe[0].value["class_name"]) == ["circle", "square"]


def test_errors_are_messages(backend):
    at = app(backend.url)
    at.file_uploader(key="upload").set_value(("notes.png", b"this is not an image", "image/png")).run()
    at.button(key="predict").click().run()
    assert not at.exception
    assert "This file cannot be used" in at.error[0].value and "not an image" in at.error[0].value
    dead = app(f"http://127.0.0.1:{free_port()}")
    dead.radio(key="source").set_value("Try a sample").run()
    dead.button(key="predict").click().run()
    assert not dead.exception and "is not reachable" in dead.error[0].value
