"""A throwaway PostgreSQL server from Debian's `postgresql` package, for tests and benchmarks.

initdb and pg_ctl run in a fresh temporary directory; the server listens on
127.0.0.1 (a free port) and on a Unix socket in that directory; logins over TCP
need the superuser's password (SCRAM, as a real server would), and the server is
stopped and deleted at the end. initdb and postgres refuse to run
as root (CI runs as root), so there they run as an unprivileged user (`postgres`
when the package made one, else `nobody`) that owns the directory.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "batplots"
PASSWORD = "throwaway-Pa55word"  # a server that lives for one test run, on 127.0.0.1 only
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30
MAX_CONNECTIONS = 200
MISSING = ("PostgreSQL's server programs are missing: install Debian's postgresql package "
           "(`make test` does: apt-get install postgresql)")


def pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError(MISSING)
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """start() / stop(); url(dbname) and create_database(name) while it runs.

    fast=True turns off fsync (tests: nothing here must survive a power cut);
    fast=False keeps PostgreSQL's durable defaults (the benchmark)."""

    def __init__(self, fast: bool = True):
        self.fast = fast
        self.bin = pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="batplots-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self.user = None
        self._names = itertools.count(1)
        if os.geteuid() == 0:
            self.user = "postgres" if _user_exists("postgres") else "nobody"
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o700)

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def start(self) -> "PgServer":
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        init = self._run(self.bin / "initdb", "-D", self.data, "-U", SUPERUSER, "--pwfile", pwfile,
                         "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync",
                         timeout=START_TIMEOUT_S * 2)
        if init.returncode:
            raise RuntimeError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        options = ["-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={self.root}",
                   f"-c max_connections={MAX_CONNECTIONS}"]
        if self.fast:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        for attempt in range(3):  # a free port may be taken between the check and the start
            self.port = free_port()
            started = self._run(self.bin / "pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-w",
                                "-t", str(START_TIMEOUT_S), "-o", " ".join(options + [f"-p {self.port}"]), "start",
                                timeout=START_TIMEOUT_S + 5)
            if started.returncode == 0:
                return self
        log = (self.root / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr.strip()}\n{log}")

    def url(self, dbname: str = "postgres", password: str | None = PASSWORD) -> str:
        secret = f":{password}" if password is not None else ""
        return f"postgresql://{SUPERUSER}{secret}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg
        from psycopg import sql

        name = f"{prefix}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (at once: nothing in it is kept) and delete it; again is a no-op."""
        if self.port and self.root.exists():
            self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", timeout=STOP_TIMEOUT_S)
        self.port = 0
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PgServer":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
