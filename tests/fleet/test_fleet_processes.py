"""`Server.Processes: 2`: a supervisor and two worker processes sharing one SMTP port
(SO_REUSEPORT), each with its own spool shard; logs, archive, metrics and signals as one server."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from tests.fleet.processes_support import (
    fleet_config,
    http_get,
    metric,
    send,
    start,
    wait_archived,
)
from tests.support import write_config


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
        assert metric(text, "mailmgr_data_to_reply_seconds_count") == 40  # histograms add up
        assert metric(text, 'mailmgr_data_to_reply_seconds_bucket{le="+Inf"}') == 40
        assert metric(text, 'mailmgr_spool_messages{state="pending"}') == 0
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


def _config_hashes(port: int) -> set[str]:
    status, text = http_get(port, "/metrics")
    assert status == 200
    return {line.split('hash="', 1)[1].split('"', 1)[0] for line in text.splitlines()
            if line.startswith("mailmgr_config_info{")}


def test_sighup_reloads_every_worker(tmp_path: Path) -> None:
    config = fleet_config(tmp_path)
    server = start(tmp_path, config)
    try:
        before = _config_hashes(server.admin_port)
        assert len(before) == 1
        config["RuleSets"][0]["Rules"][0]["Actions"][0]["AddHeader"]["HeaderValue"] = "again"
        write_config(server.config_file, config)
        seen = len(server.events)
        server.signal(signal.SIGHUP)
        server.after("config.reloaded", seen, worker=0)
        server.after("config.reloaded", seen, worker=1)
        after = _config_hashes(server.admin_port)  # both workers run the new config
        assert len(after) == 1 and after != before
    finally:
        assert server.stop() == 0


def test_sigterm_drains_then_exits_0_and_the_token_guards_metrics(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    # DrainSeconds long enough that a loaded CI machine still checks readiness within it
    config = fleet_config(tmp_path, Admin={"Listen": ["127.0.0.1:0"], "DrainSeconds": 4,
                                           "TokenFile": str(tmp_path / "token")})
    server = start(tmp_path, config)
    assert http_get(server.admin_port, "/metrics")[0] == 401
    assert http_get(server.admin_port, "/queue")[0] == 401
    assert http_get(server.admin_port, "/healthz/ready")[0] == 200
    server.signal(signal.SIGTERM)
    server.wait_for("server.draining")
    time.sleep(0.2)
    assert http_get(server.admin_port, "/healthz/ready") == (503, "draining\n")
    send(server.port, "during the drain")  # the workers still accept while draining
    assert server.proc is not None and server.proc.wait(20) == 0
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", server.port)) != 0


def test_a_second_sigterm_cuts_the_drain_short(tmp_path: Path) -> None:
    config = fleet_config(tmp_path, Admin={"Listen": ["127.0.0.1:0"], "DrainSeconds": 60})
    server = start(tmp_path, config)
    server.signal(signal.SIGTERM)
    server.wait_for("server.draining", worker=0)
    server.wait_for("server.draining", worker=1)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.proc is not None and server.proc.wait(20) == 0
    assert time.monotonic() - started < 15
