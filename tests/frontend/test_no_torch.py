"""The UI runs with torch and Ultralytics unimportable, as in its container."""

import subprocess
import sys
import textwrap

from tests.helpers import ROOT
from yolo_service.workshop.processes import TORCH_MODULES, import_blocker


def test_frontend_runs_a_test_mode_prediction_without_torch():
    code = import_blocker(TORCH_MODULES) + textwrap.dedent(
        f"""
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(ROOT / "frontend" / "app.py")!r}, default_timeout=60).run()
        at.toggle(key="test_mode").set_value(True).run()
        at.radio(key="source").set_value("Try a sample").run()
        at.button(key="predict").click().run()
        assert not at.exception, at.exception
        print(sorted(at.dataframe[0].value["class_name"]))
        print(sorted(m for m in sys.modules if m.split(".")[0] in {{"torch", "ultralytics", "cv2"}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["['circle', 'square']", "[]"]
