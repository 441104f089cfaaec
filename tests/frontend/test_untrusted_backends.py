"""The UI facing backends it cannot trust: where its key goes, how much of an answer it reads, what it renders.

Each backend is a real HTTP server on a free loopback port (:mod:`tests.frontend.fakes`); the page
runs through ``AppTest``, so the whole path is real: the session's key choice, the client's
deadline and size cap, and the elements the page draws.
"""

from __future__ import annotations

import resource
import time

import pytest
from streamlit.testing.v1 import AppTest

from tests.frontend.fakes import EndlessBackend, KitBackend, KitStrings, RedirectBackend, markdown_payload
from tests.helpers import ROOT

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
APP = str(ROOT / "frontend" / "app.py")
SERVER_KEY = "the-ui-servers-own-key"
MiB = 2**20


@pytest.fixture
def settings_env(monkeypatch):
    """Set the UI server's environment for one test; settings are read again before and after."""
    from yolo_service.config import get_settings

    def configure(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield configure
    monkeypatch.undo()
    get_settings.cache_clear()


def page(url: str | None = None, api_key: str | None = None) -> AppTest:
    """The page, with the Backend URL box (and the API key box) typed in as a visitor would."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    if url is not None:
        at.text_input(key="backend_url").set_value(url).run()
    if api_key is not None:
        at.text_input(key="api_key").set_value(api_key).run()
    return at


def is_alive_then_predict(at: AppTest) -> AppTest:
    at.button(key="is_alive").click().run()
    at.radio(key="source").set_value("Try a sample").run()
    return at.button(key="predict").click().run()


# --- Where the key goes -------------------------------------------------------------------------


def test_the_servers_key_goes_to_its_backend_and_never_to_a_typed_one(settings_env):
    with KitBackend() as configured, KitBackend() as stranger:
        settings_env(BACKEND_URL=configured.url, YOLO_SERVICE_API_KEY=SERVER_KEY)

        at = is_alive_then_predict(page())  # the configured backend: the server's key
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert {"/health", "/version", "/models", "/predict/file"} <= set(configured.paths())
        assert configured.keys() == {SERVER_KEY}

        at = is_alive_then_predict(page(stranger.url))  # a URL a visitor typed: no key at all
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert {"/health", "/version", "/models", "/predict/file"} <= set(stranger.paths())
        assert stranger.keys() == {None}

        # Spelled differently, the same scheme, host and port is the configured backend …
        before = len(configured.seen)
        page(configured.url.replace("http://", "HTTP://") + "/").button(key="is_alive").click().run()
        assert len(configured.seen) > before and configured.keys() == {SERVER_KEY}
        # … and the configured host in a URL's user part is not: httpx connects to the host after the @.
        userinfo = f"http://127.0.0.1:{configured.port}@127.0.0.1:{stranger.port}"
        page(userinfo).button(key="is_alive").click().run()
        assert stranger.keys() == {None}


def test_a_typed_key_goes_where_the_visitor_sends_it(settings_env):
    with KitBackend() as configured, KitBackend() as stranger:
        settings_env(BACKEND_URL=configured.url, YOLO_SERVICE_API_KEY=SERVER_KEY)
        typed_url = page(stranger.url, api_key="the-visitors-key")
        typed_default = page(api_key="the-visitors-key")
        configured.seen.clear()  # what the pages asked before the key was typed
        stranger.seen.clear()
        at = is_alive_then_predict(typed_url)
        assert not at.exception and not at.error
        assert stranger.keys() == {"the-visitors-key"}
        is_alive_then_predict(typed_default)  # to the configured backend too: a typed key replaces the server's
        assert configured.keys() == {"the-visitors-key"}


def test_a_redirect_is_not_followed_so_the_key_stays_with_the_configured_backend(settings_env):
    """httpx drops Authorization on a redirect to another host, not X-API-Key: following would hand the key on."""
    with KitBackend() as stranger, RedirectBackend(stranger.url) as configured:
        settings_env(BACKEND_URL=configured.url, YOLO_SERVICE_API_KEY=SERVER_KEY)
        at = page()
        at.button(key="is_alive").click().run()
        assert not at.exception
        assert at.sidebar.error[0].value.startswith("The backend failed to answer")
        assert at.sidebar.text[0].value.startswith("307 Temporary Redirect: a redirect, which the client does not")
        assert stranger.seen == []


def test_without_editable_backends_the_url_box_is_fixed_and_other_urls_are_refused(settings_env):
    with KitBackend() as configured, KitBackend() as stranger:
        settings_env(BACKEND_URL=configured.url, YOLO_SERVICE_API_KEY=SERVER_KEY, YOLO_SERVICE_UI_BACKEND_EDITABLE="0")
        at = page()
        box = at.text_input(key="backend_url")
        assert box.disabled is True and box.value == configured.url
        # The browser shows the box disabled (and AppTest refuses to type in it); a crafted client can
        # still send the server a value for it, which lands in the session's state before the script runs.
        at.session_state["backend_url"] = stranger.url
        at = is_alive_then_predict(at.run())
        assert not at.exception and not at.error
        assert stranger.seen == []
        assert at.text_input(key="backend_url").value == configured.url
        assert at.sidebar.success[0].value == "Backend is alive"
        assert configured.keys() == {SERVER_KEY}


def test_the_client_refuses_another_backend_when_the_url_is_fixed(settings_env):
    """The last line of defence: every call to a backend goes through get_client, which checks the URL."""
    with KitBackend() as configured, KitBackend() as stranger:
        settings_env(BACKEND_URL=configured.url, YOLO_SERVICE_UI_BACKEND_EDITABLE="false")
        script = f"""
            import sys
            sys.path.insert(0, {str(ROOT / "frontend")!r})
            import app
            import streamlit as st
            notice, models = app.check_backend({stranger.url!r})
            st.error(notice.message)
            st.text(notice.said)
            notice, models = app.check_backend({configured.url!r})
            st.success(notice.message)
        """
        at = AppTest.from_string(script, default_timeout=60).run()
        assert not at.exception
        assert at.error[0].value == "This UI cannot call that backend."
        assert at.text[0].value == f"this UI talks only to its configured backend, {configured.url}"
        assert at.success[0].value == "Backend is alive"
        assert stranger.seen == [] and configured.paths()[:1] == ["/health"]


# --- How much of an answer is read --------------------------------------------------------------


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_an_endless_body_is_cut_at_the_size_cap(settings_env):
    with EndlessBackend() as endless:
        settings_env(BACKEND_URL=endless.url, YOLO_SERVICE_CLIENT_MAX_RESPONSE_BYTES=str(4 * MiB))
        before = peak_rss_mib()
        at = page()  # the model list: the first request the page makes
        at.button(key="is_alive").click().run()
        assert not at.exception
        assert endless.closed_by_client.wait(30)  # the client hung up: it stopped reading
        said = [text.value for text in at.text]
        assert any("answered more than 4,194,304 bytes" in text for text in said), said
        assert at.sidebar.error[0].value.startswith("The backend failed to answer")
        grown = peak_rss_mib() - before
        # Reading stops at the cap (plus one 64 KiB chunk); what the server "sent" beyond it sat in socket buffers.
        print(f"\nendless body, 4 MiB cap: server sent {endless.sent / MiB:.1f} MiB, peak RSS grew {grown:.0f} MiB")
        assert grown < 256, grown  # unbounded, the same test grew the process by GBs


def test_a_body_that_trickles_forever_ends_at_the_whole_answer_deadline(settings_env):
    """One byte every 0.2 s never trips a per-read timeout; the deadline of the whole answer ends it."""
    with EndlessBackend(trickle=0.2) as trickling:
        settings_env(BACKEND_URL=trickling.url, YOLO_SERVICE_UI_TIMEOUT="1")
        started = time.monotonic()
        at = page()
        at.button(key="is_alive").click().run()
        elapsed = time.monotonic() - started
        assert not at.exception
        assert at.sidebar.error[0].value.startswith("The backend did not answer within 1 s")
        assert at.sidebar.text[0].value == f"Backend at {trickling.url}"
        assert trickling.closed_by_client.wait(30)
        print(f"\ntrickling body, 1 s deadline: {trickling.sent} bytes read, page answered in {elapsed:.1f} s")
        assert elapsed < 30  # two requests (models, then Is alive), each cut at 1 s; per read, never


# --- What is rendered ---------------------------------------------------------------------------

MARKDOWN_ELEMENTS = ("markdown", "error", "warning", "success", "info", "caption", "title", "header", "subheader")


def rendered_as_markdown(at: AppTest) -> list[str]:
    """Every string on the page that Streamlit renders as Markdown (boxes, captions, markdown, labels)."""
    bodies = [str(element.value) for kind in MARKDOWN_ELEMENTS for element in getattr(at, kind)]
    labels = [
        widget.label
        for kind in ("selectbox", "multiselect", "text_input", "button", "radio", "metric")
        for widget in getattr(at, kind)
    ]
    return bodies + labels


@pytest.fixture
def markdown_backend(settings_env):
    """A kit look-alike whose every string is Markdown and HTML pointing at an attacker (itself)."""
    with KitBackend() as backend:
        evil = markdown_payload(backend.url)
        backend.strings = KitStrings(
            # a version is at most 100 characters (the client refuses longer), so it gets a short payload
            version=f"9.9 [key]({backend.url}/k) ![]({backend.url}/v.png)",
            models=[f"model {evil}"],
            classes=[f"class {evil}", "plain"],
            engine=f"[e]({backend.url}/e)",
        )
        settings_env(BACKEND_URL=backend.url)
        yield backend, evil


def test_backend_strings_are_shown_as_text_never_markdown(markdown_backend):
    backend, evil = markdown_backend
    at = page()
    at.button(key="is_alive").click().run()
    assert not at.exception
    version = backend.strings.version
    serving = f"default model {f'model {evil}'[:100]} on {backend.strings.engine} (f32)"  # names cut at 100
    assert [t.value for t in at.sidebar.text] == [f"yolo-service {version}, {serving}", f"Models: model {evil}"]
    assert at.selectbox(key="model").options == ["(server default)", f"model {evil}"]  # options are plain text
    at.selectbox(key="model").set_value(f"model {evil}").run()
    assert at.multiselect(key="classes").options == [f"class {evil}", "plain"]
    at.radio(key="source").set_value("Try a sample").run()
    at.button(key="predict").click().run()
    assert not at.exception and not at.error
    assert at.main.text[-1].value.endswith(f"— model model {evil}")  # the image's caption, as text
    assert list(at.dataframe[0].value["class_name"]) == [f"class {evil}", "plain"]
    assert not [text for text in rendered_as_markdown(at) if backend.url in text]


def test_an_error_detail_is_shown_as_text(markdown_backend):
    backend, evil = markdown_backend
    backend.strings.predict_error = (422, f"unknown class {evil}", "InvalidRequest")
    at = page()
    at.radio(key="source").set_value("Try a sample").run()
    at.button(key="predict").click().run()
    assert not at.exception
    assert at.error[0].value == "The backend refused the request:"
    assert at.main.text[-1].value == f"unknown class {evil}"
    assert not [text for text in rendered_as_markdown(at) if backend.url in text]
