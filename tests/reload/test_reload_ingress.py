"""SIGHUP and ingress: a traffic policy change applies to new sessions while an open transaction
completes; points are updated in place, added (a bind failure skips only that point) and removed
(the removed point stops accepting while its open session finishes)."""

from __future__ import annotations

import copy
import smtplib
import socket
from pathlib import Path
from typing import Any

import pytest
from reload_support import port_of, reload, send

from tests.support import basic_config


def _point(name: str, listen: str) -> dict[str, Any]:
    return {"IngressPointName": name, "Type": "OPEN", "RuleSetId": "main",
            "TrafficPolicyId": "allow-all", "TlsPolicy": "OPTIONAL", "Listen": [listen]}


def _open_transaction(port: int) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=10)
    smtp.ehlo("open.test")
    assert smtp.mail("alice@sender.test")[0] == 250
    assert smtp.rcpt("bob@mailmgr.test")[0] == 250
    return smtp


def test_traffic_policy_change_applies_to_new_sessions_only(
    tmp_path: Path, server_factory  # type: ignore[no-untyped-def]
) -> None:
    config = basic_config(tmp_path)
    server = server_factory(config).start()
    open_session = _open_transaction(server.port)

    deny = copy.deepcopy(config)
    deny["TrafficPolicies"][0]["DefaultAction"] = "DENY"
    reload(server, deny)

    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as fresh:
        fresh.ehlo("client.test")
        assert fresh.mail("alice@sender.test")[0] == 250
        code, text = fresh.rcpt("bob@mailmgr.test")
    assert code == 550 and text.startswith(b"5.7.1")

    # The session opened before SIGHUP keeps the policy it started with.
    assert open_session.rcpt("carol@mailmgr.test")[0] == 250
    code, _ = open_session.data(b"Subject: opened before\r\n\r\nx\r\n")
    assert code == 250
    open_session.quit()
    assert server.stop() == 0


def test_points_are_added_updated_and_removed(
    tmp_path: Path, server_factory  # type: ignore[no-untyped-def]
) -> None:
    config = basic_config(tmp_path)
    config["IngressPoints"].append(_point("old", "127.0.0.1:0"))
    server = server_factory(config).start()
    old_port = port_of(server, "old")
    old_session = _open_transaction(old_port)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        changed = copy.deepcopy(config)
        changed["Server"]["Hostname"] = "mx2.test.example"
        changed["IngressPoints"][1:] = [_point("fresh", "127.0.0.1:0"),
                                        _point("clash", f"127.0.0.1:{busy}")]
        event = reload(server, changed)
        failure = server.wait_for("config.reload_failed", ingress_point="clash")
    assert failure["level"] == "ERROR"
    assert event["updated"] == ["inbound"]
    assert event["added"] == ["fresh"] and event["removed"] == ["old"]
    assert event["failed"] == ["clash"]

    fresh_port = port_of(server, "fresh")
    with socket.create_connection(("127.0.0.1", fresh_port), timeout=10) as sock:
        assert sock.recv(512).startswith(b"220 mx2.test.example")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        assert sock.recv(512).startswith(b"220 mx2.test.example")  # updated in place
    send(fresh_port, "via the new point")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", old_port), timeout=10).close()

    # The removed point's open transaction still completes, then its session ends; the
    # message runs the removed point's rule set (it is not left in the spool as unroutable).
    code, text = old_session.data(b"Subject: on the removed point\r\n\r\nx\r\n")
    assert code == 250
    old_session.close()
    message_id = text.decode().rsplit(" ", 1)[-1]
    server.wait_for("message.processed", message_id=message_id)
    assert not [e for e in server.events if e.get("event") == "message.unroutable"]
    assert server.stop() == 0


def test_closed_status_applies_to_new_connections(
    tmp_path: Path, server_factory  # type: ignore[no-untyped-def]
) -> None:
    config = basic_config(tmp_path)
    server = server_factory(config).start()
    closed = copy.deepcopy(config)
    closed["IngressPoints"][0]["Status"] = "CLOSED"
    reload(server, closed)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        assert sock.recv(512).startswith(b"421")
    reload(server, config)
    send(server.port, "open again")
    assert server.stop() == 0
