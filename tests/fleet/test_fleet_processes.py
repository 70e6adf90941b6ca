"""`Server.Processes: 2`: a supervisor and two worker processes sharing one SMTP port
(SO_REUSEPORT), each with its own spool shard; logs, archive, metrics and signals as one server."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.fleet.processes_support import (
    fleet_config,
    http_get,
    metric,
    send,
    start,
    wait_archived,
)


def test_two_workers_accept_on_one_port_and_archive_each_message_once(tmp_path: Path) -> None:
    server = start(tmp_path, fleet_config(tmp_path))
    try:
        ids = {send(server.port, f"fleet {n}"): n for n in range(40)}
        accepted = [e for e in server.events if e.get("event") == "smtp.accepted"]
        assert {e["message_id"] for e in accepted} == set(ids)  # the 250's ID is the logged one
        assert {e["worker"] for e in accepted} == {0, 1}
        assert len({e["pid"] for e in accepted}) == 2
        subjects = wait_archived(server.config_file, 40)
        assert sorted(subjects) == sorted(f"fleet {n}" for n in range(40))  # exactly once each
        var = tmp_path / "var" / "spool"
        assert (var / "0" / "segments").is_dir() and (var / "1" / "segments").is_dir()

        status, text = http_get(server.admin_port, "/metrics")
        assert status == 200
        assert metric(text, 'mailmgr_messages_accepted_total{ingress_point="inbound"}') == 40
        assert metric(text, 'mailmgr_workers{state="ready"}') == 2
        assert text.count("# TYPE mailmgr_config_info gauge") == 1
        assert http_get(server.admin_port, "/healthz/ready") == (200, "ready\n")
        status, body = http_get(server.admin_port, "/queue")
        assert status == 200 and '"messages"' in body
    finally:
        assert server.stop() == 0
    with socket.socket() as sock:  # the port is closed: nobody listens any more
        assert sock.connect_ex(("127.0.0.1", server.port)) != 0
    stopped = [e for e in server.events if e.get("event") == "server.stopped"]
    assert {e.get("worker") for e in stopped} == {0, 1, None}


def test_sighup_reloads_every_worker(tmp_path: Path) -> None:
    config = fleet_config(tmp_path)
    server = start(tmp_path, config)
    try:
        seen = len(server.events)
        server.signal(signal.SIGHUP)
        server.after("config.reloaded", seen, worker=0)
        server.after("config.reloaded", seen, worker=1)
    finally:
        assert server.stop() == 0
