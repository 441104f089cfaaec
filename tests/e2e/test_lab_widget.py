"""The notebooks' upload widget in a real JupyterLab in Chromium: what a learner uploads is what gets predicted.

JupyterLab runs on a free loopback port (a token, its files in a temporary folder) on a generated notebook
that shows ``PredictDemo`` against the test session's backend. The browser uploads a generated PNG through
the page's file chooser (as a person does; ipywidgets 8 keeps its ``<input type=file>`` out of reach of
``set_input_files``), presses Predict, and reads the boxes of *that* image from the widget's table.
"""

from __future__ import annotations

import nbformat
import pytest

from tests.e2e.test_browser import CHROMIUM, FLAGS
from tests.helpers import JupyterLab
from yolo_service import encode_image
from yolo_service.shapes import Shape, draw_scene, sample_scenes
from yolo_service.workshop.widgets import UPLOAD

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

#: The uploaded picture: a triangle and a circle, neither where the default sample has its square and circle.
UPLOADED = [Shape("triangle", 60, 200, 260, 400, (30, 170, 60)), Shape("circle", 400, 40, 560, 200, (140, 50, 180))]


def widget_notebook(path, backend_url: str) -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                f"from yolo_service.workshop.widgets import PredictDemo\n\ndemo = PredictDemo({backend_url!r})\ndemo"
            )
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
    )
    nbformat.write(notebook, path)


def table_rows(page) -> dict[str, list[int]]:
    """The widget's result table: class name -> box (x_min, y_min, x_max, y_max)."""
    rows = {}
    for row in page.locator(".jupyter-widgets table tr").all()[1:]:  # the first row holds the headers
        cells = row.locator("td").all_inner_texts()  # class_name, confidence, x_min, y_min, x_max, y_max
        rows[cells[0]] = [int(value) for value in cells[2:6]]
    return rows


def test_the_upload_widget_predicts_the_uploaded_image_in_jupyterlab(backend, tmp_path, artifacts):
    from playwright.sync_api import expect, sync_playwright

    root = tmp_path / "lab"
    root.mkdir()
    widget_notebook(root / "predict.ipynb", backend.url)
    upload = tmp_path / "my-shapes.png"
    upload.write_bytes(encode_image(draw_scene(UPLOADED, background=(250, 250, 245))))
    sample_boxes = {s.class_name: list(s.box) for s in sample_scenes()["square and circle"][1]}

    with JupyterLab([f"--ServerApp.root_dir={root}"], tmp_path / "home", cwd=root) as lab, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1400})
        try:
            page.goto(f"{lab.url}/lab/tree/predict.ipynb?token={lab.token}")
            expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=120_000)
            page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
            page.keyboard.press("Shift+Enter")  # run the cell: the widget appears under it
            button = page.locator(".widget-upload")
            expect(button).to_be_visible(timeout=120_000)
            image_choice = page.locator(".widget-dropdown select").first.locator("option:checked")
            expect(image_choice).to_have_text("square and circle")

            with page.expect_file_chooser() as chooser:
                button.click()
            chooser.value.set_files(upload)

            expect(button).to_contain_text("(1)", timeout=30_000)
            expect(image_choice).to_have_text(UPLOAD)  # the upload selected itself
            expect(page.get_by_text("my-shapes.png uploaded: press Predict.")).to_be_visible()
            page.locator(".widget-button", has_text="Predict").click()
            expect(page.get_by_text(f"{len(UPLOADED)} detections by shapes on openvino in")).to_be_visible(
                timeout=60_000
            )

            # The table is drawn after the line above it: wait for its rows (a header row, then one per detection).
            expect(page.locator(".jupyter-widgets table tr")).to_have_count(len(UPLOADED) + 1, timeout=30_000)
            found = table_rows(page)
            page.screenshot(path=str(artifacts / "jupyterlab-upload-widget.png"), full_page=True)
            print("detections in the widget's table:", found)
            assert sorted(found) == sorted(s.class_name for s in UPLOADED), found
            for shape in UPLOADED:
                assert all(abs(a - b) <= 15 for a, b in zip(found[shape.class_name], shape.box, strict=True)), found
            assert found != sample_boxes and "square" not in found  # not the default sample's detections
        except Exception:
            page.screenshot(path=str(artifacts / "jupyterlab-upload-widget-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
