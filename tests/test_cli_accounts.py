"""`batplots users ...` and serve's refusals, through the real click CLI on real SQLite files."""

import json
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from click.testing import CliRunner

from batplots.store import accounts
from batplots.cli.main import main
from batplots.store.stories import Store

REPO = Path(__file__).resolve().parents[1]
SERVE_START_S = 60


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_users_add_list_passwd_remove(tmp_path):
    db = str(tmp_path / "s.sqlite3")
    added = run("users", "add", "alice", "--db", db, input="alice-secret-1\nalice-secret-1\n")
    assert added.exit_code == 0, added.output
    assert "added user alice" in added.output and "alice-secret-1" not in added.output  # never echoed
    store = Store(db)
    assert accounts.verify(store, "alice", "alice-secret-1")["name"] == "alice"
    stored = sqlite3.connect(db).execute("SELECT password_hash FROM users").fetchone()[0]
    assert stored.startswith("$argon2id$") and "alice-secret-1" not in stored
    assert run("users", "add", "bob", "--db", db, "--password-stdin", input="bob-secret-22\n").exit_code == 0
    listed = json.loads(run("users", "list", "--db", db, "--json").output)
    assert [u["name"] for u in listed] == ["alice", "bob"] and listed[0]["stories"] == 0
    assert "alice\t0 stories" in run("users", "list", "--db", db).output

    mismatch = run("users", "passwd", "alice", "--db", db, input="new-secret-99\nnot-the-same\nnew-secret-99\n"
                                                                   "new-secret-99\n")
    assert mismatch.exit_code == 0 and "do not match" in mismatch.output.lower()
    assert accounts.verify(store, "alice", "new-secret-99") and not accounts.verify(store, "alice", "alice-secret-1")

    bob_id = accounts.verify(store, "bob", "bob-secret-22")["id"]
    store.for_owner(bob_id).create("Bob's")
    refused = run("users", "remove", "bob", "--db", db, input="n\n")
    assert refused.exit_code == 1 and "delete their 1 stories?" in refused.output
    removed = run("users", "remove", "bob", "--db", db, "--yes")
    assert removed.exit_code == 0 and "removed user bob and 1 stories" in removed.output
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM stories").fetchone()[0] == 0


def test_users_errors_say_what_is_allowed(tmp_path):
    db = str(tmp_path / "s.sqlite3")
    short = run("users", "add", "alice", "--db", db, "--password-stdin", input="short\n")
    assert short.exit_code == 1 and f"{accounts.MIN_PASSWORD_CHARS} to {accounts.MAX_PASSWORD_CHARS} characters" in short.output
    bad = run("users", "add", "al ice!", "--db", db, "--password-stdin", input="long-enough-1\n")
    assert bad.exit_code == 1 and "letters, digits" in bad.output
    assert run("users", "add", "alice", "--db", db, "--password-stdin", input="long-enough-1\n").exit_code == 0
    twice = run("users", "add", "ALICE", "--db", db, "--password-stdin", input="long-enough-1\n")
    assert twice.exit_code == 1 and "exists already (names ignore case)" in twice.output
    for command in (("remove", "nobody", "--yes"), ("passwd", "nobody", "--password-stdin")):
        r = run("users", *command, "--db", db, input="long-enough-1\n")
        assert r.exit_code == 1 and "no user named 'nobody'" in r.output
    assert "no users yet" in run("users", "list", "--db", str(tmp_path / "empty.sqlite3")).output


def test_claim_unowned_gives_loopback_stories_to_a_user(tmp_path):
    db = str(tmp_path / "s.sqlite3")
    Store(db).create("Written on loopback")
    r = run("users", "add", "alice", "--db", db, "--password-stdin", "--claim-unowned", input="alice-secret-1\n")
    assert r.exit_code == 0 and "1 stories without an owner are now theirs" in r.output
    alice = accounts.verify(Store(db), "alice", "alice-secret-1")
    assert [s["title"] for s in Store(db).for_owner(alice["id"]).list()] == ["Written on loopback"]


