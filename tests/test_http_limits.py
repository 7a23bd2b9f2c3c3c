"""The served HTTP stack's limits (issue 23): request line and headers over
MAX_HEADER_BYTES get 431 and a closed connection; a connection whose headers do not
arrive in time is closed; ordinary and kept-alive requests are untouched. Real uvicorn
(the Config `batplots serve` uses) on 127.0.0.1, raw sockets, every wait bounded."""

import socket
import threading
import time

import pytest
import uvicorn

from batplots.web import serving
from batplots.web.app import WebConfig, create_app
from tests.fakegen import FakeEngine, fake_writer

WAIT_S = 20


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setattr(serving.LimitedH11, "header_timeout_s", 1.0)  # the test's bound, not the product's
    app = create_app(WebConfig(db_path=tmp_path / "s.sqlite3", writer=fake_writer(FakeEngine())))
    srv = uvicorn.Server(serving.server_config(app, "127.0.0.1", 0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    yield srv.servers[0].sockets[0].getsockname()[1]
    srv.should_exit = True
    thread.join(WAIT_S)


def connect(port) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    return s


def read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def test_headers_over_the_limit_get_431_naming_it(server):
    with connect(server) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (serving.MAX_HEADER_BYTES + 10))
        reply = read_all(s)  # the server closes: nothing more is buffered
    assert reply.startswith(b"HTTP/1.1 431 ") and f"at most {serving.MAX_HEADER_BYTES}".encode() in reply


def test_an_unfinished_header_is_closed_after_the_header_timeout_and_keep_alive_still_works(server):
    with connect(server) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and never the rest
        assert read_all(s) == b""  # closed without an answer (recv would otherwise wait WAIT_S and raise)
    with connect(server) as s:
        s.settimeout(WAIT_S)
        for _ in range(2):  # two requests on one kept-alive connection
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                reply += s.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200 ")
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the next request stalls
        assert read_all(s) == b""


def test_a_connection_that_sends_nothing_is_closed(server):
    with connect(server) as s:
        assert read_all(s) == b""
