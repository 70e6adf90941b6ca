"""A real PostgreSQL (Debian package) for tests: `initdb` in a temp folder, `postgres` on a free
loopback port, as an unprivileged user (PostgreSQL refuses root, and CI runs as root), trust
authentication for the role `mailmgr`. Stopped by PID and removed afterwards.

Use the session fixture `postgres` (tests/conftest.py), or `postgres_instance()` anywhere.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_BINDIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
BINDIR = Path(_BINDIRS[0]) if _BINDIRS else None
MISSING = "PostgreSQL is not installed (Debian package postgresql)"


@dataclass(frozen=True)
class PostgresInstance:
    """`dsn` reaches the database `mailmgr` as role `mailmgr`; `fresh_database()` makes an
    empty database and returns its DSN (one per test keeps tests independent)."""

    directory: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def dsn(self) -> str:
        return self.dsn_for("mailmgr")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://mailmgr@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "mailmgr") -> str:
        assert BINDIR is not None
        done = subprocess.run(
            [str(BINDIR / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-d", self.dsn_for(database), "-c", sql],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def fresh_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:16]
        self.psql(f"CREATE DATABASE {name} OWNER mailmgr")
        return self.dsn_for(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> tuple[list[str], int | None, int | None]:
    """The command prefix and ids to run PostgreSQL's programs: as `postgres` (or `nobody`)
    through runuser when we are root, as ourselves otherwise."""
    if os.geteuid() != 0:
        return [], None, None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"], entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and neither 'postgres' nor 'nobody' exists")


@contextmanager
def postgres_instance(timeout: float = 60.0) -> Iterator[PostgresInstance]:
    """Start PostgreSQL; raises RuntimeError when it is missing or not ready in `timeout` s."""
    if BINDIR is None:
        raise RuntimeError(MISSING)
    prefix, uid, gid = _run_as()
    directory = Path(tempfile.mkdtemp(prefix="mailmgr-pg-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        data = directory / "data"
        if uid is not None and gid is not None:
            os.chown(directory, uid, gid)
        subprocess.run([*prefix, str(BINDIR / "initdb"), "-D", str(data), "-U", "mailmgr",
                        "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        port = _free_port()
        log = open(directory / "postgres.log", "wb")
        proc = subprocess.Popen(
            [*prefix, str(BINDIR / "postgres"), "-D", str(data), "-p", str(port), "-k",
             str(directory), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "max_connections=200"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        instance = PostgresInstance(directory, port, proc)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError("postgres exited: "
                                   + (directory / "postgres.log").read_text()[-2000:])
            try:
                instance.psql("SELECT 1", database="postgres")
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        instance.psql("CREATE DATABASE mailmgr OWNER mailmgr", database="postgres")
        yield instance
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()  # smart shutdown; `fast` would need the signal as that user
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(directory, ignore_errors=True)
