"""End to end: `mailmgr serve` relays to an aiosmtpd relay that is down at first, then up."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from relay_support import Handler, RelayServer, free_port

from tests.support import ServerProcess, basic_config

Relays = Callable[..., RelayServer]
MESSAGE = (b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: e2e\r\n\r\n"
           b"first line\r\n.\r\nnot the end\r\n")


def _send(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("alice@example.com", ["bob@example.net", "carol@example.net"], MESSAGE)


async def test_serve_relays_after_the_relay_comes_up_exactly_once(
    relays: Relays, server_factory: Callable[[dict[str, Any]], ServerProcess], tmp_path: Path
) -> None:
    port = free_port()
    config = basic_config(tmp_path)
    config["Relays"] = [{"RelayName": "upstream", "ServerName": "127.0.0.1", "ServerPort": port,
                         "Authentication": {"NoAuthentication": {}},
                         "MailFromReplacement": "bounces@mx.test.example"}]
    config["RuleSets"][0]["Rules"] = [{"Name": "relay-all", "Actions": [
        {"AddHeader": {"HeaderName": "X-Relayed-By", "HeaderValue": "mailmgr"}},
        {"Relay": {"Relay": "upstream", "MailFrom": "REPLACE"}},
    ]}]
    server = await asyncio.to_thread(server_factory(config).start)
    await asyncio.to_thread(_send, server.port)
    failed = await asyncio.to_thread(server.wait_for, "relay.attempt", 15.0)
    assert failed["deferred"] == ["bob@example.net", "carol@example.net"]

    handler = Handler()
    await relays(handler, port=port).start()
    await asyncio.to_thread(server.wait_for, "message.processed", 20.0)
    (got,) = handler.received
    assert got.mail_from == "bounces@mx.test.example"
    assert got.rcpt_tos == ["bob@example.net", "carol@example.net"]
    head, _, body = got.content.partition(b"\r\n\r\n")
    # the accepted message (with the Authentication-Results header mailmgr adds on receipt)
    # plus the header the rule added, with nothing else changed
    assert head.startswith(b"Authentication-Results: mx.test.example;")
    assert head.endswith(b"\r\nFrom: alice@example.com\r\nTo: bob@example.net\r\n"
                         b"Subject: e2e\r\nX-Relayed-By: mailmgr")
    assert body == b"first line\r\n.\r\nnot the end\r\n"
    await asyncio.sleep(1.5)  # a further retry, were one scheduled, would deliver again
    assert len(handler.received) == 1
    ok = [e for e in server.events if e.get("event") == "relay.attempt" and e.get("accepted")]
    assert len(ok) == 1 and ok[0]["code"] == "250"
