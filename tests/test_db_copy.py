"""`batplots db migrate|copy` and `--db URL` errors, through the real click CLI, from real
SQLite files into a real PostgreSQL server (tests/pgserver.py)."""

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from click.testing import CliRunner

from batplots.store import accounts
from batplots.store import copy as storecopy
from batplots.cli.main import main
from batplots.store.stories import Invalid, Store, Unavailable
from tests.appinstance import REPO

INTERRUPTED_STORIES = 400  # enough that a copy killed after its first story is far from done
KILL_WAIT_S = 60


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def stores():
    opened = []

    def open_(target):
        opened.append(Store(target))
        return opened[-1]
    yield open_
    for s in opened:
        s.close()


def fill(store: Store) -> dict:
    """Stories of the local writer and of two users: model passages with settings, an
    edit, an undone passage waiting on the redo stack, awkward text; and a live session."""
    alice = accounts.add_user(store, "alice", "alice-secret-1")
    accounts.add_user(store, "Bob", "bob-secret-22")
    token = accounts.start_session(store, alice["id"])
    local = store.create("Riddle me this: 100% ‘quoted’ 🦇")
    s = store.add_turn(local["id"], 1, "user", "Batman broods.\nRobin waits.")
    s = store.add_turn(local["id"], s["version"], "model", "The Joker laughs.", settings={"temperature": 0.8},
                       seed=2 ** 40, meta={"flags": ["x"], "why": "fewest copies"})
    s = store.edit_turn(local["id"], s["version"], s["turns"][0]["id"], "Batman broods, edited.")
    s = store.add_turn(local["id"], s["version"], "user", "Undone for now.")
    store.undo(local["id"], s["version"])
    mine = store.for_owner(alice["id"])
    a = mine.create("Alice's caper")
    mine.add_turn(a["id"], 1, "user", "Catwoman purrs.")
    store.create()  # empty, untitled
    return {"alice": alice, "token": token}


def snapshot(store: Store) -> dict:
    """Every story as each owner's API shows it, and the share links."""
    with store.reading() as conn:
        owners = [None] + [row[0] for row in conn.execute("SELECT id FROM users ORDER BY id")]
    out = {}
    for owner in owners:
        view = store.for_owner(owner)
        out[owner] = [view.get(s["id"]) for s in view.list()]
        for story in out[owner]:
            assert store.get_by_share(story["share_id"]) == story
    return out


def test_copy_moves_everything_verifies_it_and_the_copy_works_on(tmp_path, pg_url, stores):
    path = str(tmp_path / "source.sqlite3")
    source = stores(path)
    made = fill(source)
    done = run("db", "copy", "--from", path, "--to", pg_url)
    assert done.exit_code == 0, done.output
    assert "copied 3 stories (0 were already there)" in done.output and "checksums match" in done.output
    assert "DIFFERENT" not in done.output
    target = stores(pg_url)
    assert snapshot(target) == snapshot(source)
    assert storecopy.summary(target) == storecopy.summary(source)
    # Logins and sessions came along; names still ignore case.
    assert accounts.verify(target, "ALICE", "alice-secret-1")["id"] == made["alice"]["id"]
    assert accounts.session_user(target, made["token"])["name"] == "alice"
    # New rows get new ids above the copied ones: redo, then new passages and users.
    story = target.get(next(s["id"] for s in target.list() if s["title"].startswith("Riddle")))
    assert story["redo_count"] == 1
    story = target.redo(story["id"], story["version"])
    story = target.add_turn(story["id"], story["version"], "user", "A new passage after the copy.")
    assert len({t["id"] for t in story["turns"]}) == len(story["turns"]) == 4
    # Again: nothing to copy, and the target's new rows are reported, not hidden.
    again = run("db", "copy", "--from", path, "--to", pg_url)
    assert again.exit_code == 1 and "DIFFERENT" in again.output and "does not match its source" in again.output
    assert accounts.add_user(target, "carol", "carol-secret-3")["id"] > made["alice"]["id"] + 1


