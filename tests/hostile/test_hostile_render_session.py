"""Session data holding CR, LF, NUL or other controls (field case 07, hostile 01, as an old spool
record could hold them) never adds a line to a header we render: Authentication-Results,
Received, the DSN of a Bounce, the Return-Path of a Maildir delivery."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmgr.actions import dsn
from mailmgr.actions.base import ActionInput
from mailmgr.actions.mailbox import DeliverToMailbox
from mailmgr.config.ids import ResourceKind, derive_id
from mailmgr.config.models import DeliverToMailboxAction, Mailbox
from mailmgr.message import (
    Envelope,
    InboundMessage,
    ProcessingState,
    SessionFacts,
    Verdict,
    Verdicts,
    new_message_id,
)
from mailmgr.mime.authres import Property, parse
from mailmgr.mime.render import sanitise
from mailmgr.spool.store import SpoolStore
from mailmgr.trace import received_field
from mailmgr.verdicts.auth_results import (
    STAMP_KEY,
    Stamp,
    header_value,
    message_for_actions,
    stamp,
)
from mailmgr.verdicts.dkim import DkimResult, DkimSignature
from mailmgr.verdicts.dmarc import DmarcResult
from mailmgr.verdicts.spf import SpfResult
from tests.hostile.headers_support import archived
from tests.mime.fuzz import EXAMPLES
from tests.support import basic_config

OURS = "mx.mailmgr.test"
HELO = "x\rX-Injected-Helo: yes"
MAIL_FROM = '"x\rX-Injected-Mailfrom: yes"@evil.test'
FORGED_AR = ('"x\rAuthentication-Results: mx.mailmgr.test; dmarc=pass header.from=bank.example'
             '\rX-Pad: "@evil.test')
RCPTS = ("a\x00z@example.test", "b\r\nX-Injected-Rcpt: yes@example.test", "c\x85\u2028@x.test")
CONTENT = b"From: ceo@bank.example\r\nTo: b@example.test\r\nSubject: hostile\r\n\r\nbody\r\n"
# Anything but CRLF line ends, and HTAB only where a continuation line starts.
_BAD = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def _message(helo: str = HELO, mail_from: str = MAIL_FROM,
             rcpts: tuple[str, ...] = RCPTS[:1], content: bytes = CONTENT) -> InboundMessage:
    return InboundMessage("0hostile0002", 1_795_000_000.0, Envelope(mail_from, rcpts),
                          SessionFacts("inp-1", "in", "192.0.2.1", helo=helo), content)


def _header_lines(section: bytes) -> list[str]:
    """The physical lines of a header section, after checking every line ends with CRLF and
    holds no control character but a leading HTAB."""
    text = section.decode("utf-8")
    assert text.endswith("\r\n")
    lines = text[:-2].split("\r\n")
    for line in lines:
        assert not _BAD.search(line), line
        assert "\t" not in line[1:], line
    return lines


def _field_names(section: bytes) -> list[str]:
    return [line.split(":", 1)[0] for line in _header_lines(section) if line[:1] not in " \t"]


def _seen(message: InboundMessage, value: str) -> bytes:
    found = stamp(message.content, OURS, value)
    state = ProcessingState(action_data=((STAMP_KEY, found.to_text()),))
    return message_for_actions(message, state, received_field(message, OURS)).content


def _auth_value(identity: str, sender: str, text: str = "x") -> str:
    return header_value(
        OURS,
        SpfResult(Verdict.GRAY, "none", identity, sender, "evil.test"),
        DkimResult(Verdict.FAIL, (DkimSignature(f"d{text}.test", f"s{text}", "fail"),)),
        DmarcResult(Verdict.FAIL, "fail", header_from=f"bank{text}.example"),
    )


@pytest.mark.parametrize(("identity", "sender"), [
    ("helo", HELO), ("mailfrom", MAIL_FROM), ("mailfrom", FORGED_AR),
    ("mailfrom", "a\x00z@evil.test"), ("helo", "h\nX-Injected: 1"), ("helo", "h\x0b\x0c\x1b\x7f"),
])
def test_authentication_results_and_received_stay_one_field_each(
    identity: str, sender: str
) -> None:
    message = _message(helo=sender if identity == "helo" else "client.test",
                       mail_from=sender if identity == "mailfrom" else "")
    seen = _seen(message, _auth_value(identity, sender, "\r\nX-Injected-Dkim: 1"))
    head, _, body = seen.partition(b"\r\n\r\n")
    assert body == b"body\r\n"
    assert _field_names(head + b"\r\n") == [
        "Authentication-Results", "Received", "From", "To", "Subject"]
    parsed = email.message_from_bytes(seen, policy=email.policy.default)
    assert len(parsed.get_all("Authentication-Results") or []) == 1
    assert not any(name.startswith("X-Injected") for name in parsed)
    # Ours reads back, per RFC 8601, as what was found: the identity quoted, sanitised.
    value = head.split(b"\r\nReceived:")[0].partition(b":")[2].replace(b"\r\n", b"").decode()
    results = parse(value)
    assert results is not None and results.authserv_id == OURS
    assert [(r.method, r.result) for r in results.results] == [
        ("spf", "none"), ("dkim", "fail"), ("dmarc", "fail")]
    assert results.results[0].properties == (Property("smtp", identity, sanitise(sender)),)


def test_received_leaves_out_a_recipient_with_a_control_character() -> None:
    for rcpt in RCPTS:
        field = received_field(_message(helo="h\x00\r\n", rcpts=(rcpt,)), OURS)
        assert _field_names(field) == ["Received"] and b" for " not in field
        assert field.startswith(b"Received: from h??? ([192.0.2.1])\r\n")
    field = received_field(_message(rcpts=("ok@example.test",)), OURS)
    assert b"\tfor <ok@example.test>; " in field


def test_a_stamp_stored_by_an_older_release_is_rendered_safely() -> None:
    # Before the renderer, the stored value could hold the raw CR of a hostile HELO.
    old = Stamp(f'{OURS}; spf=none smtp.helo="{HELO}"; dkim=none; dmarc=none')
    state = ProcessingState(action_data=((STAMP_KEY, old.to_text()),))
    seen = message_for_actions(_message(), state).content
    head = seen.split(b"\r\n\r\n")[0] + b"\r\n"
    assert _field_names(head) == ["Authentication-Results", "From", "To", "Subject"]
    assert head.startswith(b'Authentication-Results: mx.mailmgr.test;\r\n'
                           b'\tspf=none smtp.helo="x?X-Injected-Helo: yes";\r\n\tdkim=none;')


def _dsn(to: str = MAIL_FROM, recipients: tuple[str, ...] = RCPTS, text: str = "x") -> bytes:
    return dsn.build_dsn(dsn.DsnRequest(
        reporting_mta=f"mx{text}.test", sender=f"postmaster{text}@mx.test", to=to,
        recipients=recipients, status_code="5.1.1", smtp_reply_code="550",
        diagnostic_message=f"no {text} such user", human_text=None,
        original_headers=CONTENT.split(b"\r\n\r\n")[0] + b"\r\n", arrival=0.0, now=0.0,
        original_id=f"id{text}"))


def _check_dsn(raw: bytes, recipients: int) -> email.message.EmailMessage:
    head = raw.partition(b"\r\n\r\n")[0]
    assert _field_names(head + b"\r\n") == [
        "From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "MIME-Version",
        "Content-Type"]
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
    assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", raw)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    _human, status, original = parsed.get_payload()  # type: ignore[misc]
    blocks = status.get_payload()
    assert len(blocks) == 1 + recipients
    for block in blocks[1:]:
        assert list(block.keys()) == [
            "Final-Recipient", "Action", "Status", "Diagnostic-Code", "Last-Attempt-Date"]
    assert original.get_content_type() == "text/rfc822-headers"
    return parsed  # type: ignore[return-value]


def test_dsn_fields_from_envelope_data_stay_one_line_each() -> None:
    parsed = _check_dsn(_dsn(), len(RCPTS))
    assert parsed["To"] == '"x?X-Injected-Mailfrom: yes"@evil.test'
    blocks = parsed.get_payload()[1].get_payload()  # type: ignore[index]
    assert [b["Final-Recipient"] for b in blocks[1:]] == [
        "utf-8; a\\x{0}z@example.test",
        "utf-8; b\\x{D}\\x{A}X-Injected-Rcpt:\\x{20}yes@example.test",
        "utf-8; c\\x{85}\\x{2028}@x.test"]


def test_dsn_config_text_with_line_breaks_stays_one_line_each() -> None:
    _check_dsn(_dsn(text="\r\nX-Injected: 1\r\n"), len(RCPTS))


async def test_maildir_return_path_stays_one_field(tmp_path: Path) -> None:
    message = _message()
    action = DeliverToMailbox(DeliverToMailboxAction(mailbox_arn="arn:mb"),
                              Mailbox("arn:mb", maildir=tmp_path / "Maildir"), OURS)
    await action.run(ActionInput(message, CONTENT, message.envelope.rcpt_to, Verdicts(),
                                 "rs", "main", 1, "r1", 1))
    (delivered,) = (tmp_path / "Maildir" / "new").iterdir()
    head = delivered.read_bytes().split(b"\r\n\r\n")[0] + b"\r\n"
    assert _field_names(head) == ["Return-Path", "From", "To", "Subject"]
    assert head.startswith(b'Return-Path: <"x?X-Injected-Mailfrom: yes"@evil.test>\r\n')


_ANY = st.lists(st.one_of(st.sampled_from(["\r", "\n", "\r\n", "\x00", "\t", "\x85", "\u2028",
                                           "\x1b", " ", '"', "\\", "(", ";", "@"]),
                          st.characters(exclude_categories=("Cs",))), max_size=40).map("".join)


@settings(max_examples=EXAMPLES, deadline=None)
@given(_ANY, _ANY, st.lists(_ANY, min_size=1, max_size=3), _ANY)
def test_any_session_data_renders_the_same_fields(
    helo: str, mail_from: str, rcpts: list[str], text: str
) -> None:
    message = _message(helo=helo, mail_from=mail_from, rcpts=tuple(rcpts))
    seen = _seen(message, _auth_value("mailfrom" if mail_from else "helo",
                                      mail_from or helo, text))
    head = seen.split(b"\r\n\r\n")[0] + b"\r\n"
    assert _field_names(head) == ["Authentication-Results", "Received", "From", "To", "Subject"]
    _check_dsn(_dsn(mail_from or "x@y", tuple(rcpts), text), len(rcpts))


# --- end to end: an old spool record with control characters, recovered by `mailmgr serve` ---


@pytest.mark.slow
def test_old_spool_record_with_control_characters_end_to_end(
    tmp_path: Path, server_factory: Any
) -> None:
    config = basic_config(tmp_path, Hostname=OURS,
                          Dns={"Nameservers": ["127.0.0.1:9"], "Timeout": 0.5,
                               "VerdictTimeout": 1})
    records = [
        InboundMessage(new_message_id(), time.time(), Envelope(mail_from, (rcpt,)),
                       SessionFacts(derive_id(ResourceKind.INGRESS_POINT, "inbound"), "inbound",
                                    "127.0.0.1", helo=helo),
                       CONTENT.replace(b"hostile", f"old record {index}".encode()))
        for index, (helo, mail_from, rcpt) in enumerate([
            (HELO, "", "b@example.test"),
            ("client.test", MAIL_FROM, "b@example.test"),
            ("client.test", FORGED_AR, "b\x00z@example.test"),
        ])
    ]

    async def put() -> None:
        store = SpoolStore(tmp_path / "var" / "spool")
        await store.open()
        for record in records:
            await store.commit(record)
        await store.close()

    asyncio.run(put())
    server = server_factory(config).start()
    for index in range(len(records)):
        raw = archived(server, f"old record {index}")[1]
        head = raw.replace(b"\r\n", b"\n").split(b"\n\n")[0]
        names = [ln.split(b":")[0] for ln in head.split(b"\n") if ln[:1] not in (b" ", b"\t")]
        assert names == [b"Authentication-Results", b"Received", b"From", b"To", b"Subject",
                         b"X-Mailmgr-Processed"], head
        assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", head.replace(b"\n\t", b"\n "))
        ours = parse(head.split(b"\nReceived:")[0].partition(b":")[2].replace(b"\n", b"").decode())
        assert ours is not None and ours.authserv_id == OURS
        assert [r.method for r in ours.results] == ["spf", "dkim", "dmarc"]
        assert all(r.result != "pass" for r in ours.results)
    assert server.stop() == 0


def test_a_semicolon_inside_a_quoted_identity_does_not_fold_the_result() -> None:
    sender = '"a; b"@evil.test'
    seen = _seen(_message(mail_from=sender), _auth_value("mailfrom", sender))
    assert b'\tspf=none smtp.mailfrom="\\"a; b\\"@evil.test";\r\n\tdkim=fail' in seen
