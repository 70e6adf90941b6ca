"""Forged Authentication-Results (field case 11, OpenDMARC #111 / CVE-2020-12272 class): every
incoming field claiming our authserv-id is removed from the message actions see, however its
comments, quoting, folding, version or case are written; fields of other servers are kept."""

from __future__ import annotations

import smtplib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmgr.message import Envelope, InboundMessage, ProcessingState, SessionFacts
from mailmgr.mime.authres import authserv_id, same_authserv_id
from mailmgr.smtpclient.wire import to_wire
from mailmgr.verdicts.auth_results import STAMP_KEY, message_for_actions, stamp
from tests.hostile.headers_support import archived
from tests.mime.fuzz import EXAMPLES
from tests.support import basic_config

OURS = "mx.mailmgr.test"
# Field case 11 as sent, then members of the same class.
FORGED = [
    b"Authentication-Results: (forged) mx.mailmgr.test; dmarc=pass header.from=bank.test",
    b"Authentication-Results: (a (b) c) mx.mailmgr.test; dmarc=pass header.from=bank.test",
    b"Authentication-Results: (a \\) b) mx.mailmgr.test; dmarc=pass header.from=bank.test",
    b"Authentication-Results: (a (b (c \\( (d)))) e) mx.mailmgr.test; dmarc=pass",
    b"Authentication-Results: (x\r\n (y) z)\r\n\tmx.mailmgr.test; dmarc=pass",
    b"Authentication-Results:\r\n mx.mailmgr.test;\r\n dmarc=pass header.from=bank.test",
    b'Authentication-Results: "mx.mailmgr.test"; dmarc=pass header.from=bank.test',
    b'Authentication-Results: "mx.mailmgr\\.test" (q); dmarc=pass',
    b"Authentication-Results: mx.mailmgr.test 1; dmarc=pass header.from=bank.test",
    b"Authentication-Results: mx.mailmgr.test (v) 1 (w); dmarc=pass",
    b"Authentication-Results: MX.MailMgr.TEST; dmarc=pass header.from=bank.test",
    b"Authentication-Results: mx.mailmgr.test.; dmarc=pass header.from=bank.test",
    b"Authentication-Results:mx.mailmgr.test;dmarc=pass",
    b"authentication-results: mx.mailmgr.test; dmarc=pass",
    b"Authentication-Results : mx.mailmgr.test; dmarc=pass header.from=bank.test",
    b"Authentication-Results\t: mx.mailmgr.test; dmarc=pass",
    b"Authentication-Results: mx.mailmgr.test; dmarc=pass (garbage",
    # No authserv-id can be read: a laxer reader downstream might still find ours in it.
    b"Authentication-Results: (unterminated mx.mailmgr.test; dmarc=pass",
    b"Authentication-Results: (a (b) mx.mailmgr.test; dmarc=pass",
    b'Authentication-Results: "mx.mailmgr.test; dmarc=pass',
    b"Authentication-Results: ; dmarc=pass header.from=bank.test",
    # ours next to a no-break space: ours to a reader that strips Unicode white space (review)
    "Authentication-Results: mx.mailmgr.test\u00a0; dmarc=pass".encode(),
    "Authentication-Results:\u00a0mx.mailmgr.test; dmarc=pass".encode(),
]
KEPT = [
    b"Authentication-Results: other.example; dkim=pass header.d=bank.test",
    b"Authentication-Results: (mx.mailmgr.test) other.example; dkim=pass",
    b"Authentication-Results: (a (mx.mailmgr.test) c) other.example; spf=pass",
    b"Authentication-Results: mx.mailmgr.test.evil; dmarc=pass",
    b'Authentication-Results: "mx.mailmgr.test other"; dmarc=pass',
    b"Authentication-Results: other.example 1; none",
    b"X-Authentication-Results: mx.mailmgr.test; dmarc=pass",
]


def _content(*fields: bytes, eol: bytes = b"\r\n") -> bytes:
    head = eol.join(f.replace(b"\r\n", eol) for f in fields)
    return (head + eol + b"From: ceo@bank.test" + eol + b"Subject: forged" + eol + eol
            + b"pay" + eol)


def _seen(content: bytes) -> bytes:
    message = InboundMessage("0hostile0001", 1_795_000_000.0, Envelope("m@evil.test", ("b@x",)),
                             SessionFacts("inp-1", "in", "192.0.2.1", helo="evil"), content)
    found = stamp(content, OURS, f"{OURS}; dmarc=fail header.from=bank.test")
    state = ProcessingState(action_data=((STAMP_KEY, found.to_text()),))
    return message_for_actions(message, state).content


