"""`batplots db migrate|copy`: the story database's schema, and moving SQLite into PostgreSQL
(registered by batplots.cli.main)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import click
import psycopg

from batplots.store import copy as storecopy
from batplots.store import db as storedb
from batplots.cli.accounts import db_option, db_shown, open_store
from batplots.store.stories import MIGRATIONS, Invalid, StoreError


@click.group("db")
def db():
    """The story database: bring it up to date, or copy a SQLite one into PostgreSQL."""


@db.command("migrate")
@db_option
def migrate(db_path):
    """Apply the named migrations the database lacks (serve also does at start)."""
    store = open_store(db_path)  # opening applies them
    try:
        where = store.describe()
        if store.applied:
            click.echo(f"{where}: applied {', '.join(store.applied)}")
        else:
            click.echo(f"{where}: up to date ({len(MIGRATIONS)} migrations, the last {MIGRATIONS[-1][0]})")
    finally:
        store.close()


@db.command("copy")
@click.option("--from", "source", required=True, metavar="SQLITE_PATH", help="The SQLite story database to copy.")
@click.option("--to", "target", required=True, metavar="URL",
              help="The PostgreSQL database to copy into: postgresql://USER@HOST:PORT/DBNAME (empty, or filled by "
                   "an earlier, interrupted copy of the same source).")
def copy(source, target):
    """Copy every story, turn, redo stack, user and session from SQLite into PostgreSQL,
    then verify row counts and checksums. Run it again to finish an interrupted copy.
    Stop the app instances that write to the source first."""
    if storedb.is_url(source) or "://" in source:
        raise click.UsageError(f"--from takes the path of a SQLite file, not a URL ({db_shown(source)})")
    if not Path(source).is_file():
        raise click.UsageError(f"--from {source}: no such file; give the SQLite story database to copy "
                               "(`batplots serve` keeps it at stories.sqlite3 under $BATPLOTS_HOME)")
    if not storedb.is_url(target):
        raise click.UsageError(f"--to {target!r} is not a PostgreSQL URL; the form is "
                               "postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME")
    src = open_store(source)
    dst = open_store(target)
    try:
        report = storecopy.copy(src, dst, progress=lambda line: click.echo(f"batplots: {line}", err=True))
    except Invalid as exc:  # the target is not this source's copy: nothing was written
        raise click.ClickException(f"nothing copied: {exc}") from exc
    except (sqlite3.Error, psycopg.Error, StoreError) as exc:
        raise click.ClickException(f"the copy stopped: {exc}; run the same command again to go on") from exc
    finally:
        src.close()
        dst.close()
    for table, sides in report["tables"].items():
        (rows_a, sum_a), (rows_b, sum_b) = sides["source"], sides["target"]
        mark = "ok" if sides["source"] == sides["target"] else "DIFFERENT"
        click.echo(f"{table:<11} {rows_a:>8} rows -> {rows_b:>8} rows  checksum {sum_a[:12]} -> {sum_b[:12]}  {mark}")
    if not report["ok"]:
        raise click.ClickException("the copy does not match its source (see the tables marked DIFFERENT): was "
                                   "something writing to either database meanwhile? Stop it and copy into an "
                                   "empty database again")
    click.echo(f"copied {report['copied']} stories ({report['skipped']} were already there) from {source} to "
               f"{db_shown(target)}; counts and checksums match")
