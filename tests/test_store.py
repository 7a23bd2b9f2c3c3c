"""The story store on both engines: migrations, versions, undo/redo, limits.

Every test runs against a real SQLite file and a real PostgreSQL server (a throwaway
one from Debian's postgresql package, tests/pgserver.py)."""

import threading

import pytest

from batplots.story import casefile
from batplots.store import stories as storelib
from batplots.store.stories import Conflict, Invalid, NotFound, Store

ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(params=ENGINES)
def target(request, tmp_path):
    """Where a test's stories live: a SQLite path, or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "stories.sqlite3")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def open_store(target):
    """Store(target), as often as a test likes; every one closed at the end."""
    opened = []

    def make():
        opened.append(Store(target))
        return opened[-1]
    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store):
    return open_store()


def columns(store, table):
    with store.reading() as conn:
        if store.engine == "sqlite":
            return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        return [row[0] for row in conn.execute("SELECT column_name FROM information_schema.columns "
                                               "WHERE table_name = ? ORDER BY ordinal_position", (table,))]


def tables(store):
    with store.reading() as conn:
        if store.engine == "sqlite":
            return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables "
                                           "WHERE table_schema = 'public'")}


def test_migrating_a_blank_database_gives_the_expected_tables_and_columns(store):
    assert columns(store, "stories") == ["id", "title", "version", "settings", "share_id", "created_at",
                                         "updated_at", "owner", "case_file"]
    expected_turn = ["id", "story_id", "position", "author", "text", "created_at", "settings", "seed", "meta"]
    assert columns(store, "turns") == expected_turn
    assert columns(store, "redo_turns") == expected_turn
    assert columns(store, "users") == ["id", "name", "password_hash", "created_at"]
    assert columns(store, "sessions") == ["token_hash", "user_id", "created_at", "expires_at"]
    with store.reading() as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")] == [
            name for name, _ in storelib.MIGRATIONS]
        if store.engine == "sqlite":
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_every_migration_has_sql_for_both_engines():
    for name, sql in storelib.MIGRATIONS:
        assert set(sql) == {"sqlite", "postgresql"}, name


def test_migrations_apply_once_and_only_the_missing_ones(open_store, monkeypatch):
    original = storelib.MIGRATIONS
    monkeypatch.setattr(storelib, "MIGRATIONS", original[:1])  # a database made by an older release
    first = open_store()
    assert "redo_turns" not in tables(first) and "stories" in tables(first)
    assert first.migrate() == []
    monkeypatch.setattr(storelib, "MIGRATIONS", original)
    assert first.migrate() == [name for name, _ in original[1:]]  # the upgrade adds the rest
    story = open_store().create("Kept")
    assert open_store().migrate() == []
    assert open_store().get(story["id"])["title"] == "Kept"


def test_a_release_2_database_upgrades_to_accounts_and_keeps_its_stories(open_store, monkeypatch):
    """0003_accounts adds users, sessions and stories.owner; stories written before it
    have no owner and stay the local writer's."""
    original = storelib.MIGRATIONS
    monkeypatch.setattr(storelib, "MIGRATIONS", original[:2])
    old = open_store()
    with old.transaction() as conn:
        conn.execute("INSERT INTO stories (id, title, version, settings, share_id, created_at, updated_at) "
                     "VALUES ('abc', 'Old', 1, '{}', 'share-old', '2026-01-01T00:00:00.000Z', "
                     "'2026-01-01T00:00:00.000Z')")
    assert "owner" not in columns(old, "stories")
    monkeypatch.setattr(storelib, "MIGRATIONS", original)
    store = open_store()
    assert open_store().migrate() == []
    assert "owner" in columns(store, "stories") and "users" in tables(store)
    assert store.get("abc")["title"] == "Old"  # the local writer (owner None) still sees it
    assert [s["id"] for s in store.list()] == ["abc"]
    with pytest.raises(NotFound):
        store.for_owner(1).get("abc")  # no user does


def test_migration_names_are_unique_and_ordered():
    names = [name for name, _ in storelib.MIGRATIONS]
    assert names == sorted(names) and len(set(names)) == len(names)


def test_create_get_list_rename_delete(store):
    a = store.create()
    b = store.create("  The   Joker's  Jest ")
    assert a["title"] == storelib.DEFAULT_TITLE and b["title"] == "The Joker's Jest"
    assert a["version"] == 1 and a["turns"] == [] and a["share_id"] != b["share_id"]
    assert len(a["share_id"]) >= 20
    assert {s["id"] for s in store.list()} == {a["id"], b["id"]}
    renamed = store.update(a["id"], 1, title="Pow")
    assert renamed["title"] == "Pow" and renamed["version"] == 2
    assert store.list()[0]["id"] == a["id"]  # newest change first
    store.delete(b["id"], 1)
    with pytest.raises(NotFound):
        store.get(b["id"])
    assert store.get_by_share(a["share_id"])["id"] == a["id"]
    with pytest.raises(NotFound):
        store.get_by_share("nope")


