"""`Log.Records` follows a SIGHUP reload: off, then on for the next session, without a restart."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.records.records_support import (
    INGRESS_APPLICATION,
    RECORD_EVENTS,
    RULE_SET_APPLICATION,
    TRAFFIC_DEBUG,
    port_of,
    records,
    records_config,
    send,
)
from tests.support import ServerProcess, write_config


def test_sighup_turns_records_on(
    tmp_path: Path, server_factory: Callable[[dict[str, Any]], ServerProcess]
) -> None:
    server = server_factory(records_config(tmp_path, records="none")).start()
    port = port_of(server, "inbound")
    before, _ = send(port, ["ok@example.com"])
    server.wait_for("message.processed", 20.0, message_id=before)
    assert not [e for e in server.events if e.get("event") in RECORD_EVENTS]

    write_config(server.config_file, records_config(tmp_path, records="mailmanager"))
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for("config.reloaded", 10.0)
    after, _ = send(port, ["ok@example.com"])
    server.wait_for("message.processed", 20.0, message_id=after)
    assert len(records(server, INGRESS_APPLICATION, message_id=after)) == 1
    assert len(records(server, TRAFFIC_DEBUG, recipient="ok@example.com")) == 1
    assert [r["rule_name"] for r in records(server, RULE_SET_APPLICATION, message_id=after)] \
        == ["tag", "never", "relay-down"]
    assert server.stop() == 0
