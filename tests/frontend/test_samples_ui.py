"""The UI's samples: the generated scenes, plus Ultralytics' photos where Ultralytics is installed."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import ROOT, free_port

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
APP = str(ROOT / "frontend" / "app.py")


def test_a_photo_sample_can_be_sent():
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="backend_url").set_value(f"http://127.0.0.1:{free_port()}").run()
    at.toggle(key="test_mode").set_value(True).run()
    at.radio(key="source").set_value("Try a sample").run()
    assert at.selectbox(key="sample").options == [
        "square and circle",
        "three shapes",
        "small shapes on dark",
        "bus.jpg",
        "zidane.jpg",
    ]
    at.selectbox(key="sample").set_value("bus.jpg").run()
    at.button(key="predict").click().run()
    assert not at.exception and not at.error
    assert list(at.dataframe[0].value["class_name"]) == ["fake object"]  # a photo has no known boxes
