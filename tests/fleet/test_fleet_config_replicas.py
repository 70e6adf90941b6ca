"""Real `mailmgr serve` replicas with `Server.SharedState` on one real PostgreSQL: a push
reaches every replica within 10 s without a restart (NOTIFY, or polling when the listening
connection is lost), local listen addresses win, a document this host cannot load is not
applied, and a missing store stops start-up with a located problem. The DSN is never logged."""

from __future__ import annotations

import json
import signal
import smtplib
import socket
import time
from pathlib import Path

from tests.fleet.fleet_config_support import (
    PASSWORD,
    CuttableLink,
    cli,
    database,
    local_config,
    secret_dsn,
    shared_config,
)
from tests.state.postgres_support import PostgresInstance
from tests.support import ServerProcess, write_config

APPLY_WITHIN = 10.0  # seconds: interface.md, "Shared configuration"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _push(tmp_path: Path, local: Path, stamp: str, port: int) -> None:
    file = write_config(tmp_path / f"push-{stamp}.yaml", shared_config(tmp_path, stamp, port))
    result = cli("config", "push", str(file), config=local)
    assert result.returncode == 0, result.stderr


def _send(server: ServerProcess, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.sendmail("alice@sender.test", ["bob@mailmgr.test"],
                      f"From: alice@sender.test\r\nTo: bob@mailmgr.test\r\nSubject: {subject}"
                      f"\r\n\r\nbody\r\n".encode())


def _header_of_sent(server: ServerProcess, subject: str) -> str:
    """Send one message to `server` and return its archived X-Fleet header line."""
    _send(server, subject)
    return _archived_header(server, subject)


def _archived_header(server: ServerProcess, subject: str) -> str:
    """The X-Fleet header line of the archived message with `subject` (waits up to 15 s)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = cli("archive", "search", "--json", "--subject", subject,
                    config=server.config_file)
        rows = json.loads(found.stdout) if found.returncode == 0 else []
        if rows:
            got = cli("archive", "get", rows[0]["ArchivedMessageId"], config=server.config_file)
            return next((line for line in got.stdout.splitlines()
                         if line.startswith("X-Fleet:")), "")
        time.sleep(0.2)
    raise AssertionError(f"{subject!r} was not archived")


def _replica(tmp_path: Path, dsn: str, name: str) -> ServerProcess:
    return ServerProcess(write_config(tmp_path / f"{name}.yaml",
                                      local_config(tmp_path, dsn, name)))


def _no_secret(*servers: ServerProcess) -> None:
    for server in servers:
        assert not any(PASSWORD in line for line in server.raw)


def test_one_push_reaches_two_replicas_and_local_listen_wins(
        tmp_path: Path, postgres: PostgresInstance) -> None:
    dsn = secret_dsn(postgres)
    pushed_port = _free_port()  # the document's Listen: neither replica may bind it
    replicas = [_replica(tmp_path, dsn, "r1"), _replica(tmp_path, dsn, "r2")]
    _push(tmp_path, replicas[0].config_file, "one", pushed_port)
    try:
        for server in replicas:
            server.start()
            server.wait_for("config.shared_fetched", version=1)
        ports = {server.port for server in replicas}
        assert len(ports) == 2 and pushed_port not in ports
        assert _header_of_sent(replicas[0], "before r1") == "X-Fleet: one"

        pushed_at = time.monotonic()
        _push(tmp_path, replicas[1].config_file, "two", pushed_port)
        for server in replicas:
            left = APPLY_WITHIN - (time.monotonic() - pushed_at)
            server.wait_for("config.shared_fetched", timeout=max(left, 0.1), version=2)
            server.wait_for("config.reloaded", timeout=max(left, 0.1))
        assert {server.port for server in replicas} == ports  # nothing rebound
        assert _header_of_sent(replicas[0], "after r1") == "X-Fleet: two"
        assert _header_of_sent(replicas[1], "after r2") == "X-Fleet: two"
        for server in replicas:
            assert server.proc is not None and server.proc.poll() is None  # no restart
            reloaded = server.wait_for("config.reloaded")
            assert reloaded["rebound"] == [] and reloaded["failed"] == []
    finally:
        for server in replicas:
            if server.proc is not None:
                assert server.stop() == 0
    _no_secret(*replicas)


def test_polling_applies_a_push_when_the_listener_is_gone(
        tmp_path: Path, postgres: PostgresInstance) -> None:
    dsn = secret_dsn(postgres)
    server = _replica(tmp_path, dsn, "r1")
    _push(tmp_path, server.config_file, "one", 1)
    server.start()
    try:
        server.wait_for("config.shared_fetched", version=1)
        deadline = time.monotonic() + 10
        killed = "0"
        while killed == "0" and time.monotonic() < deadline:  # the listener connects at start
            killed = postgres.psql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                "application_name = 'mailmgr-config-listen'", database(dsn))
            time.sleep(0.1)
        assert killed == "1"
        pushed_at = time.monotonic()
        _push(tmp_path, server.config_file, "two", 1)
        left = APPLY_WITHIN - (time.monotonic() - pushed_at)
        server.wait_for("config.shared_fetched", timeout=left, version=2)
        server.wait_for("config.reloaded", timeout=APPLY_WITHIN)
        assert _header_of_sent(server, "after the outage") == "X-Fleet: two"
        # The LISTEN connection comes back by itself.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and postgres.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE "
                "application_name = 'mailmgr-config-listen'", database(dsn)) != "1":
            time.sleep(0.2)
        assert time.monotonic() < deadline
    finally:
        assert server.stop() == 0
    _no_secret(server)


def test_a_document_this_host_cannot_load_is_not_applied(
        tmp_path: Path, postgres: PostgresInstance) -> None:
    dsn = secret_dsn(postgres)
    server = _replica(tmp_path, dsn, "r1")
    _push(tmp_path, server.config_file, "one", 1)
    server.start()
    try:
        server.wait_for("config.shared_fetched", version=1)
        # Valid where it is pushed from (the CA file is next to it), not on this replica.
        other = tmp_path / "elsewhere"
        other.mkdir()
        (other / "ca.pem").write_text((tmp_path / "r1" / "certs" / "server.pem").read_text())
        data = shared_config(tmp_path, "two")
        data["Relays"] = [{"RelayName": "up", "ServerName": "smtp.example.test",
                           "ServerPort": 25, "Authentication": {"NoAuthentication": {}},
                           "Tls": {"CaFile": "ca.pem"}}]
        file = write_config(other / "push.yaml", data)
        assert cli("config", "push", str(file), config=server.config_file).returncode == 0

        failed = server.wait_for("config.reload_failed", timeout=APPLY_WITHIN)
        assert any(p.startswith("shared config v2: $.Relays[0].Tls.CaFile")
                   for p in failed["problems"])
        assert _header_of_sent(server, "still one") == "X-Fleet: one"

        # SIGHUP re-reads the local file and the shared document: once this host has the file
        # the document names, the same version applies.
        (tmp_path / "ca.pem").write_text((other / "ca.pem").read_text())
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for("config.reloaded", timeout=APPLY_WITHIN)
        assert _header_of_sent(server, "now two") == "X-Fleet: two"
    finally:
        assert server.stop() == 0
    _no_secret(server)


def test_start_up_without_the_store_fails_cleanly(tmp_path: Path) -> None:
    """An unreachable database is an operational failure, like a port in use: exit 1 with
    server.start_failed naming Server.SharedState (a config problem would exit 2)."""
    dsn = f"postgresql://mailmgr:{PASSWORD}@127.0.0.1:{_free_port()}/mailmgr"
    local = write_config(tmp_path / "local.yaml", local_config(tmp_path, dsn, "r1"))
    result = cli("serve", config=local)
    assert result.returncode == 1, result
    assert "server.start_failed" in result.stderr
    assert "cannot connect to PostgreSQL" in result.stderr
    assert "Server.SharedState" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_database_outage_delays_reloads_but_never_ingest(
        tmp_path: Path, postgres: PostgresInstance) -> None:
    dsn = secret_dsn(postgres)
    link = CuttableLink(postgres.port).start()
    through_link = dsn.replace(f":{postgres.port}/", f":{link.port}/")
    admin = write_config(tmp_path / "admin.yaml", local_config(tmp_path, dsn, "admin"))
    _push(tmp_path, admin, "one", 1)
    server = _replica(tmp_path, through_link, "r1")
    server.start()
    try:
        server.wait_for("config.shared_fetched", version=1)
        link.cut()
        server.wait_for("config.shared_unavailable", timeout=APPLY_WITHIN)
        # accepted during the outage (250); the archive index lives in the same database, so
        # its Archive action waits in the spool and runs once the database is back
        _send(server, "during the outage")
        _push(tmp_path, admin, "two", 1)
        time.sleep(6)  # more than a poll interval: still one line for the outage
        assert sum(e.get("event") == "config.shared_unavailable" for e in server.events) == 1
        link.start()  # the same port again
        server.wait_for("config.shared_fetched", timeout=APPLY_WITHIN + 5, version=2)
        server.wait_for("config.reloaded", timeout=APPLY_WITHIN)
        server.wait_for("config.shared_available")
        assert _header_of_sent(server, "after the outage") == "X-Fleet: two"
        # AddHeader ran (and was checkpointed) under the config of its time: "one"
        assert _archived_header(server, "during the outage") == "X-Fleet: one"
    finally:
        link.cut()
        assert server.stop() == 0
    _no_secret(server)
    assert not [line for line in server.raw if not line.startswith("{")]  # only our JSON lines
