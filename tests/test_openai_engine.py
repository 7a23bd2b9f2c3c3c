"""The remote engine against real OpenAI-compatible servers on 127.0.0.1:
llama-cpp-python's own server (a subprocess, on a tiny GGUF) and another batplots
app's /v1; and against servers that are down, slow, or answer errors."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from batplots.model.engine import Settings
from batplots.model.engine.base import EngineError
from batplots.model.engine.openai_engine import OpenAIEngine
from batplots.model.engine.transformers_engine import TransformersEngine
from batplots.web.openai_api import model_id
from batplots.story import passage as passagelib
from batplots.story.passage import Passage, consume
from tests import tiny
from tests.tiny_gguf import write_gguf
from tests.webserver import make_server, new_story, sse_events  # noqa: F401  (fixture)

STORY = "Batman and Robin slide down the Batpoles. The Joker laughs at the museum."
SERVER_START_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_cpp_server(tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on a tiny GGUF, as a subprocess."""
    pytest.importorskip("llama_cpp")
    gguf = write_gguf(tiny.trained_llama(), tmp_path_factory.mktemp("srv") / "tiny.gguf")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias",
                             "tiny", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024",
                             "--n_threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + SERVER_START_S
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_continues_a_story_through_llama_cpp_server(llama_cpp_server):
    engine = OpenAIEngine(llama_cpp_server, "tiny", timeout=30)
    assert engine.list_models() == ["tiny"]
    draft, result = consume(Passage(engine, STORY, Settings(sentences=2, seed=3, temperature=0.5)))
    assert len(result.sentences) == 2 and draft == result.text and result.text.startswith(" ")
    assert result.first_piece_seconds is not None and result.tokens >= 4
    again = passagelib.run(engine, STORY, Settings(sentences=2, seed=3, temperature=0.5))
    assert again.text == result.text  # the seed travels with the request
    assert engine.describe() == {"engine": "openai", "base_url": llama_cpp_server, "model": "tiny"}


def test_a_batplots_app_serves_another_through_v1(make_server):  # noqa: F811
    local = TransformersEngine(tiny.trained_llama(), tiny.tokenizer(), label="tiny-llama")
    srv = make_server(engine=local)
    remote = OpenAIEngine(f"{srv.url}/v1", model_id(local), timeout=30)
    settings = Settings(sentences=2, seed=5, temperature=0)
    result = passagelib.run(remote, STORY, settings)
    assert len(result.sentences) == 2
    assert result.text == passagelib.run(local, STORY, settings).text  # greedy: the same model writes the same text
    with pytest.raises(EngineError, match=r"answered 404.*'nope' is not served here.*is --model 'nope' served"):
        passagelib.run(OpenAIEngine(f"{srv.url}/v1", "nope"), STORY, settings)
    with pytest.raises(EngineError, match="answered 404"):
        passagelib.run(OpenAIEngine(srv.url, model_id(local)), STORY, settings)  # forgot the /v1


def test_server_down_is_a_clear_error_and_the_story_is_untouched(make_server):  # noqa: F811
    dead = f"http://127.0.0.1:{free_port()}/v1"
    engine = OpenAIEngine(dead, "batman66", timeout=5)
    with pytest.raises(EngineError, match=r"model server at http://127\.0\.0\.1:\d+/v1 is not reachable.*is it running"):
        passagelib.run(engine, STORY, Settings(seed=1))
    srv = make_server(engine=engine)
    c = srv.client
    story = new_story(c, text=STORY)
    r = c.post(f"/api/stories/{story['id']}/continue", json={"version": story["version"]})
    assert r.status_code == 502 and "not reachable" in r.json()["detail"]
    with c.stream("POST", f"/api/stories/{story['id']}/continue", json={"version": story["version"]},
                  headers={"Accept": "text/event-stream"}) as streamed:
        events = sse_events(streamed)
    assert events[-1][0] == "error" and "not reachable" in events[-1][1]["message"]
    assert c.get(f"/api/stories/{story['id']}").json() == story  # nothing saved, nothing lost
    assert c.get("/healthz").status_code == 200  # the server stays up


# How long a slow server takes: far beyond the engine's timeout, so a client that gave up
# at its own deadline and one that waited for the server differ on any machine's speed.
SLOW_SERVER_S = 30
ENGINE_TIMEOUT_S = 0.5


class _SlowHandler(BaseHTTPRequestHandler):
    """Answers POSTs after `delay` seconds, or trickles a chunk every `trickle` seconds;
    either way for at most SLOW_SERVER_S, or until the test ends (`done`)."""

    delay = 0.0
    trickle = 0.0
    done: threading.Event

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            if self.delay and self.done.wait(min(self.delay, SLOW_SERVER_S)):
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            started = time.monotonic()
            while time.monotonic() - started < SLOW_SERVER_S:
                self.wfile.write(b'data: {"choices": [{"text": " Holy", "index": 0}]}\n\n')
                self.wfile.flush()
                if self.done.wait(self.trickle or SLOW_SERVER_S):
                    return
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_server():
    servers, done = [], threading.Event()

    def start(delay=0.0, trickle=0.0):
        handler = type("Handler", (_SlowHandler,), {"delay": delay, "trickle": trickle, "done": done})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    done.set()  # handlers still waiting on a client that gave up return now
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("delay,trickle,message", [
    (SLOW_SERVER_S, 0.0, r"did not answer within 0\.5 s"),  # silent
    (0.0, 0.1, r"too slow: no complete answer within 0\.5 s"),  # a token now and then, never done
])
def test_a_slow_server_times_out(slow_server, delay, trickle, message):
    engine = OpenAIEngine(slow_server(delay=delay, trickle=trickle), "batman66", timeout=ENGINE_TIMEOUT_S)
    started = time.monotonic()
    with pytest.raises(EngineError, match=message):
        passagelib.run(engine, STORY, Settings(seed=1, max_new_tokens=500, max_context=2048))
    waited = time.monotonic() - started
    # At its own deadline: not before it, and not when the server would have finished.
    assert ENGINE_TIMEOUT_S <= waited < SLOW_SERVER_S / 2, waited


def test_bad_urls_are_refused_and_the_request_carries_every_setting(slow_server):
    from batplots.model.weights import ModelError

    with pytest.raises(ModelError, match="--base-url must be an http"):
        OpenAIEngine("127.0.0.1:8000/v1", "m")
    engine = OpenAIEngine(slow_server(), "m", timeout=5)
    assert engine.payload("x", Settings(top_k=7, repetition_penalty=1.2), 9) | {"prompt": "x"} == {
        "model": "m", "prompt": "x", "max_tokens": 200, "temperature": 0.8, "top_p": 0.95, "top_k": 7,
        "repetition_penalty": 1.2, "repeat_penalty": 1.2, "seed": 9, "stream": True, "ignore_eos": True}
