"""One real-browser test: the backend and ``streamlit run frontend/app.py`` as processes, Chromium driving.

Uses Debian's Chromium (``make test`` installs the ``chromium`` package when missing); Playwright
never downloads a browser here.
"""

from __future__ import annotations

import re
import shutil
import sys

import httpx
import pytest

from tests.helpers import Server, free_port, logged_line
from yolo_service import __version__, encode_image, sample_scenes

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def frontend(backend):
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "frontend/app.py",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]
    with Server(argv, port, env={"BACKEND_URL": backend.url}, ready_path="/_stcore/health") as server:
        yield server


def test_upload_and_predict_in_a_real_browser(frontend, backend, tmp_path, artifacts):
    from playwright.sync_api import expect, sync_playwright

    image, shapes = sample_scenes()["three shapes"]
    upload = tmp_path / "three-shapes.png"
    upload.write_bytes(encode_image(image))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        try:
            page.goto(frontend.url)
            expect(page.get_by_label("Backend URL")).to_have_value(backend.url, timeout=60_000)
            page.get_by_role("button", name="Is alive").click()
            expect(page.get_by_text("Backend is alive", exact=True)).to_be_visible(timeout=30_000)
            # as text, with the engine serving the default model (OpenVINO here; f32, or bf16 on a CPU with it)
            ready = httpx.get(backend.url + "/ready", timeout=30).json()
            assert ready["engine"] == "openvino"
            serving = f"yolo-service {__version__}, default model shapes on openvino ({ready['precision']})"
            expect(page.get_by_text(serving, exact=True)).to_be_visible()

            page.locator("input[type=file]").set_input_files(upload)
            expect(page.get_by_text("three-shapes.png")).to_be_visible(timeout=30_000)
            page.get_by_role("button", name="Predict").click()
            expect(page.get_by_text("Server processing time")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Backend is alive", exact=True)).to_be_visible()  # kept across reruns

            grid = page.locator("[data-testid='stDataFrame']")
            expect(grid).to_be_visible()
            # Glide data grid draws on a canvas; its accessible table mirror holds the cell texts (filled lazily).
            expect(grid.locator("table tbody tr")).to_have_count(len(shapes), timeout=30_000)
            rows = [row.locator("td").all_inner_texts() for row in grid.locator("table tbody tr").all()]
            found = {cells[0]: [int(v) for v in cells[2:6]] for cells in rows}
            assert set(found) == {s.class_name for s in shapes}, rows
            for shape in shapes:  # columns: class_name, confidence, x_min, y_min, x_max, y_max
                assert all(abs(a - b) <= 15 for a, b in zip(found[shape.class_name], shape.box, strict=True)), rows
            shown = page.get_by_text(re.compile(r"^Request id: [0-9a-f]{32}$"))
            expect(shown).to_be_visible()
            request_id = shown.inner_text().removeprefix("Request id: ")
            page.wait_for_timeout(500)
            page.screenshot(path=str(artifacts / "frontend.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(artifacts / "frontend-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    # The id on the page is in both processes' logs: the UI's line for the call, and the API's entry.
    assert logged_line(frontend, f"[{request_id}]", f"POST {backend.url}/predict/file 200")
    assert logged_line(backend, f"[{request_id}]", "POST /predict/file 200")