def test_stale_versions_conflict_and_name_the_current_one(store):
    story = store.create()
    store.add_turn(story["id"], 1, "user", "Batman broods.")
    with pytest.raises(Conflict) as info:
        store.add_turn(story["id"], 1, "user", "Robin too.")
    assert info.value.version == 2
    with pytest.raises(Conflict):
        store.delete(story["id"], 1)
    assert [t["text"] for t in store.get(story["id"])["turns"]] == ["Batman broods."]


def test_turn_text_is_stripped_and_limits_are_enforced(store):
    story = store.create()
    with pytest.raises(Invalid, match="empty"):
        store.add_turn(story["id"], 1, "user", " \n\t ")
    with pytest.raises(Invalid, match=str(storelib.MAX_TURN_CHARS)):
        store.add_turn(story["id"], 1, "user", "x" * (storelib.MAX_TURN_CHARS + 1))
    saved = store.add_turn(story["id"], 1, "user", "  " + "y" * storelib.MAX_TURN_CHARS + "\n")
    assert saved["turns"][0]["text"] == "y" * storelib.MAX_TURN_CHARS
    with pytest.raises(Invalid, match=str(storelib.MAX_TITLE_CHARS)):
        store.update(story["id"], 2, title="t" * (storelib.MAX_TITLE_CHARS + 1))
    with pytest.raises(Invalid, match="empty"):
        store.update(story["id"], 2, title="   ")


def test_turn_limit(store, monkeypatch):
    monkeypatch.setattr(storelib, "MAX_TURNS", 3)
    story = store.create()
    for i in range(3):
        story = store.add_turn(story["id"], story["version"], "user", f"Sentence {i}.")
    with pytest.raises(Invalid, match="at most|the most"):
        store.add_turn(story["id"], story["version"], "user", "One too many.")
    with pytest.raises(Invalid):
        store.check_can_add(story["id"], story["version"])


def test_story_limit(store, monkeypatch):
    monkeypatch.setattr(storelib, "MAX_STORIES", 2)
    store.create()
    store.create()
    with pytest.raises(Invalid, match="2 stories"):
        store.create()


def test_undo_redo_and_a_new_turn_clears_redo(store):
    sid = store.create()["id"]
    s = store.add_turn(sid, 1, "user", "One.")
    s = store.add_turn(sid, s["version"], "model", "Two.", settings={"seed": 3}, seed=3, meta={"flags": []})
    s = store.add_turn(sid, s["version"], "user", "Three.")
    s = store.undo(sid, s["version"])
    s = store.undo(sid, s["version"])
    assert [t["text"] for t in s["turns"]] == ["One."] and s["redo_count"] == 2
    s = store.redo(sid, s["version"])
    assert [t["text"] for t in s["turns"]] == ["One.", "Two."]
    assert s["turns"][1]["seed"] == 3 and s["turns"][1]["author"] == "model"  # restored whole
    s = store.add_turn(sid, s["version"], "user", "Four.")
    assert s["redo_count"] == 0
    with pytest.raises(Invalid, match="nothing to redo"):
        store.redo(sid, s["version"])
    for _ in range(3):
        s = store.undo(sid, s["version"])
    with pytest.raises(Invalid, match="nothing to undo"):
        store.undo(sid, s["version"])


def test_retry_replaces_only_a_last_model_turn(store):
    sid = store.create()["id"]
    s = store.add_turn(sid, 1, "user", "Batman waits.")
    with pytest.raises(Invalid, match="nothing to retry"):
        store.add_turn(sid, s["version"], "model", "New.", replace_last_model=True)
    s = store.add_turn(sid, s["version"], "model", "Old sample.")
    s = store.add_turn(sid, s["version"], "model", "New sample.", replace_last_model=True)
    assert [t["text"] for t in s["turns"]] == ["Batman waits.", "New sample."]


def test_edit_turn_marks_edits_and_checks_ids(store):
    sid = store.create()["id"]
    s = store.add_turn(sid, 1, "user", "Batman waits.")
    s = store.add_turn(sid, s["version"], "model", "Robin yawns.")
    model_id = s["turns"][1]["id"]
    s = store.edit_turn(sid, s["version"], model_id, "Robin leaps!")
    assert s["turns"][1]["text"] == "Robin leaps!" and s["turns"][1]["edited"] and s["turns"][1]["author"] == "model"
    other = store.create()
    with pytest.raises(NotFound):
        store.edit_turn(other["id"], 1, model_id, "Not yours.")  # a turn of another story
    with pytest.raises(NotFound):
        store.edit_turn(sid, s["version"], 999, "Nope.")


