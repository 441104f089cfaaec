"""The real page in a real browser, facing a backend whose every string is Markdown and HTML aimed at an attacker.

AppTest sees which Streamlit element holds each string; only a browser shows what those elements
become. Here ``streamlit run frontend/app.py`` is a process, its backend a fake on a loopback port
(:class:`tests.frontend.fakes.KitBackend`), which also plays the attacker: a link or image built
from its strings would point at it, and it logs every request it gets.
"""

from __future__ import annotations

import sys

import pytest

from tests.e2e.test_browser import CHROMIUM, FLAGS
from tests.frontend.fakes import KitBackend, KitStrings, markdown_payload
from tests.helpers import Server, free_port

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
ATTACK_PATHS = {"/login", "/pixel.png", "/img.png", "/a", "/bare", "/k", "/v.png"}


def test_backend_markdown_shows_as_literal_text_in_a_real_browser(artifacts):
    from playwright.sync_api import expect, sync_playwright

    with KitBackend() as backend:
        evil = markdown_payload(backend.url)
        version = f"9.9 [key]({backend.url}/k) ![]({backend.url}/v.png)"
        backend.strings = KitStrings(version=version, models=[f"model {evil}"], classes=[f"class {evil}"])
        port = free_port()
        argv = [sys.executable, "-m", "streamlit", "run", "frontend/app.py", "--server.port", str(port)]
        argv += ["--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
        env = {"BACKEND_URL": backend.url}
        with Server(argv, port, env=env, ready_path="/_stcore/health") as frontend, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            asked = []
            page.on("request", lambda request: asked.append(request.url))
            try:
                page.goto(frontend.url)
                page.get_by_role("button", name="Is alive").click()
                expect(page.get_by_text("Backend is alive", exact=True)).to_be_visible(timeout=30_000)
                serving = f"default model {f'model {evil}'[:100]} on {backend.strings.engine} (f32)"
                expect(page.get_by_text(f"yolo-service {version}, {serving}", exact=True)).to_be_visible()
                expect(page.get_by_text(f"Models: model {evil}", exact=True)).to_be_visible()

                page.get_by_text("Try a sample").click()
                page.get_by_role("button", name="Predict").click()
                expect(page.get_by_text("Server processing time")).to_be_visible(timeout=60_000)
                expect(page.get_by_text(f"model model {evil}", exact=False)).to_be_visible()
                page.get_by_role("combobox").first.click()  # the Model list, opened: its options too
                expect(page.get_by_role("option", name=f"model {evil}")).to_be_visible()
                page.wait_for_timeout(500)
                page.screenshot(path=str(artifacts / "frontend-untrusted-backend.png"), full_page=True)

                assert page.get_by_text("re-enter your key", exact=True).count() == 0  # a rendered link: its text alone
                assert page.locator(f"a[href^='{backend.url}']").count() == 0
                assert page.locator(f"img[src^='{backend.url}'], [src^='{backend.url}']").count() == 0
                assert not [url for url in asked if url.startswith(backend.url)]  # the browser never called it
                assert not ATTACK_PATHS & {path.split("?")[0] for path in backend.paths()}  # nor did anyone
            except Exception:
                page.screenshot(path=str(artifacts / "frontend-untrusted-backend-failure.png"), full_page=True)
                raise
            finally:
                browser.close()
