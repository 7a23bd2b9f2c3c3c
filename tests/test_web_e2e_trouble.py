"""The page when things go wrong, in real headless Chromium: a server that stops mid-stream
and comes back, limits that speak, messages in a fan's words, the phone's geometry."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from batplots.web import WebConfig, create_app
from tests.fakegen import FakeEngine, HeldEngine, fake_writer
from tests.test_web_e2e import DESKTOP, PHONE, STEP_MS, PageWatch, browser, expect, model_passages  # noqa: F401
from tests.webserver import WAIT_S, LiveServer, wait_until

REPO = Path(__file__).resolve().parents[1]

# A server in its own process (so the test can kill it): HeldEngine holds every generation
# after three pieces until it is cancelled ("held"), FakeEngine writes straight on ("free").
SERVER_SCRIPT = """
import sys, uvicorn
from tests.fakegen import FakeEngine, HeldEngine, fake_writer
from batplots.web import WebConfig, create_app
engine = HeldEngine(after=3) if sys.argv[3] == "held" else FakeEngine()
app = create_app(WebConfig(db_path=sys.argv[1], writer=fake_writer(engine)))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db, port, mode):
    proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, str(db), str(port), mode], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    deadline = time.monotonic() + 60  # a Python start with the app's imports: generous
    while not up():
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    return proc


def kill(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(WAIT_S)


def test_a_server_killed_mid_stream_is_explained_and_the_page_resumes_when_it_is_back(browser, tmp_path):
    db, port = tmp_path / "crash.sqlite3", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(db, port, "held")
    try:
        page = browser.new_page(viewport=DESKTOP)
        page.set_default_timeout(STEP_MS)
        watch = PageWatch(page, url)
        page.goto(url)
        expect(page.locator("#model-status")).to_contain_text("Model ready")
        page.fill("#next-text", "Batman and Robin race to the Batmobile.")
        page.click("#continue-btn")
        draft = page.locator("#story .passage.draft")
        expect(draft).to_have_text(re.compile(r"\w+ \w+"))  # the model is under way, held by the engine

        kill(proc)  # mid-stream, no chance to say goodbye
        status = page.locator("#status")
        expect(status).to_contain_text("The server stopped answering", timeout=STEP_MS)
        expect(status).not_to_contain_text(re.compile("fetch|network error", re.I))
        expect(page.locator("#story .passage.draft")).to_have_count(0)  # the unsaved half-draft is gone
        expect(page.locator("#story .passage.user .passage-text")).to_have_text(["Batman and Robin race to the Batmobile."])
        expect(page.locator("#model-status")).to_contain_text("not answering", timeout=STEP_MS)
        expect(page.locator("#continue-btn")).to_be_disabled()
        page.fill("#next-text", "Meanwhile, the Joker laughs.")  # typed while the server is away

        proc = start_server(db, port, "free")  # same database, same address
        expect(page.locator("#model-status")).to_contain_text("Model ready", timeout=STEP_MS)
        expect(status).to_contain_text("The server is back")
        expect(page.locator("#continue-btn")).to_be_enabled()
        expect(page.locator("#next-text")).to_have_value("Meanwhile, the Joker laughs.")  # kept
        page.click("#continue-btn")  # no reload needed
        expect(model_passages(page)).to_have_count(1)
        expect(status).to_contain_text("Your turn")
        watch.check(expected=["ERR_CONNECTION_REFUSED", "ERR_INCOMPLETE_CHUNKED_ENCODING", "ERR_EMPTY_RESPONSE",
                              "ERR_CONNECTION_RESET", "Failed to load resource"])
        page.close()
    finally:
        kill(proc)


def test_a_server_that_stops_while_nobody_writes_is_shown_as_unavailable(browser, tmp_path):
    db, port = tmp_path / "idle.sqlite3", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(db, port, "free")
    try:
        page = browser.new_page(viewport=DESKTOP)
        page.set_default_timeout(STEP_MS)
        page.goto(url)
        expect(page.locator("#model-status")).to_contain_text("Model ready")
        expect(page.locator("#story-title")).to_have_text("Untitled episode")
        kill(proc)
        expect(page.locator("#model-status")).to_contain_text("not answering", timeout=STEP_MS)  # the watch poll noticed
        expect(page.locator("#continue-btn")).to_be_disabled()
        proc = start_server(db, port, "free")
        expect(page.locator("#model-status")).to_contain_text("Model ready", timeout=STEP_MS)
        expect(page.locator("#continue-btn")).to_be_enabled()
        page.close()
    finally:
        kill(proc)
