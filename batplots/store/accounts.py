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


# The login limit (batplots.web.login applies it): failed logins per client address and
# per account within a sliding window.
MAX_LOGIN_FAILURES = 5  # failed logins per address, and per account, ...
LOGIN_WINDOW_SECONDS = 60.0  # ...within this many seconds
MAX_LIMITER_KEY_CHARS = 2 * MAX_NAME_CHARS + 8  # a longer name is no user's; its key is cut


def address_key(host: str | None) -> str:
    """The limiter's key of a client address: an IPv6 address counts as its /64 (one
    subscriber's whole network), anything else as itself."""
    import ipaddress

    try:
        ip = ipaddress.ip_address((host or "?").strip("[]"))
    except ValueError:
        return f"ip:{(host or '?')[:MAX_LIMITER_KEY_CHARS]}"
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return f"ip:{ip.ipv4_mapped}"
        return f"ip:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"ip:{ip}"


class LoginLimiter:
    """Failed logins per address and per account in a sliding window, kept in the
    database (table login_attempts), so every app instance on one PostgreSQL database
    shares the counts. An attempt is counted BEFORE its password is checked, in one
    transaction serialised with every other attempt (on every instance): of 40 guesses
    sent at once from one address, MAX_LOGIN_FAILURES are checked and the rest refused.
    A correct password takes its attempt back (`succeeded`).

    Refused (wait_seconds > 0): an address with MAX_LOGIN_FAILURES attempts in the
    window; or an account with MAX_LOGIN_FAILURES failed attempts when this address has
    failed in the window too. An address with no failures may always try once, so
    strangers guessing at a name cannot lock its owner out: they get one guess per
    address per window at it, and each address MAX_LOGIN_FAILURES guesses in all."""

    def __init__(self, store: Store, clock=None):
        import time

        self.store = store
        self._clock = clock or time.time  # wall time: instances on several machines share it

    def begin(self, address: str, name: str) -> tuple[str | None, float]:
        """(attempt id, 0) when this login may be checked now (the attempt is counted as
        failed until `succeeded`), else (None, seconds to wait)."""
        ip_key = address_key(address)
        name_key = f"name:{name.lower()[:MAX_LIMITER_KEY_CHARS]}"
        attempt = secrets.token_hex(8)
        with self.store.transaction() as conn:
            self.store.serialise(conn, "login-attempts")  # SQLite: BEGIN IMMEDIATE already is
            now_s = self._clock()  # read once it is this attempt's turn
            cutoff = now_s - LOGIN_WINDOW_SECONDS
            conn.execute("DELETE FROM login_attempts WHERE at <= ?", (cutoff,))
            by_ip = conn.execute("SELECT COUNT(*), MIN(at), MAX(at) FROM login_attempts WHERE key = ?",
                                 (ip_key,)).fetchone()
            by_name = conn.execute("SELECT COUNT(*), MIN(at) FROM login_attempts WHERE key = ?",
                                   (name_key,)).fetchone()
            wait = 0.0
            if by_ip[0] >= MAX_LOGIN_FAILURES:
                wait = by_ip[1] + LOGIN_WINDOW_SECONDS - now_s
            elif by_name[0] >= MAX_LOGIN_FAILURES and by_ip[0] > 0:
                # until this address is clean again, or the account's oldest failure ages out
                wait = min(by_ip[2], by_name[1]) + LOGIN_WINDOW_SECONDS - now_s
            if wait > 0:
                return None, max(wait, 0.001)
            for key in (ip_key, name_key):
                conn.execute("INSERT INTO login_attempts (attempt, key, at) VALUES (?, ?, ?)", (attempt, key, now_s))
        return attempt, 0.0

    def succeeded(self, attempt: str) -> None:
        """The attempt logged in: it no longer counts (the address's and the account's
        earlier failures still do, so one's own account cannot reset them)."""
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM login_attempts WHERE attempt = ?", (attempt,))


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