def test_story_text_joins_passages_with_single_spaces():
    turns = [{"text": "Batman waits."}, {"text": "Robin yawns."}, {"text": "Then"}]
    assert storelib.story_text(turns) == "Batman waits. Robin yawns. Then"
    assert storelib.story_text([]) == ""


def test_concurrent_writers_never_lose_a_change(open_store):
    """Many threads, through two Stores (two app instances), race to add at the same
    version: exactly one wins each round."""
    stores = [open_store(), open_store()]
    store = stores[0]
    sid = store.create()["id"]
    wins, conflicts = [], []

    def attempt(i, version):
        try:
            stores[i % 2].add_turn(sid, version, "user", f"Writer {i}.")
            wins.append(i)
        except Conflict:
            conflicts.append(i)

    for round_ in range(3):
        version = store.get(sid)["version"]
        threads = [threading.Thread(target=attempt, args=(i, version)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(wins) == 3 and len(conflicts) == 15
    assert sorted(t["text"] for t in store.get(sid)["turns"]) == sorted(f"Writer {i}." for i in wins)
    assert store.get(sid)["version"] == 4


def test_the_story_limit_holds_when_writers_race(open_store, monkeypatch):
    monkeypatch.setattr(storelib, "MAX_STORIES", 3)
    stores = [open_store(), open_store()]
    made, refused = [], []

    def attempt(i):
        try:
            made.append(stores[i % 2].create(f"Race {i}"))
        except Invalid:
            refused.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(made) == 3 and len(refused) == 5
    assert len(stores[0].list()) == 3


def test_a_seed_too_large_for_the_database_is_an_overflow_on_both_engines(store):
    """The app answers OverflowError with 422 (its backstop); PostgreSQL must not give a 500."""
    story = store.create()
    with pytest.raises(OverflowError):
        store.add_turn(story["id"], 1, "model", "Pow.", seed=2 ** 70)
    assert store.get(story["id"])["version"] == 1


def test_nul_in_an_id_finds_nothing_rather_than_failing(store):
    story = store.create()
    with pytest.raises(NotFound):
        store.get(story["id"] + "\x00")
    with pytest.raises(NotFound):
        store.get_by_share(story["share_id"] + "\x00")


def test_sql_is_parameterised(store):
    evil = "x'); DROP TABLE stories; --"
    story = store.create(evil)
    store.add_turn(story["id"], 1, "user", evil)
    assert store.get(story["id"])["turns"][0]["text"] == evil
    with pytest.raises(NotFound):
        store.get("' OR '1'='1")
    pct = "100% pure %s Batman?"  # the PostgreSQL driver's placeholders are stored as text
    assert store.update(story["id"], 2, title=pct)["title"] == pct


def test_accounts_on_both_engines(store, monkeypatch):
    from batplots.store import accounts

    monkeypatch.setattr(accounts, "MAX_USERS", 2)
    local = store.create("Written on loopback")
    alice = accounts.add_user(store, "Alice", "alice-secret-1")
    with pytest.raises(Invalid, match="exists already"):
        accounts.add_user(store, "ALICE", "other-secret-2")  # names ignore case, on both engines
    bob = accounts.add_user(store, "bob", "bob-secret-22")
    assert bob["id"] != alice["id"]
    with pytest.raises(Invalid, match="already 2 users"):
        accounts.add_user(store, "carol", "carol-secret-3")
    assert accounts.verify(store, "alice", "alice-secret-1") == {"id": alice["id"], "name": "Alice"}
    assert accounts.verify(store, "alice", "wrong-password") is None
    assert accounts.verify(store, "nobody\x00", "alice-secret-1") is None
    token = accounts.start_session(store, alice["id"])
    assert accounts.session_user(store, token) == {"id": alice["id"], "name": "Alice"}
    assert accounts.claim_unowned(store, "alice") == 1
    assert [s["id"] for s in store.for_owner(alice["id"]).list()] == [local["id"]] and store.list() == []
    assert [(u["name"], u["stories"], u["sessions"]) for u in accounts.list_users(store)] == [
        ("Alice", 1, 1), ("bob", 0, 0)]
    accounts.set_password(store, "alice", "new-secret-99")
    assert accounts.session_user(store, token) is None
    assert accounts.remove_user(store, "alice") == 1
    with pytest.raises(NotFound):
        store.for_owner(alice["id"]).get(local["id"])
    with pytest.raises(NotFound, match="no user named"):
        accounts.story_count(store, "alice")


def test_postgresql_sessions_cannot_hold_a_story_locked_for_good(pg_url):
    from batplots.store import db as storedb

    store = Store(pg_url)
    try:
        with store.reading() as conn:
            assert conn.execute("SHOW lock_timeout").fetchone()[0] == f"{storedb.PG_LOCK_TIMEOUT_S}s"
            assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "1min"
    finally:
        store.close()


def test_a_story_locked_too_long_by_another_session_is_unavailable_not_a_hang(pg_url, monkeypatch):
    import psycopg

    from batplots.store import db as storedb

    monkeypatch.setattr(storedb, "PG_LOCK_TIMEOUT_S", 0.2)
    monkeypatch.setattr(storedb, "PG_OPTIONS", "-c lock_timeout=200")
    store = Store(pg_url)
    try:
        story = store.create()
        with psycopg.connect(pg_url) as other:  # a transaction that holds the row and does not finish
            other.execute("SELECT 1 FROM stories WHERE id = %s FOR UPDATE", (story["id"],))
            with pytest.raises(storelib.Unavailable, match="another change held the story"):
                store.add_turn(story["id"], 1, "user", "Waiting.")
        assert store.add_turn(story["id"], 1, "user", "Free again.")["version"] == 2
    finally:
        store.close()


NOBODY = ("Professor Nobody plans to steal the golden egg. Professor Nobody and his henchmen Sniffy and Lefty "
          "hide out at the old mill.")


def test_the_case_file_fills_in_with_each_change_and_keeps_the_writers_edits(store):
    story = store.create()
    assert story["case_file"] == casefile.empty() and story["outline"] == []
    story = store.add_turn(story["id"], 1, "user", NOBODY)
    assert story["case_file"]["villains"] == ["Professor Nobody"] and story["case_file"]["hideout"] == ["old mill"]
    story = store.add_turn(story["id"], 2, "model", "Batman and Robin are tied to a giant candle.")
    assert story["case_file"]["deathtrap"] == ["tied to a giant candle"]
    assert story == store.get(story["id"])  # what a change returns is what is stored
    # Undo takes the passage's entries with it; Redo brings them back.
    assert store.undo(story["id"], 3)["case_file"]["deathtrap"] == []
    assert store.redo(story["id"], 4)["case_file"]["deathtrap"] == ["tied to a giant candle"]
    # The writer's change is versioned like any other, and autofill leaves it alone from then on.
    with pytest.raises(Conflict) as info:
        store.set_case(story["id"], 3, {"villains": ["The Sphinx"]})
    assert info.value.version == 5
    mine = store.set_case(story["id"], 5, {"villains": ["The Sphinx"], "hideout": ["old mill"]})
    assert mine["version"] == 6 and mine["case_file"]["villains"] == ["The Sphinx"]
    assert mine["case_file"]["edited"] == ["villains"]  # the hideout was unchanged: still autofill's
    edited = store.edit_turn(story["id"], 6, story["turns"][0]["id"], "Egghead hides out in the egg barn.")
    assert edited["case_file"]["villains"] == ["The Sphinx"] and edited["case_file"]["hideout"] == ["egg barn"]
    back = store.set_case(story["id"], 7, {}, auto=["villains"])
    assert back["case_file"]["villains"] == ["Egghead"] and back["case_file"]["edited"] == []
    with pytest.raises(Invalid, match="villains has 9 entries"):
        store.set_case(story["id"], 8, {"villains": [f"V{i}" for i in range(9)]})
    assert store.get(story["id"])["version"] == 8  # refused: nothing changed


def test_a_release_3_database_gains_empty_case_files(open_store, monkeypatch):
    original = storelib.MIGRATIONS
    monkeypatch.setattr(storelib, "MIGRATIONS", original[:3])
    old = open_store()
    with old.transaction() as conn:
        conn.execute("INSERT INTO stories (id, title, version, settings, share_id, created_at, updated_at) "
                     "VALUES ('abc', 'Old', 1, '{}', 'share-old', '2026-01-01T00:00:00.000Z', "
                     "'2026-01-01T00:00:00.000Z')")
    story = {"id": "abc"}
    assert "case_file" not in columns(old, "stories")
    monkeypatch.setattr(storelib, "MIGRATIONS", original)
    store = open_store()
    assert store.get(story["id"])["case_file"] == casefile.empty()
    assert store.add_turn(story["id"], 1, "user", NOBODY)["case_file"]["target"] == ["golden egg"]
