"""`batplots users add|list|remove|passwd`, and the security options of `batplots serve`
(registered by batplots.cli.main)."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import click

from batplots.store import accounts
from batplots.store import db as storedb
from batplots.store.stories import Store, StoreError


def db_target(db: str | None) -> str | Path:
    """--db as the store takes it: a postgresql:// URL, or a SQLite path (default: serve's)."""
    if not db:
        return storedb.default_db_path()
    return db if "://" in db else Path(db)  # any other URL: the store says what it takes


def db_shown(target: str | Path) -> str:
    """--db for messages: a URL without its password."""
    return storedb.shown_url(target) if storedb.is_url(target) else str(target)


def db_option(func):
    return click.option("--db", "db_path", default=None, metavar="PATH|URL",
                        help="SQLite file or postgresql:// URL of the stories and users; default: the SQLite file "
                             "`batplots serve` uses.")(func)


def open_store(db_path: str | None) -> Store:
    target = db_target(db_path)
    try:
        store = Store(target)
    except (OSError, sqlite3.Error, StoreError) as exc:
        raise click.ClickException(f"cannot open the story database {db_shown(target)}: {exc}") from exc
    ctx = click.get_current_context(silent=True)
    if ctx is not None:  # the command's end releases the PostgreSQL pool
        ctx.call_on_close(store.close)
    return store


def read_password(from_stdin: bool) -> str:
    """The new password: typed twice without echo, or one line of standard input."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")


def password_stdin_option(func):
    return click.option("--password-stdin", is_flag=True,
                        help="Read the password from the first line of standard input (for scripts).")(func)


@click.group("users")
def users():
    """Accounts for a server on a network address (a loopback server has no login)."""


@users.command("add")
@click.argument("name")
@db_option
@password_stdin_option
@click.option("--claim-unowned", is_flag=True,
              help="Also give this user the stories written without accounts (on a loopback server).")
def users_add(name, db_path, password_stdin, claim_unowned):
    """Add a user; the password is asked twice, without echo."""
    store = open_store(db_path)
    try:
        accounts.check_name(name)
        user = accounts.add_user(store, name, read_password(password_stdin))
        claimed = accounts.claim_unowned(store, name) if claim_unowned else 0
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    extra = f"; {claimed} stories without an owner are now theirs" if claim_unowned else ""
    click.echo(f"added user {user['name']} to {store.describe()}{extra}")


@users.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
def users_list(db_path, as_json):
    """Users, their story counts and live sessions."""
    rows = accounts.list_users(open_store(db_path))
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no users yet (`batplots users add NAME` adds one)")
    for row in rows:
        click.echo(f"{row['name']}\t{row['stories']} stories\t{row['sessions']} sessions\tsince {row['created_at']}")


@users.command("remove")
@click.argument("name")
@db_option
@click.option("--yes", is_flag=True, help="Do not ask before deleting the user's stories.")
def users_remove(name, db_path, yes):
    """Remove a user, their sessions and all their stories."""
    store = open_store(db_path)
    try:
        count = accounts.story_count(store, name)
        if not yes:
            click.confirm(f"Remove {name} and delete their {count} stories?", abort=True)
        removed = accounts.remove_user(store, name)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"removed user {name} and {removed} stories")


@users.command("passwd")
@click.argument("name")
@db_option
@password_stdin_option
def users_passwd(name, db_path, password_stdin):
    """Set a user's password (asked twice, without echo); logs out their sessions."""
    store = open_store(db_path)
    try:
        accounts.story_count(store, name)  # an unknown name fails before the prompt
        accounts.set_password(store, name, read_password(password_stdin))
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"changed the password of {name}; their sessions are logged out")


def security_options(func):
    """--allowed-host, --api-key and --no-auth for `batplots serve`."""
    func = click.option("--no-auth", is_flag=True,
                        help="On a network address, serve without accounts: anyone who can reach it can read, "
                             "change and delete every story (a warning is printed and shown on the page). On "
                             "0.0.0.0 or :: it needs --allowed-host too.")(func)
    func = click.option("--api-key", default=None, envvar="BATPLOTS_API_KEY", metavar="KEY",
                        help="Bearer key that /v1 (the OpenAI API) requires; needed for /v1 on a network "
                             "address. [env: BATPLOTS_API_KEY]")(func)
    func = click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
                        help="Also answer requests for this host name (repeatable), e.g. the name a reverse "
                             "proxy or your LAN gives this machine.")(func)
    return func


def _user_count(db: str | Path) -> int:
    if storedb.is_url(db):  # opening it migrates it, as serve is about to
        store = open_store(db)
        try:
            return accounts.count_users(store)
        finally:
            store.close()
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]
    except sqlite3.Error:
        return 0  # a database from before accounts (migrated when the app opens it)
    finally:
        conn.close()


def serve_security(host: str, allowed_hosts: tuple[str, ...], api_key: str | None, no_auth: bool, db: str | Path):
    """The SecurityConfig for `batplots serve`, its notes printed; refuses unsafe setups."""
    from batplots.web.security import SecurityError, serving_config

    try:
        config, notes = serving_config(host, allowed_hosts, api_key, no_auth, _user_count(db),
                                       f"batplots users add NAME --db {db_shown(db)}")
    except SecurityError as exc:
        raise click.ClickException(str(exc)) from exc
    for note in notes:
        click.echo(f"batplots: {note}", err=True)
    return config