def test_serve_refuses_a_network_address_without_users(tmp_path):
    db = tmp_path / "s.sqlite3"
    r = run("serve", "--host", "0.0.0.0", "--port", "0", "--db", str(db))
    assert r.exit_code == 1
    assert f"batplots users add NAME --db {db}" in r.output and "--no-auth" in r.output
    short_key = run("serve", "--host", "127.0.0.1", "--port", "0", "--db", str(db), "--api-key", "abc")
    assert short_key.exit_code == 1 and "at least 16" in short_key.output
    bad_host = run("serve", "--port", "0", "--db", str(db), "--allowed-host", "http://x.example")
    assert bad_host.exit_code == 1 and "--allowed-host" in bad_host.output


def test_serve_refuses_a_damaged_database(tmp_path):
    db = tmp_path / "s.sqlite3"
    store = Store(db)
    for i in range(40):
        store.add_turn(store.create(f"Episode {i}")["id"], 1, "user", "Robin polishes the Batmobile. " * 40)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:
        f.seek(page * 2)
        f.write(b"\x00\xff" * page)
    r = run("serve", "--port", "0", "--db", str(db))
    assert r.exit_code == 1 and "is damaged (PRAGMA quick_check" in r.output and ".recover" in r.output


def start_serve(db, *options):
    """`batplots serve` on 127.0.0.1 in a subprocess: (process, url, stderr lines so far).
    The model is a remote one at a closed local port: these tests never need it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "batplots.cli.main", "serve", "--port", "0", "--db", str(db), "--engine", "openai",
         "--base-url", "http://127.0.0.1:9/v1", "--model", "none", *options],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen, deadline = [], time.monotonic() + SERVE_START_S
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.5))
        except queue.Empty:
            continue
        found = re.search(r"serving on (http://127\.0\.0\.1:\d+)/", seen[-1])
        if found:
            return proc, found.group(1), seen
    stop(proc)
    raise AssertionError(f"serve never printed its address: {seen}")


def stop(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def test_serve_wires_accounts_hosts_and_the_key_end_to_end(tmp_path):
    """Loopback answering a proxy's name (--allowed-host) is served like a network
    address: Host allowlist, login, /v1 key; all over real HTTP on 127.0.0.1."""
    db = tmp_path / "s.sqlite3"
    assert run("users", "add", "alice", "--db", str(db), "--password-stdin", input="alice-secret-1\n").exit_code == 0
    key = "serve-key-0123456789"
    proc, url, _ = start_serve(db, "--allowed-host", "plots.example.com", "--api-key", key)
    try:
        host = {"Host": "plots.example.com"}
        with httpx.Client(base_url=url, timeout=10, headers=host) as c:
            assert c.get("/api/stories").status_code == 401
            page = c.get("/", headers={"Accept": "text/html"})
            assert page.status_code == 303 and page.headers["location"].startswith("/login")
            assert c.get("/api/stories", headers={"Host": "evil.example"}).status_code == 403
            login = c.post("/login", data={"name": "alice", "password": "alice-secret-1"})
            assert login.status_code == 303 and "HttpOnly" in login.headers["set-cookie"]
            assert c.get("/api/session").json()["user"] == "alice"  # the client kept the cookie
            assert c.post("/v1/completions", json={"prompt": "x", "max_tokens": 1}).status_code == 401
    finally:
        stop(proc)


def test_serve_no_auth_warns_at_start_and_on_the_page(tmp_path):
    proc, url, lines = start_serve(tmp_path / "s.sqlite3", "--allowed-host", "batcave.test", "--no-auth")
    try:
        warning = next(line for line in lines if "WARNING: --no-auth" in line)
        assert "anyone who can reach it can read, change and delete every story" in warning
        with httpx.Client(base_url=url, timeout=10, headers={"Host": "batcave.test"}) as c:
            info = c.get("/api/session").json()
            assert info["accounts"] is False and "no login" in info["warning"]
            assert c.post("/api/stories", json={}).status_code == 201
    finally:
        stop(proc)
