"""The two database engines behind batplots.store.stories: a SQLite file or a PostgreSQL server.

The store speaks one SQL (with `?` placeholders) to either; a backend opens
connections, begins read and write transactions, serialises where the store asks,
and runs the named migrations. SQLite lets one writer in at a time (BEGIN
IMMEDIATE), which is enough on one machine. PostgreSQL lets writers on several
machines run at once: a change starts with a conditional UPDATE of its story's
version (which locks the row until COMMIT), and limits that count rows (stories of
an owner, users) take an advisory lock, so two app instances never both win.
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from batplots.story.rules import Damaged, Invalid, StoreError

# A SQLite change waits for the one write lock this long (SQLite's busy handler retries
# with back-off meanwhile), then the caller gets Unavailable (503 "busy, try again"),
# never "database is locked". Every change holds the lock for milliseconds: the case
# file and the outline are worked out outside it (batplots.store.stories).
SQLITE_TIMEOUT_S = 5
# PRAGMA quick_check lists at most this many problems (the first few are quoted).
MAX_INTEGRITY_PROBLEMS = 10
PG_SCHEMES = ("postgresql://", "postgres://")
PG_CONNECT_TIMEOUT_S = 5  # an unreachable server is reported, not waited on
PG_POOL_MIN = 1
# Connections per app instance: two instances stay well under PostgreSQL's default
# max_connections (100); a request waits up to PG_POOL_WAIT_S for a free one.
PG_POOL_MAX = 16
PG_POOL_WAIT_S = 10
# A change waits at most this long for its story's row (then 503, try again), and the
# server ends a session left idle inside a transaction (a hung instance) after
# PG_IDLE_IN_TRANSACTION_S, so its locks cannot block a story for good.
PG_LOCK_TIMEOUT_S = 10
PG_IDLE_IN_TRANSACTION_S = 60
PG_OPTIONS = (f"-c lock_timeout={PG_LOCK_TIMEOUT_S * 1000} "
              f"-c idle_in_transaction_session_timeout={PG_IDLE_IN_TRANSACTION_S * 1000}")
MIGRATION_LOCK = "batplots:migrations"
DB_NAME = "stories.sqlite3"  # under the user directory, where `serve` and `users` look by default


class Unavailable(StoreError):
    """The database server cannot be reached (down, wrong address, refused login)."""


def is_url(target) -> bool:
    return isinstance(target, str) and target.lower().startswith(PG_SCHEMES)


def open_db(target: str | Path):
    """A backend for a SQLite path or a postgresql:// URL; Invalid for any other URL."""
    if is_url(target):
        return PostgresDB(target)
    if "://" in str(target):
        scheme = target.split("://", 1)[0]
        raise Invalid(f"--db {scheme}://... is not supported: give a SQLite file path, or a PostgreSQL URL "
                      "postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME")
    return SqliteDB(target)


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _statements(sql: str) -> list[str]:
    return [s for s in sql.split(";") if s.strip()]


