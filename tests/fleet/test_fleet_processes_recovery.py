"""`Processes: 2` recovery: a SIGKILLed worker is restarted and its shard's unfinished message is
processed; going from 2 processes to 1 processes shard 1's messages; a worker that cannot start
stops the supervisor with status 1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.processes_support import fleet_config, http_get, metric, send, start, wait_archived
from tests.queue.queue_support import Sink, free_port
from tests.support import ROOT, write_config


def _relay_then_archive(tmp_path: Path, relay_port: int, processes: int) -> dict[str, Any]:
    """Rule: relay to 127.0.0.1:relay_port, then archive: a message is archived only once the
    relay took it, so a slow relay keeps it unfinished in its worker's shard."""
    config = fleet_config(tmp_path, processes, ShutdownGraceSeconds=1)
    config["Relays"] = [{"RelayName": "upstream", "ServerName": "127.0.0.1",
                         "ServerPort": relay_port, "Authentication": {"NoAuthentication": {}}}]
    config["RuleSets"][0]["Rules"] = [{"Name": "relay-then-archive", "Actions": [
        {"Relay": {"Relay": "upstream", "MailFrom": "PRESERVE"}},
        {"Archive": {"TargetArchive": "default"}},
    ]}]
    return config


def test_killed_worker_is_restarted_and_its_message_processed(tmp_path: Path) -> None:
    relay_port = free_port()
    with Sink(relay_port, delay=60.0) as sink:
        server = start(tmp_path, _relay_then_archive(tmp_path, relay_port, 2))
        try:
            message_id = send(server.port, "in flight")
            accepted = server.wait_for("smtp.accepted", message_id=message_id)
            worker, pid = accepted["worker"], accepted["pid"]
            time.sleep(0.5)  # the relay is in DATA, held by the sink
            # /queue on the supervisor: the list merges both shards, one ID goes to its worker
            status, body = http_get(server.admin_port, "/queue")
            assert status == 200 and [m["id"] for m in json.loads(body)["messages"]] == [
                message_id]
            status, body = http_get(server.admin_port, f"/queue/{message_id}")
            assert status == 200 and json.loads(body)["id"] == message_id
            assert http_get(server.admin_port, "/queue/0000000000000000nosuchid")[0] == 404
            seen = len(server.events)
            sink.handler.delay = 0.0  # the restarted worker's attempt goes through
            os.kill(pid, signal.SIGKILL)
            exited = server.after("supervisor.worker_exited", seen, worker=worker)
            assert exited["pid"] == pid and exited["returncode"] == -signal.SIGKILL
            restarted = server.after("supervisor.worker_started", seen, worker=worker)
            assert restarted["pid"] != pid
            assert wait_archived(server.config_file, 1) == ["in flight"]
            status, text = http_get(server.admin_port, "/metrics")
            assert status == 200
            assert metric(text, "mailmgr_worker_restarts_total") == 1
            assert metric(text, 'mailmgr_workers{state="ready"}') == 2
        finally:
            assert server.stop() == 0


@pytest.mark.parametrize(("before", "after", "adopted_from"), [
    (2, 1, {"0", "1"}),  # one process takes over both shards
    (1, 2, {"spool"}),  # the supervisor moves the single-process spool into shard 0
])
def test_changing_processes_processes_every_shard(tmp_path: Path, before: int, after: int,
                                                  adopted_from: set[str]) -> None:
    relay_port = free_port()
    with Sink(relay_port, delay=60.0) as sink:
        server = start(tmp_path, _relay_then_archive(tmp_path, relay_port, before))
        sent: list[str] = []
        try:
            workers: set[int] = set()
            while workers != set(range(before)) and len(sent) < 30:
                message_id = send(server.port, f"shard {len(sent)}")
                sent.append(message_id)
                accepted = server.wait_for("smtp.accepted", message_id=message_id)
                workers.add(accepted.get("worker", 0))
            assert workers == set(range(before))
        finally:
            assert server.stop() == 0  # the relays in flight are cut: unfinished in the shards
        sink.handler.delay = 0.0
        again = start(tmp_path, _relay_then_archive(tmp_path, relay_port, after), "again.yaml")
        try:
            adopted = [e for e in again.events if e.get("event") == "spool.shard_adopted"]
            assert {Path(e["directory"]).name for e in adopted} == adopted_from
            assert sum(e["messages"] for e in adopted) == len(sent)
            subjects = wait_archived(again.config_file, len(sent))
            assert sorted(subjects) == sorted(f"shard {n}" for n in range(len(sent)))
        finally:
            assert again.stop() == 0


def test_a_worker_that_cannot_bind_stops_the_supervisor_with_status_1(tmp_path: Path) -> None:
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: nobody can share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = fleet_config(tmp_path)
        config["IngressPoints"][0]["Listen"] = [f"127.0.0.1:{taken.getsockname()[1]}"]
        path = write_config(tmp_path / "mailmgr.yaml", config)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "mailmgr", "serve", "--config", str(path)],
            capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert time.monotonic() - started < 20
    assert "server.start_failed" in done.stderr and "Traceback" not in done.stderr
    assert "supervisor.worker_started" not in done.stderr


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    server = start(tmp_path, fleet_config(tmp_path))
    server.kill()  # SIGKILL: no signal forwarded; the workers see their pipe close
    for index in (0, 1):
        server.wait_for("supervisor.lost", worker=index)
        server.wait_for("server.stopped", timeout=20, worker=index)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", server.port)) != 0
