"""Bounce and Send through SES SendRawEmail on moto; what SES received is read from its backend."""

from __future__ import annotations

import email
from email.message import Message
from typing import Any

import pytest
from awsactions_support import (
    ACCOUNT,
    ROLE_A,
    boto,
    clients_for,
    make_input,
    make_message,
    resources,
)
from moto.ses.models import ses_backends

from mailmgr.actions.bounce import Bounce
from mailmgr.actions.send import Send
from mailmgr.config.models import BounceAction, SendAction
from mailmgr.errors import PermanentActionError

BOUNCE = BounceAction(role_arn=ROLE_A, sender="postmaster@mx.test.example", status_code="5.1.1",
                      smtp_reply_code="550", diagnostic_message="mailbox unavailable",
                      message="We could not deliver your message.")


def sent() -> list[Any]:
    return list(ses_backends[ACCOUNT]["us-east-1"].sent_messages)


def verify(endpoint: str, *identities: str) -> None:
    ses = boto(endpoint, "ses")
    for identity in identities:
        ses.verify_email_identity(EmailAddress=identity)


async def test_bounce_is_an_rfc3464_report(aws_env: str) -> None:
    verify(aws_env, "postmaster@mx.test.example")
    clients = clients_for(aws_env)
    item = make_input(recipients=("bob@example.net", "carol@example.org"))
    try:
        result = await Bounce(BOUNCE, resources(clients)).run(item)
    finally:
        await clients.close()
    (message,) = sent()
    assert message.source == "postmaster@mx.test.example"
    assert message.destinations[0] == "alice@example.com"
    assert result.details["bounce_to"] == "alice@example.com"
    dsn = email.message_from_string(message.raw_data)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["To"] == "alice@example.com" and dsn["From"] == "postmaster@mx.test.example"
    assert dsn["Auto-Submitted"] == "auto-replied"
    human, status, original = dsn.get_payload()
    assert human.get_content_type() == "text/plain"
    assert "We could not deliver your message." in human.get_payload()
    assert status.get_content_type() == "message/delivery-status"
    blocks: list[Message] = status.get_payload()
    assert blocks[0]["Reporting-MTA"] == "dns; mx.test.example"
    per_recipient = blocks[1:]
    assert [b["Final-Recipient"] for b in per_recipient] == [
        "rfc822; bob@example.net", "rfc822; carol@example.org"]
    for block in per_recipient:
        assert block["Action"] == "failed"
        assert block["Status"] == "5.1.1"
        assert block["Diagnostic-Code"] == "smtp; 550 5.1.1 mailbox unavailable"
    assert original.get_content_type() == "text/rfc822-headers"
    assert "Message-ID: <orig-1@example.com>" in original.get_payload()
    assert "Hello Bob" not in message.raw_data  # headers only, never the body


async def test_no_bounce_for_a_null_sender(aws_env: str) -> None:
    verify(aws_env, "postmaster@mx.test.example")
    clients = clients_for(aws_env)
    try:
        result = await Bounce(BOUNCE, resources(clients)).run(
            make_input(make_message(mail_from="")))
    finally:
        await clients.close()
    assert sent() == [] and result.details["bounce"].startswith("skipped")


async def test_bounce_from_an_unverified_sender_is_permanent(aws_env: str) -> None:
    clients = clients_for(aws_env)
    try:
        with pytest.raises(PermanentActionError) as info:
            await Bounce(BOUNCE, resources(clients)).run(make_input())
    finally:
        await clients.close()
    assert info.value.code == "MessageRejected"


async def test_send_goes_to_the_current_recipients(aws_env: str) -> None:
    verify(aws_env, "alice@example.com")
    clients = clients_for(aws_env)
    item = make_input(recipients=("carol@example.org",),
                      content=b"X-Added: 1\r\n" + make_message().content)
    try:
        result = await Send(SendAction(role_arn=ROLE_A), resources(clients)).run(item)
    finally:
        await clients.close()
    (message,) = sent()
    assert result.details["ses_message_id"]
    assert message.source == "alice@example.com"
    assert message.destinations[0] == "carol@example.org"
    parsed = email.message_from_string(message.raw_data)
    assert parsed["X-Added"] == "1" and parsed["Message-ID"] == "<orig-1@example.com>"
