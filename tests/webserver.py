"""A real uvicorn server on 127.0.0.1 (a free port) in a thread, and helpers for web tests."""

from __future__ import annotations

import json
import threading
import time
from contextlib import ExitStack

import httpx
import pytest
import uvicorn

from batplots.web import WebConfig, create_app
from tests.fakegen import FakeEngine, fake_writer

# Generous bounds: a passing test never waits them out, and a slow or busy machine
# must not turn a wait into a failure.
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15  # a server still busy after this is left to its daemon thread
WAIT_S = 30  # bound for every poll loop


class LiveServer:
    def __init__(self, app):
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="on", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)
        self.url = ""

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(STOP_TIMEOUT_S)


@pytest.fixture
def make_server(tmp_path):
    with ExitStack() as stack:
        def make(engine=None, load_engine=None, db_name="stories.sqlite3", security=None, guard=None):
            """A live app over engine (default: a FakeEngine), or over the engine
            load_engine() returns, loaded in the background as `serve` loads its Writer."""
            if engine is None and load_engine is None:
                engine = FakeEngine()
            config = WebConfig(db_path=tmp_path / db_name)
            if load_engine is None:
                config.writer = fake_writer(engine, guard=guard)
            else:
                config.load_writer = lambda: fake_writer(load_engine(), guard=guard)
            if security is not None:
                config.security = security
            app = create_app(config)
            srv = stack.enter_context(LiveServer(app))
            srv.engine = engine
            srv.client = stack.enter_context(httpx.Client(base_url=srv.url, timeout=WAIT_S))
            return srv
        yield make


@pytest.fixture
def srv(make_server):
    return make_server()


def wait_until(predicate, what):
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def new_story(c, title=None, text="Commissioner Gordon lifts the Bat-phone."):
    story = c.post("/api/stories", json={"title": title} if title else {}).json()
    if text:
        story = c.post(f"/api/stories/{story['id']}/turns", json={"text": text, "version": story["version"]}).json()
    return story


def sse_events(response):
    """Parse a text/event-stream response into [(event, data)]."""
    events, event, data = [], None, ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif line == "" and event:
            events.append((event, json.loads(data)))
            event, data = None, ""
    return events


def assert_error(response, status, *fragments):
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for fragment in fragments:
        assert fragment in detail, (fragment, detail)
    return response.json()