class SqliteDB:
    engine = "sqlite"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate_lock = threading.Lock()

    def describe(self) -> str:
        return str(self.path)

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=SQLITE_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA busy_timeout = {SQLITE_TIMEOUT_S * 1000}")
        return conn

    @contextmanager
    def _session(self, begin: str):
        with _busy_is_unavailable():
            conn = self.connect()
            try:
                conn.execute(begin)
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                conn.close()

    def reading(self):
        """A read transaction: one consistent snapshot for several SELECTs."""
        return self._session("BEGIN")

    @contextmanager
    def single(self):
        """A connection for one statement on its own (autocommit: atomic by itself)."""
        with _busy_is_unavailable():
            conn = self.connect()
            try:
                yield conn
            finally:
                conn.close()

    def transaction(self):
        """One write transaction, taken up front (IMMEDIATE) so version checks can't race."""
        return self._session("BEGIN IMMEDIATE")

    def serialise(self, conn, name: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE lets one writer in at a time."""

    def check_integrity(self) -> None:
        """PRAGMA quick_check; raises Damaged saying what to do when the file is damaged."""
        if not self.path.exists():
            return
        conn = self.connect()
        try:
            rows = conn.execute(f"PRAGMA quick_check({MAX_INTEGRITY_PROBLEMS})").fetchall()
            problems = [row[0] for row in rows]
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        finally:
            conn.close()
        if problems != ["ok"]:
            raise Damaged(f"the story database {self.path} is damaged (PRAGMA quick_check: {'; '.join(problems[:3])}). "
                          "Nothing was changed. Stop every program using it, keep a copy of the file, then restore "
                          f"a backup, or salvage what is readable: sqlite3 {self.path} .recover | sqlite3 recovered.sqlite3")

    def migrate(self, migrations: list[tuple[str, str]], stamp: str) -> list[str]:
        with self._migrate_lock:
            conn = self.connect()
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
                applied = {row["name"] for row in conn.execute("SELECT name FROM schema_migrations")}
                done = []
                for name, sql in migrations:
                    if name in applied:
                        continue
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        for statement in _statements(sql):
                            conn.execute(statement)
                        conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (name, stamp))
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                    done.append(name)
                return done
            finally:
                conn.close()

    def reset_ids(self) -> None:
        """Nothing to do: SQLite's AUTOINCREMENT follows the largest id inserted."""

    def close(self) -> None:
        """Nothing held: every call opens and closes its own connection."""


def is_busy(exc: BaseException) -> bool:
    """Whether a sqlite3 error is "database is locked/busy" (the busy timeout ran out)."""
    return isinstance(exc, sqlite3.OperationalError) and any(
        word in str(exc).lower() for word in ("database is locked", "database is busy", "database table is locked"))


@contextmanager
def _busy_is_unavailable():
    """SQLite's "database is locked", after its busy handler retried for SQLITE_TIMEOUT_S,
    as Unavailable: the app answers 503 saying to try again, not 500."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            raise Unavailable(f"the story database is busy: another change held it for over {SQLITE_TIMEOUT_S} s; "
                              "nothing was changed, try again") from exc
        raise


class Row(dict):
    """A result row read like sqlite3.Row: by column name (a dict: the common case stays
    in C), by position, and dict(row). Unlike sqlite3.Row, iterating gives the names."""

    __slots__ = ("_values",)

    def __missing__(self, key):
        if isinstance(key, int):
            return self._values[key]
        raise KeyError(key)


def _row_factory(cursor):
    names = [col.name for col in cursor.description or ()]

    def make(values):
        row = Row(zip(names, values))
        row._values = values
        return row
    return make


@functools.lru_cache(maxsize=256)
def _pg_sql(sql: str) -> str:
    """The store's `?` placeholders as psycopg's `%s` (no literal `?` appears in its SQL)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConn:
    """A pooled psycopg connection that takes the store's SQL and reports like sqlite3."""

    def __init__(self, conn):
        self._conn = conn

    def execute(self, sql: str, params=()):
        import psycopg

        try:
            return self._conn.execute(_pg_sql(sql), tuple(params))
        except psycopg.errors.NumericValueOutOfRange as exc:  # as sqlite3 does: the app answers 422
            raise OverflowError(f"a number is too large for the database ({exc})") from exc
        except psycopg.DataError as exc:
            if "NUL" in str(exc):
                raise Invalid("text contains a NUL character (U+0000), which cannot be stored; remove it") from exc
            raise


def shown_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001  (a malformed URL: show only its scheme)
        return url.split("://", 1)[0] + "://..."
    host = info.get("host", "")
    port = f":{info['port']}" if info.get("port") else ""
    user = f"{info['user']}@" if info.get("user") else ""
    return f"postgresql://{user}{host}{port}/{info.get('dbname', '')}"


class PostgresDB:
    engine = "postgresql"

    def __init__(self, url: str):
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
        from psycopg_pool import ConnectionPool

        self.url = url
        try:
            conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            reason = " ".join(str(exc).split()).replace(url, shown_url(url))  # never echo a password
            raise Invalid(f"this is not a valid PostgreSQL URL ({reason}); the form is "
                          "postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME (a password may also come from "
                          "PGPASSWORD or ~/.pgpass)") from exc
        # Connect once directly: an unreachable server is one clear message now, not a
        # pool retrying in the background.
        try:
            psycopg.connect(url, connect_timeout=PG_CONNECT_TIMEOUT_S).close()
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc
        self.pool = ConnectionPool(url, min_size=PG_POOL_MIN, max_size=PG_POOL_MAX, timeout=PG_POOL_WAIT_S,
                                   kwargs={"autocommit": True, "row_factory": _row_factory,
                                           "connect_timeout": PG_CONNECT_TIMEOUT_S, "options": PG_OPTIONS},
                                   name="batplots-store", open=True)

    def describe(self) -> str:
        return shown_url(self.url)

    def _unavailable(self, exc: Exception) -> Unavailable:
        reason = " ".join(str(exc).split()) or exc.__class__.__name__
        return Unavailable(f"PostgreSQL refused or is unreachable ({reason}); check that the server runs and the "
                           "host, port, user and database name in the URL (the password comes from the URL, "
                           "PGPASSWORD or ~/.pgpass)")

    @contextmanager
    def _session(self, begin: str | None):
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self.pool.connection() as conn:
                if begin is None:  # autocommit: each statement its own transaction
                    yield PgConn(conn)
                    return
                conn.execute(begin)
                yield PgConn(conn)
                conn.execute("COMMIT")
            # An exception inside leaves the connection in a transaction: the pool rolls it back.
        except PoolTimeout as exc:
            raise Unavailable(f"no database connection came free within {PG_POOL_WAIT_S} s (all {PG_POOL_MAX} "
                              f"busy, or {shown_url(self.url)} is unreachable); try again") from exc
        except psycopg.errors.LockNotAvailable as exc:
            raise Unavailable(f"another change held the story for over {PG_LOCK_TIMEOUT_S} s; try again") from exc
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc

    def reading(self):
        """A read-only snapshot: several SELECTs agree."""
        return self._session("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def single(self):
        """A pooled connection for one statement on its own (atomic by itself)."""
        return self._session(None)

    def transaction(self):
        """A write transaction (READ COMMITTED): a change's conditional UPDATE locks its story row."""
        return self._session("BEGIN")

    def serialise(self, conn, name: str) -> None:
        """One transaction at a time past this point for `name`, on every instance."""
        conn.execute("SELECT pg_advisory_xact_lock(?)", (lock_key(name),))

    def check_integrity(self) -> None:
        """The server keeps its own files consistent; nothing to check from here."""

    def migrate(self, migrations: list[tuple[str, str]], stamp: str) -> list[str]:
        # One transaction under an advisory lock: instances starting together migrate once.
        with self.transaction() as conn:
            self.serialise(conn, MIGRATION_LOCK)
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            applied = {row["name"] for row in conn.execute("SELECT name FROM schema_migrations")}
            done = []
            for name, sql in migrations:
                if name in applied:
                    continue
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (name, stamp))
                done.append(name)
            return done

    def reset_ids(self) -> None:
        """After rows came in with their ids (db copy): new ids start above every copied one
        (undone turns keep theirs, so redo_turns counts too)."""
        with self.transaction() as conn:
            conn.execute("SELECT setval(pg_get_serial_sequence('turns', 'id'), GREATEST(1, "
                         "(SELECT COALESCE(MAX(id), 0) FROM turns), (SELECT COALESCE(MAX(id), 0) FROM redo_turns)))")
            conn.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), "
                         "GREATEST(1, (SELECT COALESCE(MAX(id), 0) FROM users)))")

    def close(self) -> None:
        self.pool.close()


def default_db_path() -> Path:
    """The stories' SQLite file when --db is not given: $BATPLOTS_HOME/stories.sqlite3."""
    from batplots.files import home

    return home() / DB_NAME
