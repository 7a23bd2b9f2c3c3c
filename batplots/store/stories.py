"""Saved stories: a small API that enforces every story rule, over SQLite or PostgreSQL.

Each change runs in one transaction that starts by bumping the story's `version`
only if the caller's is the current one (a conditional UPDATE, which also locks the
row: two tabs, or two app instances, never silently overwrite each other). A turn
is therefore either fully saved or not at all: a server killed mid-generation leaves
the story as it was. The engines differ only in
batplots.store.db (how to connect and lock) and batplots.store.schema (the named,
append-only migrations); every rule and every statement here is shared, and every
statement is parameterised.
"""

from __future__ import annotations

import copy
import json
import secrets
from datetime import datetime, timezone
from pathlib import Path

from batplots.story import casefile
from batplots.store import db as storedb
from batplots.store.db import MAX_INTEGRITY_PROBLEMS, Unavailable  # noqa: F401  (re-exported)
from batplots.story.rules import (  # noqa: F401  (re-exported: the store's errors and rules)
    MAX_TITLE_CHARS,
    MAX_TURN_CHARS,
    MAX_TURNS,
    Conflict,
    Damaged,
    Invalid,
    NotFound,
    StoreError,
    check_characters,
    clean_text,
    clean_title,
    decode_cursor,
    encode_cursor,
    story_text,
)
from batplots.store.schema import MIGRATIONS  # noqa: F401  (read at migrate time: tests shorten it)