def test_an_interrupted_copy_finishes_when_run_again(tmp_path, pg_url, stores):
    path = str(tmp_path / "big.sqlite3")
    source = stores(path)
    with source.transaction() as conn:  # many small stories, written at once
        for i in range(INTERRUPTED_STORIES):
            conn.execute("INSERT INTO stories (id, title, version, settings, share_id, created_at, updated_at) "
                         "VALUES (?, ?, 3, '{}', ?, ?, ?)", (f"s{i:04d}", f"Story {i}", f"share-{i}",
                                                             f"2026-01-01T00:00:{i % 60:02d}.000Z",
                                                             "2026-01-02T00:00:00.000Z"))
            for pos in range(2):
                conn.execute("INSERT INTO turns (story_id, position, author, text, created_at) "
                             "VALUES (?, ?, 'user', ?, '2026-01-01T00:00:00.000Z')", (f"s{i:04d}", pos, f"Pow {i}."))
    proc = subprocess.Popen([sys.executable, "-c", "from batplots.cli.main import main; main()", "db", "copy",
                             "--from", path, "--to", pg_url], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    copied = 0
    try:
        deadline = time.monotonic() + KILL_WAIT_S
        with psycopg.connect(pg_url, autocommit=True) as conn:
            while copied == 0 and time.monotonic() < deadline and proc.poll() is None:
                try:
                    copied = conn.execute("SELECT COUNT(*) FROM stories").fetchone()[0]
                except psycopg.errors.UndefinedTable:
                    pass  # not migrated yet
                time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    with psycopg.connect(pg_url) as conn:
        at_kill = conn.execute("SELECT COUNT(*) FROM stories").fetchone()[0]
        # Only whole stories: each copied story has both its passages.
        assert conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 2 * at_kill
    print(f"killed after {at_kill} of {INTERRUPTED_STORIES} stories")
    assert 0 < at_kill < INTERRUPTED_STORIES, "the copy was not interrupted midway; make the source bigger"
    done = run("db", "copy", "--from", path, "--to", pg_url)
    assert done.exit_code == 0, done.output
    assert f"copied {INTERRUPTED_STORIES - at_kill} stories ({at_kill} were already there)" in done.output
    assert storecopy.summary(stores(pg_url)) == storecopy.summary(source)


def test_copy_refuses_a_target_holding_other_stories_and_bad_arguments(tmp_path, pg_url, stores):
    path = str(tmp_path / "source.sqlite3")
    stores(path).create("Source")
    stores(pg_url).create("Someone else's")
    refused = run("db", "copy", "--from", path, "--to", pg_url)
    assert refused.exit_code == 1 and "1 stories that are not in the source" in refused.output
    missing = run("db", "copy", "--from", str(tmp_path / "nope.sqlite3"), "--to", pg_url)
    assert missing.exit_code == 2 and "no such file" in missing.output
    not_url = run("db", "copy", "--from", path, "--to", str(tmp_path / "other.sqlite3"))
    assert not_url.exit_code == 2 and "is not a PostgreSQL URL" in not_url.output
    backwards = run("db", "copy", "--from", pg_url, "--to", pg_url)
    assert backwards.exit_code == 2 and "not a URL" in backwards.output


def test_copy_refuses_a_target_with_users_of_its_own(tmp_path, pg_url, stores):
    path = str(tmp_path / "source.sqlite3")
    accounts.add_user(stores(path), "alice", "alice-secret-1")
    accounts.add_user(stores(pg_url), "mallory", "mallory-secret-1")
    refused = run("db", "copy", "--from", path, "--to", pg_url)
    assert refused.exit_code == 1 and "1 users that are not in the source (e.g. 'mallory')" in refused.output


def test_db_migrate_applies_once_then_says_up_to_date(pg_url):
    first = run("db", "migrate", "--db", pg_url)
    assert first.exit_code == 0 and "applied 0001_stories_and_turns, 0002_redo_stack, 0003_accounts, 0004_case_file" in first.output
    second = run("db", "migrate", "--db", pg_url)
    assert second.exit_code == 0 and "up to date (5 migrations" in second.output


def test_users_live_in_the_postgresql_store_too(pg_url):
    added = run("users", "add", "alice", "--db", pg_url, "--password-stdin", input="alice-secret-1\n")
    assert added.exit_code == 0 and "added user alice to postgresql://" in added.output
    assert "alice\t0 stories" in run("users", "list", "--db", pg_url).output


def test_bad_db_urls_get_a_clear_message_not_a_traceback(pg_server):
    closed_port = f"postgresql://batplots@127.0.0.1:{_closed_port()}/x"
    with pytest.raises(Unavailable, match="refused or is unreachable.*check that the server runs"):
        Store(closed_port)
    with pytest.raises(Unavailable, match='database "no_such_db" does not exist'):
        Store(pg_server.url("no_such_db"))
    with pytest.raises(Invalid, match="not a valid PostgreSQL URL.*the form is postgresql://USER"):
        Store("postgresql://alice:hunter22@[::1/x")
    with pytest.raises(Invalid, match="mysql://... is not supported"):
        Store("mysql://root@localhost/stories")
    for args in (["serve", "--db", closed_port], ["db", "migrate", "--db", "postgresql://alice:hunter22@[::1/x"],
                 ["users", "list", "--db", "mysql://root@localhost/stories"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and result.output.startswith("Error: cannot open the story database"), args
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "hunter22" not in result.output  # the password is never echoed


def _closed_port() -> int:
    from tests.pgserver import free_port

    return free_port()  # bound and released: nothing listens there


def test_the_password_comes_from_the_url_or_pgpassword_and_is_never_printed(pg_server, monkeypatch):
    from tests.pgserver import PASSWORD

    db = pg_server.create_database("pw")
    bare = pg_server.url(db.rsplit("/", 1)[1], password=None)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")  # no ~/.pgpass either
    with pytest.raises(Unavailable, match="password"):
        Store(bare)
    wrong = pg_server.url(db.rsplit("/", 1)[1], password="not-the-Pa55word")
    refused = run("db", "migrate", "--db", wrong)
    assert refused.exit_code == 1 and "password authentication failed" in refused.output
    assert "not-the-Pa55word" not in refused.output
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    ok = run("db", "migrate", "--db", bare)
    assert ok.exit_code == 0 and "applied 0001_stories_and_turns" in ok.output
    from_url = run("db", "migrate", "--db", db)
    assert from_url.exit_code == 0 and "up to date" in from_url.output and PASSWORD not in from_url.output
