"""Helpers for the shared-configuration tests: configs whose rule set stamps a header, a DSN
with a password (trust authentication ignores it) to prove it is never printed, the CLI."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.state.postgres_support import PostgresInstance
from tests.support import ROOT, basic_config

PASSWORD = "pw-never-printed-7f3a"


def secret_dsn(postgres: PostgresInstance) -> str:
    """A fresh database's DSN carrying PASSWORD (trust authentication ignores it)."""
    dsn = postgres.fresh_database()
    return dsn.replace("postgresql://mailmgr@", f"postgresql://mailmgr:{PASSWORD}@")


def database(dsn: str) -> str:
    return dsn.rsplit("/", 1)[1]


def local_config(tmp_path: Path, dsn: str, name: str) -> dict[str, Any]:
    """A replica's local file: its own data folder, the shared store, `inbound` on port 0."""
    folder = tmp_path / name
    data = basic_config(folder, SharedState={"PostgreSQL": {"Dsn": dsn}})
    data["Server"]["Hostname"] = f"{name}.test.example"
    return data


def shared_config(tmp_path: Path, stamp: str, listen_port: int = 1) -> dict[str, Any]:
    """The resources to push: `inbound` (its Listen must never be used: port `listen_port`),
    a rule set that adds `X-Fleet: <stamp>` and archives."""
    data = basic_config(tmp_path / "pushed")
    del data["Server"]
    data["IngressPoints"][0]["Listen"] = [f"127.0.0.1:{listen_port}"]
    rule = data["RuleSets"][0]["Rules"][0]
    rule["Actions"][0] = {"AddHeader": {"HeaderName": "X-Fleet", "HeaderValue": stamp}}
    return data


def cli(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--config", str(config)] if config is not None else []
    return subprocess.run(
        [sys.executable, "-m", "mailmgr", *args, *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
    )


class CuttableLink:
    """A TCP forwarder to PostgreSQL on its own port that the test can cut (every connection
    closed, new ones refused) and restore: a database outage as the replica sees it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> CuttableLink:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
