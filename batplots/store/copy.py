"""`batplots db copy`: every row of one story database into another (SQLite into PostgreSQL).

Users and sessions go first (rows already there are kept), then each story with its
turns and redo stack in one transaction of its own: an interrupted copy leaves only
whole stories behind, and running it again copies just the stories still missing.
At the end each table's row count and checksum (an order-free sum of every row's
SHA-256) must agree on both sides, or the copy is reported as failed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable

from batplots.store.stories import Invalid, Store
from batplots.store.schema import TABLES

CHECKSUM_BITS = 256
PROGRESS_EVERY = 100  # stories between two progress lines
# The order the tables fill in (each after those it references).
ORDER = ("users", "sessions", "stories", "turns", "redo_turns")
STORY_PARTS = ("turns", "redo_turns")  # rows copied with their story, by story_id
KEYS = {"users": "id", "sessions": "token_hash"}


def row_digest(values) -> int:
    text = json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def summary(store: Store) -> dict[str, tuple[int, str]]:
    """{table: (rows, checksum as hex)}: equal on two databases that hold the same rows."""
    out = {}
    with store.reading() as conn:
        for table in ORDER:
            count, total = 0, 0
            for row in conn.execute(f"SELECT {', '.join(TABLES[table])} FROM {table}"):  # fixed names, no input
                count += 1
                total = (total + row_digest([row[c] for c in TABLES[table]])) % (1 << CHECKSUM_BITS)
            out[table] = (count, f"{total:064x}")
    return out


def _insert(conn, table: str, rows, keep_existing: bool = False) -> None:
    cols = TABLES[table]
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    if keep_existing:
        sql += f" ON CONFLICT ({KEYS[table]}) DO NOTHING"
    for row in rows:
        conn.execute(sql, tuple(row[c] for c in cols))


def _select(conn, table: str, where: str = "", params=()) -> list:
    return conn.execute(f"SELECT {', '.join(TABLES[table])} FROM {table}{where}", params).fetchall()


def copy(source: Store, target: Store, progress: Callable[[str], None] = lambda line: None) -> dict:
    """Copy what target lacks; returns {"copied": stories copied now, "skipped": stories
    already there, "tables": {table: {"source": (rows, sum), "target": (rows, sum)}}, "ok"}."""
    with source.reading() as src:
        source_ids = [row[0] for row in src.execute("SELECT id FROM stories ORDER BY created_at, id")]
        accounts = {table: _select(src, table) for table in ("users", "sessions")}
    with target.reading() as dst:
        target_ids = {row[0] for row in dst.execute("SELECT id FROM stories")}
        target_users = {(row[0], row[1]) for row in dst.execute("SELECT id, name FROM users")}
    other_users = target_users - {(row[0], row[1]) for row in accounts["users"]}
    if other_users:
        raise Invalid(f"the target already has {len(other_users)} users that are not in the source (e.g. "
                      f"{sorted(other_users)[0][1]!r}); copy into an empty database, or into one an earlier copy "
                      "of this source filled")
    strangers = target_ids - set(source_ids)
    if strangers:
        raise Invalid(f"the target already holds {len(strangers)} stories that are not in the source (e.g. "
                      f"{sorted(strangers)[0]!r}); copy into an empty database, or into one an earlier copy "
                      "of this source filled")
    with target.transaction() as dst:
        for table in ("users", "sessions"):
            _insert(dst, table, accounts[table], keep_existing=True)
    missing = [sid for sid in source_ids if sid not in target_ids]
    progress(f"{len(source_ids)} stories in the source, {len(source_ids) - len(missing)} already copied, "
             f"{len(missing)} to copy")
    for done, story_id in enumerate(missing, 1):
        with source.reading() as src:
            parts = {table: _select(src, table, " WHERE story_id = ?", (story_id,)) for table in STORY_PARTS}
            story = _select(src, "stories", " WHERE id = ?", (story_id,))
        with target.transaction() as dst:  # the story whole, or not at all
            _insert(dst, "stories", story)
            for table in STORY_PARTS:
                _insert(dst, table, parts[table])
        if done % PROGRESS_EVERY == 0:
            progress(f"copied {done}/{len(missing)} stories")
    target.db.reset_ids()
    before, after = summary(source), summary(target)
    tables = {table: {"source": before[table], "target": after[table]} for table in ORDER}
    return {"copied": len(missing), "skipped": len(source_ids) - len(missing), "tables": tables,
            "ok": before == after}
