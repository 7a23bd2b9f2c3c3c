"""User accounts and login sessions, in the story database (migration 0003_accounts).

A server on a network address needs them (`batplots users add NAME`); a loopback
server is one person's tool and has no login. Passwords are hashed with Argon2id
(argon2-cffi, its default parameters); session tokens are random and only their
SHA-256 is stored, so a copy of the database opens no session.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import threading
from datetime import datetime, timedelta, timezone

import argon2

from batplots.store.stories import Invalid, NotFound, Store, now

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 256  # hashing cost grows with length: bound it
MAX_NAME_CHARS = 32
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_USERS = 100  # bounds the database: each user may keep store.MAX_STORIES stories
SESSION_DAYS = 14
SESSION_TOKEN_BYTES = 32
# Each Argon2 hash takes 64 MiB for ~0.1 s: bound how many run at once, so a burst of
# logins (from many addresses) queues instead of exhausting memory.
MAX_CONCURRENT_HASHES = 2

_hasher = argon2.PasswordHasher()
_hashing = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)


def _hash(password: str) -> str:
    with _hashing:
        return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    with _hashing:
        try:
            return _hasher.verify(password_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False


@functools.cache
def _dummy_hash() -> str:
    """Verified when the name is unknown, so a wrong name takes as long as a wrong password."""
    return _hash(secrets.token_hex(16))


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or len(name) > MAX_NAME_CHARS:
        raise Invalid(f"user name {name!r} is not allowed: use 1 to {MAX_NAME_CHARS} letters, digits, '.', '_' or '-', "
                      "starting with a letter or digit")
    return name


def check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise Invalid(f"a password must have {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    if password.strip() != password:
        raise Invalid("a password must not begin or end with whitespace (easy to mistype)")
    return password


def _no_nul(name):
    """A name as looked up: NUL matches no user, and PostgreSQL text cannot hold it."""
    return name.replace("\x00", "\ufffd") if isinstance(name, str) else name


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def count_users(store: Store) -> int:
    with store.reading() as conn:
        return conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]


def add_user(store: Store, name: str, password: str) -> dict:
    check_name(name)
    password_hash = _hash(check_password(password))
    with store.transaction() as conn:
        store.serialise(conn, "users")  # the name and count checks hold until COMMIT, on every instance
        if conn.execute("SELECT 1 FROM users WHERE lower(name) = lower(?)", (name,)).fetchone():
            raise Invalid(f"a user named {name!r} exists already (names ignore case); "
                          f"`batplots users passwd {name}` changes the password")
        if conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] >= MAX_USERS:
            raise Invalid(f"there are already {MAX_USERS} users, the most one database holds; remove one first")
        row = conn.execute("INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, ?) RETURNING id",
                           (name, password_hash, now())).fetchone()
        return {"id": row[0], "name": name}


def claim_unowned(store: Store, name: str) -> int:
    """Give the stories without an owner (written on a loopback server) to a user."""
    with store.transaction() as conn:
        user = _user_row(conn, name)
        return conn.execute("UPDATE stories SET owner = ? WHERE owner IS NULL", (user["id"],)).rowcount


def list_users(store: Store) -> list[dict]:
    with store.reading() as conn:
        rows = conn.execute("SELECT u.name, u.created_at, "
                            "(SELECT COUNT(*) FROM stories s WHERE s.owner = u.id) AS stories, "
                            "(SELECT COUNT(*) FROM sessions x WHERE x.user_id = u.id AND x.expires_at > ?) AS sessions "
                            "FROM users u ORDER BY lower(u.name), u.name", (now(),)).fetchall()
        return [dict(r) for r in rows]


def _user_row(conn, name: str):
    row = conn.execute("SELECT id, name, password_hash FROM users WHERE lower(name) = lower(?)",
                       (_no_nul(name),)).fetchone()
    if row is None:
        raise NotFound(f"no user named {name!r} (`batplots users list` shows them)")
    return row


def remove_user(store: Store, name: str) -> int:
    """Delete a user, their sessions and their stories; returns how many stories went."""
    with store.transaction() as conn:
        user = _user_row(conn, name)
        stories = conn.execute("SELECT COUNT(*) FROM stories WHERE owner = ?", (user["id"],)).fetchone()[0]
        conn.execute("DELETE FROM users WHERE id = ?", (user["id"],))  # cascades to sessions and stories
        return stories


def story_count(store: Store, name: str) -> int:
    with store.reading() as conn:
        user = _user_row(conn, name)
        return conn.execute("SELECT COUNT(*) FROM stories WHERE owner = ?", (user["id"],)).fetchone()[0]


def set_password(store: Store, name: str, password: str) -> None:
    """A new password ends every session of the user (a stolen cookie stops working)."""
    password_hash = _hash(check_password(password))
    with store.transaction() as conn:
        user = _user_row(conn, name)
        conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user["id"]))
        conn.execute("DELETE FROM sessions WHERE user_id = ?", (user["id"],))


def verify(store: Store, name: str, password: str) -> dict | None:
    """The user {id, name} if the password is theirs, else None (in about the same time)."""
    with store.reading() as conn:
        row = conn.execute("SELECT id, name, password_hash FROM users WHERE lower(name) = lower(?)",
                           (_no_nul(name),)).fetchone()
    if not _verify(row["password_hash"] if row else _dummy_hash(), password) or row is None:
        return None
    if _hasher.check_needs_rehash(row["password_hash"]):  # parameters raised since it was set
        with store.transaction() as conn:
            conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (_hash(password), row["id"]))
    return {"id": row["id"], "name": row["name"]}


def start_session(store: Store, user_id: int) -> str:
    """A new session token for the user (the cookie's value)."""
    token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
    stamp = datetime.now(timezone.utc)
    expires = (stamp + timedelta(days=SESSION_DAYS)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with store.transaction() as conn:
        conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now(),))  # tidy up expired ones
        conn.execute("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                     (_token_hash(token), user_id, now(), expires))
    return token


def session_user(store: Store, token: str | None) -> dict | None:
    """The user {id, name} of a live session token, else None."""
    if not token or len(token) > 2 * SESSION_TOKEN_BYTES:
        return None
    with store.reading() as conn:
        row = conn.execute("SELECT u.id, u.name FROM sessions s JOIN users u ON u.id = s.user_id "
                           "WHERE s.token_hash = ? AND s.expires_at > ?", (_token_hash(token), now())).fetchone()
        return dict(row) if row else None


def end_session(store: Store, token: str | None) -> None:
    if not token:
        return
    with store.transaction() as conn:
        conn.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))
