"""`mailmgr queue` against a stopped server's spool: the CLI takes the spool lock itself, acts
through records, and the next `mailmgr serve` sees what it did."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.queue.queue_support import (
    Sink,
    free_port,
    queue_cli,
    relay_config,
    send,
    wait_attempts,
)
from tests.support import ServerProcess

Factory = Callable[[dict[str, Any]], ServerProcess]


def test_list_show_retry_delete_on_a_stopped_server(tmp_path: Path, server_factory: Factory
                                                    ) -> None:
    relay_port = free_port()
    server = server_factory(relay_config(tmp_path, relay_port)).start()
    cfg = server.config_file
    first = send(server.port, "alice@example.org", ["bob@example.net"])
    second = send(server.port, "dave@example.org", ["erin@example.net", "frank@example.net"])
    third = send(server.port, "gina@example.org", ["hal@example.net"])
    for mid in (first, second, third):
        wait_attempts(server, mid, 1)
    time.sleep(0.3)  # the checkpoints after the failed attempts
    assert server.stop() == 0

    listed = queue_cli(cfg, "list", "--json")
    assert listed.status == 0, listed.err
    rows = listed.json()["messages"]
    assert [r["id"] for r in rows] == [first, second, third]  # arrival order
    now = time.time()
    for row in rows:
        assert row["status"] == "stopped" and row["state"] == "retrying"
        assert row["attempts"] == 1 and "ConnectionRefusedError" in row["last_error"]
        assert now + 200 < row["next_attempt_at"] < now + 400
    assert rows[1]["recipients"] == ["erin@example.net", "frank@example.net"]
    assert listed.err == ""  # no log lines on the terminal for a read

    detail = queue_cli(cfg, "show", second, "--json").json()
    assert detail["status"] == "stopped"
    assert detail["envelope"]["rcpt_to"] == ["erin@example.net", "frank@example.net"]
    assert detail["session"]["ingress_point_name"] == "inbound"
    assert (detail["progress"]["rule_index"], detail["progress"]["action_index"]) == (0, 1)

    # retry writes a STATE record: due at once at the next start
    retried = queue_cli(cfg, "retry", first)
    assert retried.status == 0 and "due at once when the server starts" in retried.out
    row = queue_cli(cfg, "list", "--json").json()["messages"][0]
    assert row["id"] == first and row["next_attempt_at"] is None and row["attempts"] == 1
    assert "now" in queue_cli(cfg, "list").out.splitlines()[1]

    # delete writes a DONE record, logged once (on stderr: the CLI is the spool's owner now)
    deleted = queue_cli(cfg, "delete", second)
    assert deleted.status == 0 and deleted.out.strip() == f"{second}: deleted"
    events = [json.loads(line) for line in deleted.err.splitlines()]
    assert [(e["event"], e["message_id"]) for e in events] == [("queue.deleted", second)]
    assert events[0]["server_running"] is False
    assert [r["id"] for r in queue_cli(cfg, "list", "--json").json()["messages"]] == [
        first, third]
    missing = queue_cli(cfg, "retry", second)
    assert missing.status == 1 and f"no message {second} in the queue" in missing.err

    # the server comes back with the relay up: `first` goes at once, `third` keeps its
    # 5-minute retry, `second` never comes back
    with Sink(relay_port) as sink:
        again = ServerProcess(cfg).start()
        try:
            assert again.wait_for("server.started")["recovered"] == 2
            sink.wait(1, timeout=10)
            again.wait_for("message.processed", 10, message_id=first)
            time.sleep(0.5)
            assert [r[1] for r in sink.handler.received] == [["bob@example.net"]]
            rows = queue_cli(cfg, "list", "--json").json()["messages"]
            assert [(r["id"], r["status"]) for r in rows] == [(third, "scheduled")]
        finally:
            assert again.stop() == 0

        # retry --all on the stopped server, then a start delivers the last one at once
        everything = queue_cli(cfg, "retry", "--all")
        assert everything.status == 0 and everything.out.strip() == "1 message due now"
        again = ServerProcess(cfg).start()
        try:
            again.wait_for("message.processed", 10, message_id=third)
            assert len(sink.handler.received) == 2
        finally:
            assert again.stop() == 0
    assert queue_cli(cfg, "list", "--json").json() == {"messages": []}
    gone = queue_cli(cfg, "show", "notanid")
    assert gone.status == 1 and "no message notanid in the queue" in gone.err


def test_locked_spool_without_a_usable_admin_listener(tmp_path: Path) -> None:
    """Another process holds the spool lock: the CLI never touches the spool and says why it
    cannot go through the admin listener (nothing listening: 1; port 0: 2)."""
    from tests.support import write_config

    spool = tmp_path / "var" / "spool"
    spool.mkdir(parents=True)
    fd = os.open(spool / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        port = free_port()
        cfg = write_config(tmp_path / "a.yaml", relay_config(
            tmp_path, free_port(), admin={"Listen": [f"127.0.0.1:{port}"]}))
        answer = queue_cli(cfg, "list")
        assert answer.status == 1
        assert f"the admin listener at http://127.0.0.1:{port} did not answer" in answer.err
        cfg = write_config(tmp_path / "b.yaml", relay_config(
            tmp_path, free_port(), admin={"Listen": ["127.0.0.1:0"]}))
        answer = queue_cli(cfg, "delete", "abcdefgh12345678")
        assert answer.status == 2 and "has port 0" in answer.err
        assert not any((spool / "segments").iterdir())  # no segment written by the CLI
    finally:
        os.close(fd)
