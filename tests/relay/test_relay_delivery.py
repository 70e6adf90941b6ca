"""Relay delivery against a real aiosmtpd relay: bytes, envelope sender, line ends, reuse."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from relay_support import (
    CONTENT,
    HOSTNAME,
    Handler,
    RelayServer,
    make_action,
    make_input,
    make_message,
    make_relay,
)

from mailmgr.config.models import MailFrom
from mailmgr.errors import PermanentActionError
from mailmgr.mime.headers import with_headers
from mailmgr.smtpclient import to_wire

Relays = Callable[..., RelayServer]


async def test_relay_receives_the_message_with_added_headers(relays: Relays) -> None:
    server = await relays().start()
    message = make_message(rcpts=("bob@example.net", "carol@example.org"))
    content = with_headers(message.content, (("X-Tag", "one"), ("X-Other", "two")))
    result = await make_action(make_relay(server.port)).run(make_input(message, content=content))
    (got,) = server.handler.received
    assert got.content == content  # exactly what the action saw, byte for byte
    assert b"X-Tag: one\r\nX-Other: two\r\n\r\nHello" in got.content
    assert got.rcpt_tos == ["bob@example.net", "carol@example.org"]
    assert result.details["delivered"] == ["bob@example.net", "carol@example.org"]
    assert not result.drop and result.replace_with is None


@pytest.mark.parametrize(("mail_from", "replacement", "sender", "expected"), [
    (MailFrom.PRESERVE, None, "alice@example.com", "alice@example.com"),
    (MailFrom.PRESERVE, "bounces@relay.test", "", "<>"),  # the null reverse-path stays null
    (MailFrom.REPLACE, "bounces@relay.test", "alice@example.com", "bounces@relay.test"),
    (MailFrom.REPLACE, None, "alice@example.com", f"postmaster@{HOSTNAME}"),
])
async def test_preserve_and_replace_the_envelope_sender(
    relays: Relays, mail_from: MailFrom, replacement: str | None, sender: str, expected: str
) -> None:
    server = await relays().start()
    relay = make_relay(server.port, mail_from_replacement=replacement)
    message = make_message(mail_from=sender)
    await make_action(relay, mail_from=mail_from).run(make_input(message))
    (got,) = server.handler.received
    assert got.mail_from == expected
    assert got.content == CONTENT  # the From: header is never touched


async def test_smuggling_payload_and_bare_line_ends_are_normalised(relays: Relays) -> None:
    server = await relays().start()
    smuggle = (b"Subject: smuggle\r\n\r\nfirst\n.\r\nMAIL FROM:<evil@example.com>\r\n"
               b"RCPT TO:<victim@example.net>\r\nDATA\r\nline\rwith bare CR\r\n.\r\n"
               b"QUIT\r\ntail\n..two dots\n")
    message = make_message(smuggle)
    await make_action(make_relay(server.port)).run(make_input(message))
    (got,) = server.handler.received  # one message: nothing smuggled through
    assert got.rcpt_tos == ["bob@example.net"]
    assert got.content == (
        b"Subject: smuggle\r\n\r\nfirst\r\n.\r\nMAIL FROM:<evil@example.com>\r\n"
        b"RCPT TO:<victim@example.net>\r\nDATA\r\nline\r\nwith bare CR\r\n.\r\n"
        b"QUIT\r\ntail\r\n..two dots\r\n")
    assert b"\r" not in got.content.replace(b"\r\n", b"")
    assert b"\n" not in got.content.replace(b"\r\n", b"")


def test_to_wire_stuffs_dots_and_terminates_once() -> None:
    assert to_wire(b"a\n.\r\nb\r.c") == b"a\r\n..\r\nb\r\n..c\r\n.\r\n"
    assert to_wire(b"") == b".\r\n"
    assert to_wire(b"x\r\r\n") == b"x\r\n\r\n.\r\n"  # a bare CR is a line end of its own
    assert to_wire(b"x").count(b"\r\n.\r\n") == 1


async def test_connection_is_reused_with_rset(relays: Relays) -> None:
    handler = Handler()
    server = await relays(handler).start()
    action = make_action(make_relay(server.port), idle_seconds=30.0)
    for n in range(3):
        await action.run(make_input(make_message(message_id=f"relayreuse0000000{n}")))
    assert len(handler.received) == 3
    assert handler.connections == 1
    assert handler.commands.count("RSET") == 2  # a health check before each reuse


async def test_idle_connections_are_not_kept_when_idle_time_is_zero(relays: Relays) -> None:
    handler = Handler()
    server = await relays(handler).start()
    action = make_action(make_relay(server.port), idle_seconds=0.0)
    for n in range(2):
        await action.run(make_input(make_message(message_id=f"relaynoreuse00000{n}")))
    assert (len(handler.received), handler.connections) == (2, 2)


async def test_8bit_body_uses_8bitmime_and_attempt_is_logged(
    relays: Relays, caplog: pytest.LogCaptureFixture
) -> None:
    server = await relays().start()
    content = "Subject: café\r\n\r\nGrüße\r\n".encode()
    with caplog.at_level(logging.INFO, logger="mailmgr"):
        await make_action(make_relay(server.port)).run(make_input(make_message(content)))
    (got,) = server.handler.received
    assert "BODY=8BITMIME" in got.mail_options
    assert any(o.startswith("SIZE=") for o in got.mail_options)
    assert got.content == content
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "relay.attempt"]
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["relay"] == "upstream" and fields["code"] == "250"
    assert fields["accepted"] == ["bob@example.net"]
    assert fields["refused"] == [] and fields["deferred"] == []
    assert fields["latency_ms"] >= 0


async def test_smtputf8_recipient_fails_when_the_relay_lacks_smtputf8(relays: Relays) -> None:
    server = await relays().start()  # aiosmtpd without enable_SMTPUTF8
    message = make_message(rcpts=("bob@example.net", "jürgen@example.de"), smtputf8=True)
    result = await make_action(make_relay(server.port)).run(make_input(message))
    (got,) = server.handler.received
    assert got.rcpt_tos == ["bob@example.net"]
    assert result.details["refused"] == ["jürgen@example.de"]


async def test_smtputf8_is_sent_when_offered(relays: Relays) -> None:
    server = await relays(enable_SMTPUTF8=True).start()
    message = make_message(rcpts=("jürgen@example.de",), smtputf8=True)
    await make_action(make_relay(server.port)).run(make_input(message))
    (got,) = server.handler.received
    assert got.rcpt_tos == ["jürgen@example.de"] and "SMTPUTF8" in got.mail_options


async def test_message_over_the_relays_size_limit_fails_permanently(relays: Relays) -> None:
    server = await relays(data_size_limit=100).start()
    message = make_message(CONTENT + b"x" * 200 + b"\r\n")
    with pytest.raises(PermanentActionError) as failure:
        await make_action(make_relay(server.port)).run(make_input(message))
    assert failure.value.code == "552"
    assert server.handler.received == []
