"""DeliverToMailbox (a real aiosmtpd LMTP server, a Maildir) and DeliverToQBusiness (recording
endpoint) receive exactly what was accepted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.lmtp import LMTP
from awsactions_support import (
    ROLE_B,
    FakeAws,
    Scripted,
    blob_text,
    clients_for,
    make_input,
    make_message,
    resources,
)

from mailmgr.actions.mailbox import DeliverToMailbox, build, dot_stuff
from mailmgr.actions.qbusiness import DeliverToQBusiness
from mailmgr.config.models import (
    DeliverToMailboxAction,
    DeliverToQBusinessAction,
    ListenAddress,
    Mailbox,
)
from mailmgr.errors import PermanentActionError, TemporaryActionError

ARN = "arn:aws:workmail:us-east-1:123456789012:organization/m-1"
BOB, CAROL = "bob@example.net", "carol@example.org"


@dataclass
class Handler:
    """aiosmtpd handler: scripted RCPT replies and per-recipient post-DATA replies."""

    rcpt: dict[str, str] = field(default_factory=dict)
    after_data: dict[str, list[str]] = field(default_factory=dict)
    delivered: list[tuple[str, bytes]] = field(default_factory=list)
    mail_from: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        reply = self.rcpt.get(address, "250 OK")
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mail_from.append(envelope.mail_from)
        replies = []
        for rcpt in envelope.rcpt_tos:
            script = self.after_data.get(rcpt)
            reply = script.pop(0) if script else "250 2.0.0 delivered"
            if reply.startswith("250"):
                self.delivered.append((rcpt, envelope.original_content))
            replies.append(reply)
        return "\r\n".join(replies)


@pytest.fixture
async def lmtp() -> AsyncIterator[tuple[Handler, ListenAddress]]:
    handler = Handler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: LMTP(handler, decode_data=False),
                                      "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield handler, ListenAddress("127.0.0.1", port)
    server.close()
    await server.wait_closed()


def lmtp_action(address: ListenAddress) -> DeliverToMailbox:
    model = DeliverToMailboxAction(mailbox_arn=ARN, role_arn=ROLE_B)
    action = build(model, resources(None, (Mailbox(ARN, lmtp=address),)))
    assert isinstance(action, DeliverToMailbox)
    return action


def test_dot_stuffing() -> None:
    assert dot_stuff(b"a\n.b\r\n..c") == b"a\r\n..b\r\n...c\r\n.\r\n"
    # a bare CR ends a line, as the header reader reads it: no field hides behind one
    assert dot_stuff(b"Subject: x\rFrom: y\r\n\r\nb") == (
        b"Subject: x\r\nFrom: y\r\n\r\nb\r\n.\r\n")


async def test_lmtp_delivers_what_was_accepted(lmtp: tuple[Handler, ListenAddress]) -> None:
    handler, address = lmtp
    item = make_input(content=b"X-Added: 1\r\n" + make_message().content)
    result = await lmtp_action(address).run(item)
    assert result.details["delivered"] == [BOB, CAROL]
    assert handler.mail_from == ["alice@example.com"]
    assert handler.delivered == [(BOB, item.content), (CAROL, item.content)]


async def test_lmtp_per_recipient_replies_and_resume(lmtp: tuple[Handler, ListenAddress]) -> None:
    handler, address = lmtp
    dave = "dave@example.org"
    handler.rcpt[dave] = "550 5.1.1 no such user"
    handler.after_data[CAROL] = ["452 4.2.2 over quota"]
    action = lmtp_action(address)
    item = make_input(make_message(rcpts=(BOB, CAROL, dave)))
    with pytest.raises(TemporaryActionError) as info:
        await action.run(item)
    assert info.value.code == "452" and info.value.resume is not None
    assert [r for r, _ in handler.delivered] == [BOB]
    settled = json.loads(info.value.resume)
    assert set(settled) == {BOB, dave}
    # The retry (same resume data, as the executor passes it back) only tries Carol.
    with pytest.raises(PermanentActionError) as final:
        await action.run(make_input(make_message(rcpts=(BOB, CAROL, dave)),
                                    resume=info.value.resume))
    assert final.value.code == "550" and dave in str(final.value)
    assert [r for r, _ in handler.delivered] == [BOB, CAROL]


async def test_lmtp_server_down_is_temporary(unused_tcp_port: int) -> None:
    action = lmtp_action(ListenAddress("127.0.0.1", unused_tcp_port))
    with pytest.raises(TemporaryActionError):
        await action.run(make_input())


async def test_maildir_delivery_once(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    model = DeliverToMailboxAction(mailbox_arn=ARN, role_arn=ROLE_B)
    action = build(model, resources(None, (Mailbox(ARN, maildir=maildir),)))
    item = make_input()
    first = await action.run(item)
    await action.run(item)  # a re-run after a crash finds its own file
    files = list((maildir / "new").iterdir())
    assert [f.name for f in files] == [first.details["maildir_file"]]
    assert files[0].read_bytes() == b"Return-Path: <alice@example.com>\r\n" + item.content
    assert list((maildir / "tmp").iterdir()) == [] and (maildir / "cur").is_dir()
    other = make_input(make_message(message_id="zzz999"))
    await action.run(other)
    assert len(list((maildir / "new").iterdir())) == 2


def q_action(clients: Any) -> DeliverToQBusiness:
    model = DeliverToQBusinessAction(application_id="a" * 36, index_id="b" * 36, role_arn=ROLE_B)
    return DeliverToQBusiness(model, resources(clients))


async def test_q_business_document(aws_env: str, fake_aws: FakeAws) -> None:
    clients = clients_for(aws_env, fake_aws.url)
    try:
        await q_action(clients).run(make_input())
    finally:
        await clients.close()
    (request,) = [r for r in fake_aws.requests if r.path.startswith("/applications/")]
    assert request.path == f"/applications/{'a' * 36}/indices/{'b' * 36}/documents"
    (doc,) = fake_aws.documents()
    assert doc["id"] == "0abc123def456ghi789"
    assert doc["title"] == "Café report"
    assert doc["contentType"] == "PLAIN_TEXT"
    assert blob_text(doc) == "Hello Bob,\n.leading dot\nCafé\n"
    attrs = {a["name"]: a["value"] for a in doc["attributes"]}
    # as written (RFC 2047 decoded), the same on every Python: no registry re-rendering
    assert attrs["From"] == {"stringValue": "\"Alice Example\" <alice@example.com>"}
    assert attrs["To"] == {"stringValue": "Bob <bob@example.net>, carol@example.org"}
    assert "dateValue" in attrs["Date"]


async def test_q_business_html_only(aws_env: str, fake_aws: FakeAws) -> None:
    html = (b"From: a@example.com\r\nSubject: h\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>hi</p>\r\n")
    clients = clients_for(aws_env, fake_aws.url)
    try:
        await q_action(clients).run(make_input(make_message(html)))
    finally:
        await clients.close()
    (doc,) = fake_aws.documents()
    assert doc["contentType"] == "HTML" and blob_text(doc) == "<p>hi</p>\n"


@pytest.mark.parametrize(("code", "error"), [
    ("InternalError", TemporaryActionError), ("ResourceNotFound", PermanentActionError),
])
async def test_q_business_failed_document(
    aws_env: str, fake_aws: FakeAws, code: str, error: type[Exception]
) -> None:
    failed = {"failedDocuments": [{"id": "0abc123def456ghi789",
                                   "error": {"errorCode": code, "errorMessage": "no"}}]}
    fake_aws.q_script.append(Scripted(200, json.dumps(failed).encode()))
    clients = clients_for(aws_env, fake_aws.url)
    try:
        with pytest.raises(error) as info:
            await q_action(clients).run(make_input())
    finally:
        await clients.close()
    assert getattr(info.value, "code", None) == code