# Named limits, quoted by the API's error messages and the README.
MAX_STORIES = 1000  # stories of one owner (a user, or the one local writer)
DEFAULT_PAGE = 50  # stories per page of the story list
MAX_PAGE = 200
DEFAULT_TITLE = "Untitled episode"
MAX_VERSION = 2 ** 63 - 1  # a story's version is a 64-bit integer on both engines
AUTHORS = ("user", "model")
_TURN_COLUMNS = "id, story_id, position, author, text, created_at, settings, seed, meta"
# Named, never *: a later migration's new column must not change what a statement
# PostgreSQL has already prepared returns.
_STORY_COLUMNS = "id, title, version, settings, share_id, created_at, updated_at, owner"
_LOAD_STORY = (
    "SELECT s.id, s.title, s.version, s.settings, s.share_id, s.created_at, s.updated_at, s.case_file, "
    "(SELECT COUNT(*) FROM redo_turns r WHERE r.story_id = s.id) AS redo_count, "
    "t.id AS turn_id, t.position, t.author, t.text, t.created_at AS turn_created_at, t.settings AS turn_settings, "
    "t.seed, t.meta "
    "FROM stories s LEFT JOIN turns t ON t.story_id = s.id WHERE {where} ORDER BY t.position")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    """The stories in one SQLite file or PostgreSQL database. Thread-safe: every call
    takes its own connection (a pooled one on PostgreSQL).

    A Store sees the stories of one owner (`for_owner`): None, the local writer of a
    loopback server, by default. Share links read any story."""

    def __init__(self, target: str | Path, lore=None):
        """target: a SQLite file path, or a postgresql://USER@HOST:PORT/DBNAME URL; lore:
        the corpus's names (batplots.story.lore.Lore) that fill in case files, or None."""
        self.db = storedb.open_db(target)
        self.lore = lore
        self.engine = self.db.engine
        self.path = getattr(self.db, "path", None)  # the SQLite file; None on PostgreSQL
        self.owner: int | None = None
        try:
            self.check_integrity()
            self.applied = self.migrate()  # the migrations this open applied (`batplots db migrate` lists them)
        except BaseException:
            self.db.close()
            raise

    def for_owner(self, owner: int | None) -> "Store":
        """The same database, seen as owner (a user id, or None)."""
        view = copy.copy(self)
        view.owner = owner
        return view

    def describe(self) -> str:
        """Where the stories are (a URL without its password, or the file path)."""
        return self.db.describe()

    def close(self) -> None:
        """Release the database's connections (the PostgreSQL pool)."""
        self.db.close()

    # --- plumbing -----------------------------------------------------------------
    def reading(self):
        """A read transaction: `with store.reading() as conn: conn.execute(sql, params)`."""
        return self.db.reading()

    def transaction(self):
        """One write transaction; a change in it checks and bumps the story's version."""
        return self.db.transaction()

    def serialise(self, conn, name: str) -> None:
        """Inside a transaction: wait until no other transaction (on any instance) holds
        `name`; guards limits that count rows."""
        self.db.serialise(conn, name)

    def check_integrity(self) -> None:
        """Raises Damaged saying what to do when a SQLite file is damaged."""
        self.db.check_integrity()

    def migrate(self) -> list[str]:
        """Apply the migrations this database lacks, in order; returns their names."""
        return self.db.migrate([(name, sql[self.engine]) for name, sql in MIGRATIONS], now())

    def _owner_is(self, column: str) -> tuple[str, tuple]:
        """SQL that matches the owner (IS NULL or = ?: both engines index either)."""
        if self.owner is None:
            return f"{column} IS NULL", ()
        return f"{column} = ?", (self.owner,)

    # --- reading ------------------------------------------------------------------
    def _story_row(self, conn, story_id: str):
        """The owner's story row."""
        if not isinstance(story_id, str) or "\x00" in story_id:  # PostgreSQL text cannot hold NUL
            raise NotFound("no such story")
        owner_sql, owner_params = self._owner_is("owner")
        row = conn.execute(f"SELECT {_STORY_COLUMNS} FROM stories WHERE id = ? AND {owner_sql}",
                           (story_id, *owner_params)).fetchone()
        if row is None:
            raise NotFound(f"no story with id {story_id!r}")
        return row

    def _load(self, conn, where: str, params: tuple) -> dict | None:
        """The story matching `where` (SQL on s, from this module), with its turns and redo
        count, in ONE statement: consistent without a transaction, one round trip."""
        rows = conn.execute(_LOAD_STORY.format(where=where), params).fetchall()
        if not rows:
            return None
        first = rows[0]
        return {
            "id": first["id"],
            "title": first["title"],
            "version": first["version"],
            "settings": json.loads(first["settings"]),
            "share_id": first["share_id"],
            "created_at": first["created_at"],
            "updated_at": first["updated_at"],
            "turns": [_public_turn(_turn_dict(r)) for r in rows if r["turn_id"] is not None],
            "redo_count": first["redo_count"],
            "case_file": casefile.load(first["case_file"]),
        }

    def _refilled(self, story: dict) -> dict:
        """After a change to the turns has committed: the story with its case file filled in
        again from its passages (the fields the writer did not edit) and its outline. This
        runs outside the write transaction, so no other writer waits on it, and costs about
        the changed passage (each sentence is read once per process: batplots.story.caseread);
        the case file is stored only if the story is still at this version (a later change
        fills in its own). Derived data: if storing it fails, or the server dies first, the
        next change fills it in."""
        case = refill_case(story["case_file"], passages(story["turns"]), self.lore)
        if case != story["case_file"]:
            try:
                with self.transaction() as conn:
                    conn.execute("UPDATE stories SET case_file = ? WHERE id = ? AND version = ?",
                                 (json.dumps(case), story["id"], story["version"]))
            except Unavailable:
                pass  # the change itself is saved; the case file follows with the next one
            story["case_file"] = case
        return _with_outline(story)

    def _saved(self, conn, story_id: str) -> dict:
        """The story as the transaction now has it (the result of a change)."""
        return self._load(conn, "s.id = ?", (story_id,))

    def get(self, story_id: str) -> dict:
        if not isinstance(story_id, str) or "\x00" in story_id:  # PostgreSQL text cannot hold NUL
            raise NotFound("no such story")
        owner_sql, owner_params = self._owner_is("s.owner")
        with self.db.single() as conn:
            story = self._load(conn, f"s.id = ? AND {owner_sql}", (story_id, *owner_params))
        if story is None:
            raise NotFound(f"no story with id {story_id!r}")
        return _with_outline(story)

    def get_by_share(self, share_id: str) -> dict:
        if not isinstance(share_id, str) or "\x00" in share_id:
            raise NotFound("no shared story with that link")
        with self.db.single() as conn:
            story = self._load(conn, "s.share_id = ?", (share_id,))
        if story is None:
            raise NotFound("no shared story with that link")
        return _with_outline(story)

    def list(self) -> list[dict]:
        """Every story of the owner, newest change first, without its turns."""
        return self.page(MAX_STORIES)[0]

    def page(self, limit: int = DEFAULT_PAGE, cursor: str | None = None) -> tuple[list[dict], str | None]:
        """One page of the owner's stories, newest change first: (stories, cursor of the
        next page or None). Keyset paging: a page never repeats or skips a story that
        did not change meanwhile."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise Invalid(f"limit must be a whole number from 1 to {MAX_PAGE}, got {limit!r}")
        after = decode_cursor(cursor) if cursor is not None else None
        where, owner_params = self._owner_is("s.owner")
        params = list(owner_params)
        if after is not None:
            where += " AND (s.updated_at, s.created_at, s.id) < (?, ?, ?)"
            params += after
        with self.db.single() as conn:
            rows = conn.execute(
                "SELECT s.id, s.title, s.version, s.created_at, s.updated_at, "
                "(SELECT COUNT(*) FROM turns t WHERE t.story_id = s.id) AS turn_count "
                f"FROM stories s WHERE {where} ORDER BY s.updated_at DESC, s.created_at DESC, s.id DESC LIMIT ?",
                (*params, limit + 1)).fetchall()
        stories = [dict(r) for r in rows[:limit]]
        return stories, (encode_cursor(rows[limit - 1]) if len(rows) > limit else None)

    def story_text(self, story_id: str) -> tuple[str, int]:
        """(the story as one text, its version)."""
        story = self.get(story_id)
        return story_text(story["turns"]), story["version"]

    # --- writing ------------------------------------------------------------------
    def create(self, title: str | None = None, settings: dict | None = None) -> dict:
        title = DEFAULT_TITLE if title is None else clean_title(title)
        stamp = now()
        story_id = secrets.token_hex(8)
        owner_sql, owner_params = self._owner_is("owner")
        with self.transaction() as conn:
            self.serialise(conn, f"stories-of:{self.owner}")  # the count below holds until COMMIT
            count = conn.execute(f"SELECT COUNT(*) FROM stories WHERE {owner_sql}", owner_params).fetchone()[0]
            if count >= MAX_STORIES:
                raise Invalid(f"you already have {MAX_STORIES} stories, the most one writer may keep; "
                              "delete some first")
            conn.execute("INSERT INTO stories (id, title, version, settings, share_id, created_at, updated_at, owner) "
                         "VALUES (?, ?, 1, ?, ?, ?, ?, ?)",
                         (story_id, title, json.dumps(settings or {}), secrets.token_urlsafe(18), stamp, stamp,
                          self.owner))
            story = self._saved(conn, story_id)
        return _with_outline(story)

    def _claim(self, conn, story_id: str, version: int) -> None:
        """Start a change: bump the story's version if `version` is the current one, else
        raise NotFound or Conflict. The conditional UPDATE also locks the row until COMMIT,
        so of two changes made at one version (on any instance) exactly one gets past here."""
        owner_sql, owner_params = self._owner_is("owner")
        if isinstance(version, int) and not isinstance(version, bool) and 0 < version <= MAX_VERSION:
            claimed = conn.execute(f"UPDATE stories SET version = version + 1, updated_at = ? "
                                   f"WHERE id = ? AND {owner_sql} AND version = ?",
                                   (now(), story_id, *owner_params, version)).rowcount
            if claimed == 1:
                return
        raise Conflict(self._story_row(conn, story_id)["version"])  # NotFound if it is not the owner's

    def update(self, story_id: str, version: int, title: str | None = None, settings: dict | None = None) -> dict:
        """Rename and/or replace the story's settings (already validated by the caller)."""
        if title is not None:
            title = clean_title(title)
        with self.transaction() as conn:
            self._claim(conn, story_id, version)
            if title is not None:
                conn.execute("UPDATE stories SET title = ? WHERE id = ?", (title, story_id))
            if settings is not None:
                conn.execute("UPDATE stories SET settings = ? WHERE id = ?", (json.dumps(settings), story_id))
            story = self._saved(conn, story_id)
        return _with_outline(story)

    def set_case(self, story_id: str, version: int, changes: dict, auto=()) -> dict:
        """The writer's changes to the case file ({field: entries}, only the fields given):
        a changed field is theirs from now on (autofill leaves it alone); the fields in
        auto go back to autofill (filled in after COMMIT, as after any change: _refilled)."""
        with self.transaction() as conn:
            self._claim(conn, story_id, version)
            story = self._saved(conn, story_id)
            case = casefile.updated(story["case_file"], changes, auto)
            conn.execute("UPDATE stories SET case_file = ? WHERE id = ?", (json.dumps(case), story_id))
            story["case_file"] = case
        return self._refilled(story)

    def delete(self, story_id: str, version: int) -> None:
        with self.transaction() as conn:
            self._claim(conn, story_id, version)
            conn.execute("DELETE FROM stories WHERE id = ?", (story_id,))

    def add_turn(self, story_id: str, version: int, author: str, text: str, settings: dict | None = None,
                 seed: int | None = None, meta: dict | None = None, replace_last_model: bool = False) -> dict:
        """Append a passage (clearing the redo stack); with replace_last_model, the last
        passage must be the model's and is replaced (Retry)."""
        if author not in AUTHORS:
            raise Invalid(f"author must be one of: {', '.join(AUTHORS)}")
        text = clean_text(text)
        with self.transaction() as conn:
            self._claim(conn, story_id, version)
            last = conn.execute("SELECT id, author, position, (SELECT COUNT(*) FROM turns WHERE story_id = ?) AS n "
                                "FROM turns WHERE story_id = ? ORDER BY position DESC LIMIT 1",
                                (story_id, story_id)).fetchone()
            if replace_last_model:
                if last is None or last["author"] != "model":
                    raise Invalid("nothing to retry: the last passage is not the model's; press Continue instead")
                conn.execute("DELETE FROM turns WHERE id = ?", (last["id"],))
                position = last["position"]
            else:
                count = last["n"] if last is not None else 0
                if count >= MAX_TURNS:
                    raise Invalid(f"the story has {count} passages, the most a story may have ({MAX_TURNS}); "
                                  "start a new story to go on")
                position = (last["position"] + 1) if last is not None else 0
            conn.execute("DELETE FROM redo_turns WHERE story_id = ?", (story_id,))
            conn.execute("INSERT INTO turns (story_id, position, author, text, created_at, settings, seed, meta) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (story_id, position, author, text, now(),
                          json.dumps(settings) if settings is not None else None, seed, json.dumps(meta or {})))
            story = self._saved(conn, story_id)
        return self._refilled(story)

    def check_can_add(self, story_id: str, version: int, retry: bool = False) -> dict:
        """Raise what add_turn would raise for (story, version) before a slow generation
        starts; returns the story."""
        story = self.get(story_id)
        if version != story["version"]:
            raise Conflict(story["version"])
        if retry:
            if not story["turns"] or story["turns"][-1]["author"] != "model":
                raise Invalid("nothing to retry: the last passage is not the model's; press Continue instead")
        elif len(story["turns"]) >= MAX_TURNS:
            raise Invalid(f"the story has {len(story['turns'])} passages, the most a story may have ({MAX_TURNS}); "
                          "start a new story to go on")
        return story

    def edit_turn(self, story_id: str, version: int, turn_id: int, text: str) -> dict:
        text = clean_text(text)
        with self.transaction() as conn:
            self._claim(conn, story_id, version)
            row = conn.execute(f"SELECT {_TURN_COLUMNS} FROM turns WHERE id = ? AND story_id = ?",
                               (turn_id, story_id)).fetchone()
            if row is None:
                raise NotFound(f"story {story_id!r} has no passage with id {turn_id!r}")
            meta = json.loads(row["meta"])
            if text != row["text"]:
                meta["edited"] = True
            conn.execute("UPDATE turns SET text = ?, meta = ? WHERE id = ?", (text, json.dumps(meta), turn_id))
            story = self._saved(conn, story_id)
        return self._refilled(story)

    def undo(self, story_id: str, version: int) -> dict:
        """Move the last passage onto the redo stack."""
        with self.transaction() as conn:
            self._claim(conn, story_id, version)
            row = conn.execute(f"SELECT {_TURN_COLUMNS} FROM turns WHERE story_id = ? ORDER BY position DESC LIMIT 1",
                               (story_id,)).fetchone()
            if row is None:
                raise Invalid("nothing to undo: the story has no passages")
            conn.execute(f"INSERT INTO redo_turns ({_TURN_COLUMNS}) SELECT {_TURN_COLUMNS} FROM turns WHERE id = ?",
                         (row["id"],))
            conn.execute("DELETE FROM turns WHERE id = ?", (row["id"],))
            story = self._saved(conn, story_id)
        return self._refilled(story)

    def redo(self, story_id: str, version: int) -> dict:
        """Bring back the passage undone most recently."""
        with self.transaction() as conn:
            self._claim(conn, story_id, version)
            row = conn.execute(f"SELECT {_TURN_COLUMNS} FROM redo_turns WHERE story_id = ? "
                               "ORDER BY position ASC LIMIT 1", (story_id,)).fetchone()
            if row is None:
                raise Invalid("nothing to redo: no passage was undone since the last change")
            conn.execute(f"INSERT INTO turns ({_TURN_COLUMNS}) SELECT {_TURN_COLUMNS} FROM redo_turns WHERE id = ?",
                         (row["id"],))
            conn.execute("DELETE FROM redo_turns WHERE id = ?", (row["id"],))
            story = self._saved(conn, story_id)
        return self._refilled(story)