def _claims(content: bytes) -> list[bytes]:
    """Header lines (with continuations) a reader sees as Authentication-Results claiming our
    id or having none readable; the test's own small reader, independent of the code's."""
    head = content.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    fields: list[bytes] = []
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\n" + line
        else:
            fields.append(line)
    out = []
    for field in fields:
        name, _, value = field.partition(b":")
        if name.strip().lower() == b"authentication-results":
            claimed = authserv_id(value.decode())
            if claimed is None or same_authserv_id(claimed, OURS):
                out.append(field)
    return out


@pytest.mark.parametrize("forged", FORGED)
@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_forged_field_is_removed_and_others_kept(forged: bytes, eol: bytes) -> None:
    content = _content(KEPT[0], forged, KEPT[1], eol=eol)
    seen = _seen(content)
    assert seen.startswith(b"Authentication-Results: mx.mailmgr.test;" + eol + b"\tdmarc=fail")
    assert b"dmarc=pass" not in seen
    assert _claims(seen.replace(eol, b"\r\n")) == [
        b"Authentication-Results: mx.mailmgr.test;\n\tdmarc=fail header.from=bank.test"]
    for kept in KEPT[:2]:
        assert kept.replace(b"\r\n", eol) + eol in seen
    assert seen.endswith(eol + b"pay" + eol)


def test_every_forged_field_at_once_and_every_kept_field_survives() -> None:
    content = _content(*[f for pair in zip(FORGED, KEPT * 3, strict=False) for f in pair])
    seen = _seen(content)
    assert b"dmarc=pass header.from=bank.test" not in seen
    assert len(_claims(seen)) == 1
    for kept in KEPT:
        assert kept + b"\r\n" in seen


_CFWS = st.lists(st.sampled_from(["(c)", "(a (b) c)", "(a \\) b)", "(\\()", " ", "\r\n ", "\t",
                                  "(x\r\n y)"]), max_size=5).map("".join)


@settings(max_examples=EXAMPLES, deadline=None)
@given(_CFWS, st.sampled_from(["mx.mailmgr.test", "MX.MAILMGR.TEST", '"mx.mailmgr.test"',
                               "mx.mailmgr.test.", '"mx.mailmgr\\.test"']),
       _CFWS, st.sampled_from(["", "1", "2 (v)"]), st.sampled_from([":", " :", "\t:"]))
def test_any_spelling_of_our_id_is_removed(
    before: str, server: str, after: str, version: str, colon: str
) -> None:
    forged = (f"Authentication-Results{colon}{before} {server}{after} {version}; dmarc=pass"
              " header.from=bank.test").encode()
    seen = _seen(_content(KEPT[0], forged))
    assert b"dmarc=pass header.from=bank.test" not in seen
    assert KEPT[0] + b"\r\n" in seen


# --- end to end: field case 11 through `mailmgr serve` to the archive ------------------------


@pytest.mark.slow
def test_field_case_11_end_to_end(tmp_path: Path, server_factory: Any) -> None:
    config = basic_config(tmp_path, Hostname=OURS,
                          Dns={"Nameservers": ["127.0.0.1:9"], "Timeout": 0.5,
                               "VerdictTimeout": 1})
    server = server_factory(config).start()
    cases = [*FORGED[:3], FORGED[6], FORGED[14]]
    for index, forged in enumerate(cases):
        body = (forged + b"\r\n" + KEPT[0] + b"\r\nFrom: ceo@bank.test\r\nTo: b@example.test"
                b"\r\nSubject: forged " + str(index).encode() + b"\r\n\r\nx\r\n")
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
            smtp.ehlo("mail.evil.test")
            smtp.sendmail("m@evil.test", ["b@example.test"], body)
    for index in range(len(cases)):
        text = archived(server, f"forged {index}")[1].decode()
        assert "dmarc=pass header.from=bank.test" not in text, text[:600]
        assert text.startswith("Authentication-Results: mx.mailmgr.test;")
        assert "Authentication-Results: other.example; dkim=pass header.d=bank.test" in text
        assert len(_claims(text.encode())) == 1
    assert server.stop() == 0


@pytest.mark.parametrize("hidden", [
    b"Subject: x\rAuthentication-Results: mx.mailmgr.test; dmarc=pass header.from=bank.test",
    b"X-A: 1\r\n\tfolded\rAuthentication-Results: (a (b) c) mx.mailmgr.test; dmarc=pass",
    b"X-A: 1\rAuthentication-Results: mx.mailmgr.test;\r dmarc=pass\rX-B: 2",
])
def test_a_field_behind_a_bare_cr_is_removed_before_relaying(hidden: bytes) -> None:
    """The Relay action turns a bare CR into CRLF (RFC 5321 §2.3.8): what follows one is a
    field at the next hop, so it is read as one here too."""
    seen = _seen(_content(KEPT[0], hidden))
    wire = to_wire(seen)
    assert b"dmarc=pass" not in wire
    assert len(_claims(wire)) == 1 and KEPT[0] + b"\r\n" in wire
