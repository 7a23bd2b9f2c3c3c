"""README "Scaling out", as written there: a llama.cpp server (llama-cpp-python's, on a
tiny GGUF) serves the model; two `batplots serve --engine openai` instances on different
ports share one PostgreSQL database (accounts included); a reverse proxy passes the Host
and spreads requests over both (a minimal round-robin proxy: the test machines have no
nginx). Every request is real HTTP on 127.0.0.1."""

import itertools
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from click.testing import CliRunner

from batplots.cli.main import main
from tests.appinstance import REPO
from tests.test_openai_engine import llama_cpp_server  # noqa: F401  (fixture)

SERVE_START_S = 60
HOST = "plots.example.com"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def start_serve(db: str, base_url: str):
    """`batplots serve` as the README runs it (a free port here); (process, its URL)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "batplots.cli.main", "serve", "--port", "0", "--db", db, "--engine", "openai",
         "--base-url", base_url, "--model", "tiny", "--allowed-host", HOST, "--no-copy-guard", "--takes", "1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen, deadline = [], time.monotonic() + SERVE_START_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            seen.append(lines.get(timeout=0.5))
        except queue.Empty:
            continue
        found = re.search(r"serving on (http://127\.0\.0\.1:\d+)/", seen[-1])
        if found:
            return proc, found.group(1)
    stop(proc)
    raise AssertionError(f"serve never printed its address: {seen}")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    proc.stdout.close()


class RoundRobinProxy(ThreadingHTTPServer):
    """What the reverse proxy does for batplots: each request to the next instance, the
    Host and the client address passed on, the answer passed back as it is."""

    daemon_threads = True

    def __init__(self, backends: list[str]):
        self.backends = backends
        self.turn = itertools.count()
        self.served: list[str] = []
        self.client = httpx.Client(timeout=60, follow_redirects=False)
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _forward(self):
        proxy: RoundRobinProxy = self.server
        backend = proxy.backends[next(proxy.turn) % len(proxy.backends)]
        proxy.served.append(backend)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.update({"Host": self.headers["Host"], "X-Forwarded-For": self.client_address[0],
                        "X-Forwarded-Proto": "http"})
        r = proxy.client.request(self.command, backend + self.path, headers=headers, content=body)
        self.send_response(r.status_code)
        for k, v in r.headers.multi_items():
            if k.lower() not in HOP_BY_HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    do_GET = do_POST = do_PATCH = do_DELETE = _forward


def test_the_scaling_out_recipe_two_instances_one_postgresql_a_llama_cpp_server_a_proxy(
        pg_server, llama_cpp_server):  # noqa: F811
    db = pg_server.create_database("recipe")
    added = CliRunner().invoke(main, ["users", "add", "alice", "--db", db, "--password-stdin"],
                               input="alice-secret-1\n")
    assert added.exit_code == 0, added.output
    instances = []
    try:
        for _ in range(2):
            instances.append(start_serve(db, llama_cpp_server))
        proxy = RoundRobinProxy([url for _, url in instances])
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        front = f"http://127.0.0.1:{proxy.server_address[1]}"
        with httpx.Client(base_url=front, timeout=60, headers={"Host": HOST}) as c:
            login = c.post("/login", data={"name": "alice", "password": "alice-secret-1"})
            assert login.status_code == 303
            assert c.get("/api/session").json()["user"] == "alice"  # a session made by the other instance
            story = c.post("/api/stories", json={"title": "Two instances"}).json()
            story = c.post(f"/api/stories/{story['id']}/turns",
                           json={"text": "Batman and Robin slide down the Batpoles.", "version": story["version"]}
                           ).json()
            moved = c.post(f"/api/stories/{story['id']}/continue", json={"version": story["version"]})
            assert moved.status_code == 200, moved.text
            moved = moved.json()
            assert [t["author"] for t in moved["turns"]] == ["user", "model"] and moved["turns"][1]["text"].strip()
            for _ in range(2):  # read back through each instance
                assert c.get(f"/api/stories/{story['id']}").json() == moved
            stale = c.post(f"/api/stories/{story['id']}/turns", json={"text": "Robin.", "version": story["version"]})
            assert stale.status_code == 409 and stale.json()["version"] == moved["version"]
        assert set(proxy.served) == {url for _, url in instances}  # both instances answered
        proxy.shutdown()
        proxy.server_close()
        proxy.client.close()
    finally:
        for proc, _ in instances:
            stop(proc)