def _with_outline(story: dict) -> dict:
    """The story with its outline (the beats it has had), worked out outside any transaction
    (each sentence split and labelled once per process: batplots.story.caseread, beats)."""
    story["outline"] = casefile.outline(passages(story["turns"]))
    return story


def passages(turns) -> list[str]:
    """The texts of a story's turns, in order (they join as story_text joins them)."""
    return [t["text"] for t in turns]


def refill_case(case: dict, story, lore=None) -> dict:
    """casefile.autofill: the one way the store (and a generation's guidance) fills a case
    file in from a story (its passages, or its text)."""
    return casefile.autofill(case, story, lore)


def _turn_dict(row) -> dict:
    """A turn from a _LOAD_STORY row."""
    return {
        "id": row["turn_id"],
        "position": row["position"],
        "author": row["author"],
        "text": row["text"],
        "created_at": row["turn_created_at"],
        "settings": json.loads(row["turn_settings"]) if row["turn_settings"] is not None else None,
        "seed": row["seed"],
        "meta": json.loads(row["meta"]),
    }


def _public_turn(turn: dict) -> dict:
    out = {"id": turn["id"], "author": turn["author"], "text": turn["text"], "created_at": turn["created_at"],
           "edited": bool(turn["meta"].get("edited"))}
    if turn["author"] == "model":
        out["settings"] = turn["settings"]
        out["seed"] = turn["seed"]
        out["meta"] = turn["meta"]
    return out
