"""`mailmgr queue` as a real subprocess against a running `mailmgr serve` whose relay is down:
the CLI finds the spool locked and goes through the admin listener."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.queue.queue_support import (
    Sink,
    free_port,
    metric,
    queue_cli,
    relay_config,
    send,
    wait_attempts,
)
from tests.support import ServerProcess, write_config

Factory = Callable[[dict[str, Any]], ServerProcess]


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_list_show_retry_delete_while_running(tmp_path: Path, server_factory: Factory) -> None:
    relay_port = free_port()
    config = relay_config(tmp_path, relay_port)
    server = server_factory(config).start()
    cfg = server.config_file
    first = send(server.port, "alice@example.org", ["bob@example.net", "carol@example.net"])
    second = send(server.port, "dave@example.org", ["erin@example.net"])
    wait_attempts(server, first, 1)
    wait_attempts(server, second, 1)

    listed = queue_cli(cfg, "list", "--json")
    assert listed.status == 0, listed.err
    rows = {m["id"]: m for m in listed.json()["messages"]}
    assert set(rows) == {first, second}
    row = rows[first]
    now = time.time()
    assert row["mail_from"] == "alice@example.org"
    assert row["recipients"] == ["bob@example.net", "carol@example.net"]
    assert row["attempts"] == 1 and row["state"] == "retrying" and row["status"] == "scheduled"
    assert now + 200 < row["next_attempt_at"] < now + 400  # InitialDelaySeconds 300
    assert "ConnectionRefusedError" in row["last_error"] and len(row["last_error"]) <= 300
    assert row["size"] > 50 and 0 <= row["age_seconds"] < 60
    assert sorted(row) == sorted(["id", "received_at", "age_seconds", "size", "mail_from",
                                  "recipients", "attempts", "next_attempt_at", "last_error",
                                  "state", "status"])
    assert queue_cli(cfg, "list", "--state", "pending", "--json").json() == {"messages": []}
    assert len(queue_cli(cfg, "list", "--state", "retrying", "--json").json()["messages"]) == 2

    text = queue_cli(cfg, "list")
    assert text.status == 0
    assert first in text.out and "alice@example.org -> bob@example.net, carol@example.net" \
        in text.out
    assert "last error: " in text.out and "2 messages (0 pending, 2 retrying)" in text.out

    shown = queue_cli(cfg, "show", first, "--json")
    assert shown.status == 0, shown.err
    detail = shown.json()
    assert detail["envelope"]["mail_from"] == "alice@example.org"
    assert detail["envelope"]["rcpt_to"] == ["bob@example.net", "carol@example.net"]
    assert detail["session"]["ingress_point_name"] == "inbound"
    assert detail["session"]["helo"] == "client.example.org"
    assert detail["session"]["peer_ip"] == "127.0.0.1"
    assert set(detail["verdicts"]) == {"spf", "dkim", "dmarc", "dmarc_policy"}
    progress = detail["progress"]
    # AddHeader (action 0) done and checkpointed; the Relay (action 1) waits for its retry.
    assert (progress["rule_index"], progress["action_index"]) == (0, 1)
    assert progress["added_headers"] == [["X-Queued", "yes"]]
    assert progress["live"] == ["bob@example.net", "carol@example.net"]
    assert progress["attempts"] == 1 and "ConnectionRefusedError" in progress["last_error"]
    text = queue_cli(cfg, "show", first)
    assert "mail from:      alice@example.org" in text.out and "next action 2" in text.out

    scraped = _scrape(server.admin_port)
    assert metric(scraped, "mailmgr_spool_messages", 'state="retrying"') == 2
    assert metric(scraped, "mailmgr_spool_messages", 'state="pending"') == 0
    assert 0 < metric(scraped, "mailmgr_spool_oldest_message_age_seconds") < 60

    # retry: the next attempt happens at once (the relay is still down: attempts 1 -> 2)
    retried = queue_cli(cfg, "retry", first)
    assert retried.status == 0 and "due now (was scheduled for later)" in retried.out
    wait_attempts(server, first, 2)
    deadline = time.monotonic() + 10
    while True:  # until its checkpoint after the failed attempt is in
        rows = {m["id"]: m for m in queue_cli(cfg, "list", "--json").json()["messages"]}
        if rows[first]["attempts"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert rows[first]["attempts"] == 2 and rows[second]["attempts"] == 1
    assert rows[first]["status"] == "scheduled"

    # delete: gone at once, logged once, never delivered
    deleted = queue_cli(cfg, "delete", second, "--json")
    assert deleted.status == 0 and deleted.json() == {"id": second, "deleted": True}
    event = server.wait_for("queue.deleted", 5, message_id=second)
    assert event["server_running"] is True
    assert [m["id"] for m in queue_cli(cfg, "list", "--json").json()["messages"]] == [first]
    gone = queue_cli(cfg, "show", second)
    assert gone.status == 1 and f"no message {second} in the queue" in gone.err
    assert queue_cli(cfg, "delete", second).status == 1

    scraped = _scrape(server.admin_port)
    assert metric(scraped, "mailmgr_spool_messages", 'state="retrying"') == 1

    # the relay comes up; retry --all delivers the remaining message now, not in 5 minutes
    with Sink(relay_port) as sink:
        everything = queue_cli(cfg, "retry", "--all", "--json")
        assert everything.status == 0 and everything.json() == {"retried": 1}
        sink.wait(1)
        server.wait_for("message.processed", 10, message_id=first)
        assert queue_cli(cfg, "list", "--json").json() == {"messages": []}
        assert queue_cli(cfg, "list").out.strip() == "the queue is empty"
        scraped = _scrape(server.admin_port)
        assert metric(scraped, "mailmgr_spool_messages", 'state="retrying"') == 0
        assert metric(scraped, "mailmgr_spool_oldest_message_age_seconds") == 0
        assert server.stop() == 0

        # after a restart the deleted message does not come back (and is never relayed)
        again = ServerProcess(cfg).start()
        try:
            assert again.wait_for("server.started")["recovered"] == 0
            assert queue_cli(cfg, "list", "--json").json() == {"messages": []}
            time.sleep(0.5)
            assert [r[1] for r in sink.handler.received] == [["bob@example.net",
                                                              "carol@example.net"]]
        finally:
            assert again.stop() == 0


def test_delete_of_a_message_in_flight_is_refused(tmp_path: Path, server_factory: Factory
                                                  ) -> None:
    relay_port = free_port()
    with Sink(relay_port, delay=4.0) as sink:  # DATA takes 4 s: the message stays in flight
        server = server_factory(relay_config(tmp_path, relay_port)).start()
        mid = send(server.port, "alice@example.org", ["bob@example.net"])
        time.sleep(1.0)  # the relay transaction is under way (DATA answers after 4 s)
        row = queue_cli(server.config_file, "list", "--json").json()["messages"][0]
        assert row["status"] == "in-flight"
        refused = queue_cli(server.config_file, "delete", mid)
        assert refused.status == 1
        assert f"message {mid} is in flight" in refused.err and "try again" in refused.err
        server.wait_for("message.processed", 10, message_id=mid)
        assert len(sink.handler.received) == 1
        assert not any(e.get("event") == "queue.deleted" for e in server.events)


def test_errors_bad_id_admin_off_and_token(tmp_path: Path, server_factory: Factory) -> None:
    relay_port = free_port()
    token_file = tmp_path / "admin-token"
    token_file.write_text("s3cret-tok\n")
    admin = {"Listen": [f"127.0.0.1:{free_port()}"], "DrainSeconds": 0,
             "TokenFile": str(token_file)}
    config = relay_config(tmp_path, relay_port, admin=admin)
    server = server_factory(config).start()
    cfg = server.config_file

    # the token from the same config is sent; a config without it is refused clearly
    assert queue_cli(cfg, "list", "--json").json() == {"messages": []}
    no_token = dict(config, Server={**config["Server"],
                                    "Admin": {k: v for k, v in admin.items()
                                              if k != "TokenFile"}})
    other = write_config(tmp_path / "no-token.yaml", no_token)
    refused = queue_cli(other, "list")
    assert refused.status == 1
    assert "wants a bearer token" in refused.err and "Server.Admin.TokenFile" in refused.err
    wrong = tmp_path / "wrong-token"
    wrong.write_text("nope\n")
    bad = write_config(tmp_path / "bad-token.yaml", dict(
        config, Server={**config["Server"], "Admin": {**admin, "TokenFile": str(wrong)}}))
    assert "was refused" in queue_cli(bad, "list").err

    for args in (["show", "zzzzzzzzzzzzzzzzzzzzzzzz"], ["retry", "zzzzzzzzzzzzzzzzzzzzzzzz"],
                 ["delete", "zzzzzzzzzzzzzzzzzzzzzzzz"], ["show", "not/an-id"]):
        unknown = queue_cli(cfg, *args)
        assert unknown.status == 1 and "in the queue" in unknown.err, (args, unknown.err)
    assert queue_cli(cfg, "retry").status == 2  # neither ID nor --all
    assert not any("s3cret-tok" in line for line in server.raw)
    assert server.stop() == 0

    off = relay_config(tmp_path, relay_port, admin={"Listen": [], "DrainSeconds": 0})
    running = server_factory(off).start()
    answer = queue_cli(running.config_file, "list")
    assert answer.status == 2
    assert "admin listener is off" in answer.err and len(answer.err.strip().splitlines()) == 1
    assert running.stop() == 0
