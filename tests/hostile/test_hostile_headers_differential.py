"""Differential: for odd header sections (hypothesis-generated, plus the field 08 and 10 case files)
every consumer -- rule facts, DMARC From domains, archive fields, event headers/commonHeaders/
destination, the DKIM view and AddHeader insertion -- sees the same fields in the same order as
the one reader. Bounded in CI; MAILMGR_FUZZ_EXAMPLES=5000 for a longer run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailmgr.actions.events import common_headers, destination, raw_headers
from mailmgr.archive.fields import extract
from mailmgr.message import Envelope, InboundMessage, SessionFacts
from mailmgr.mime import rfc2047
from mailmgr.mime.addresses import addr_specs, parse
from mailmgr.mime.headers import HeaderSection, read, with_headers
from mailmgr.rules.facts import MessageFacts
from mailmgr.verdicts.dkim import _signature_headers, may_be_signed
from mailmgr.verdicts.dmarc import NO_ADDRESS, from_domains
from tests.hostile.headers_support import CASES

EXAMPLES = int(os.environ.get("MAILMGR_FUZZ_EXAMPLES", "150"))
ADDED = (("X-Added", "one"), ("X-Other", "two"))

NAMES = ["From", "To", "Cc", "Subject", "Sender", "X-Note", "x-note", "DKIM-Signature",
         "Received", "Return-Path", "Message-ID", "Date", "Disposition-Notification-To",
         "Reply-To"]
COLONS = [b":", b" :", b"\t:", b"  \t:", b"\r\n :", b"\n\t:"]
VALUES = [b"ceo@bank.test", b"<ceo@bank.test >", b"Bank <ceo@bank.test>, x@evil.test",
          b"\"A, B\" <a@b.test>", b"=?utf-8?q?J=C3=B6rg?= <j@x.test>", b"G: a@g.test;",
          b"=?utf-8?Q?a=C3=A9?= =?utf-8?Q?b?=", b"bad <", b"", b"v=1; d=x.test; s=sel",
          b"caf\xc3\xa9", b"bad \xff byte", b"lone\rcr", b"nul\x00here", b"a\rFrom: c@d.test",
          b"(comment) a@b.test", b"trailing white space \t "]
FOLDS = [b"", b"\r\n continued", b"\n\tcontinued", b"\r\n \r\n  more"]
JUNK = [b"From sender@x Mon Nov 30 10:00:00 2026", b" orphan", b"no colon line",
        b"X\x00Y: nul name"]
EOLS = [b"\r\n", b"\n"]


@st.composite
def sections(draw: st.DrawFn) -> bytes:
    eol = draw(st.sampled_from(EOLS))
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from(JUNK)) + eol)
            continue
        name = draw(st.sampled_from(NAMES)).encode()
        colon = draw(st.sampled_from(COLONS)).replace(b"\r\n", eol).replace(b"\n", eol)
        value = draw(st.sampled_from(VALUES))
        fold = draw(st.sampled_from(FOLDS)).replace(b"\r\n", eol).replace(b"\n", eol)
        lines.append(name + colon + b" " + value + fold + eol)
    tail = draw(st.sampled_from([eol + b"body" + eol, b"body line" + eol, b"", eol]))
    return b"".join(lines) + tail


def case_files() -> list[bytes]:
    found = []
    for folder in ("field/08-missing-header-separator-addheader",
                   "field/10-obs-header-whitespace-dmarc-bypass"):
        found += [p.read_bytes() for p in sorted((CASES / folder).glob("*.eml"))]
    return found


def facts_of(content: bytes, added: tuple[tuple[str, str], ...] = ()) -> MessageFacts:
    message = InboundMessage("msgid0000001", 0.0, Envelope("a@b.test", ("c@d.test",)),
                             SessionFacts("inp-x", "inbound", "192.0.2.1"), content)
    return MessageFacts.build(message, added)


def x_headers(section: HeaderSection) -> tuple[tuple[str, tuple[str, ...]], ...]:
    grouped: dict[str, list[str]] = {}
    for f in section.fields:
        if f.key.startswith("x-"):
            grouped.setdefault(f.key, []).append(f.value.strip())
    return tuple((k, tuple(v)) for k, v in grouped.items())


def decoded(value: str | None) -> str | None:
    return None if value is None else rfc2047.decode(value.strip())


def check_consumers(content: bytes) -> None:
    section = read(content)
    names = [f.name for f in section.fields]

    # event headers: the same fields, in order
    assert [n for n, _v in raw_headers(content)] == names
    common = common_headers(content)
    assert ("subject" in common) == (section.first("Subject") is not None)
    assert destination(content) == list(addr_specs([*section.get_all("To"),
                                                     *section.get_all("Cc")]))
    froms = section.get_all("From")
    assert len(common.get("from", [])) >= len(froms)

    # rule facts
    facts = facts_of(content)
    assert facts.from_ == addr_specs(froms)
    assert facts.to == addr_specs(section.get_all("To"))
    assert facts.cc == addr_specs(section.get_all("Cc"))
    assert facts.sender == addr_specs(section.get_all("Sender"))
    assert facts.subject == tuple(rfc2047.decode(v.strip()) for v in section.get_all("Subject"))
    assert facts.x_headers == x_headers(section)
    assert facts.read_receipt_requested == bool(section.get_all("Disposition-Notification-To"))

    # DMARC's From domains: exactly the From fields the reader found
    domains = from_domains(content)
    if not froms:
        assert domains in ((), (NO_ADDRESS,))
    elif domains != (NO_ADDRESS,):
        expected = [m.domain.lower() for v in froms for m in parse(v) or ()]
        assert domains == tuple(dict.fromkeys(expected))

    # archive fields
    fields = extract(content)
    assert fields.subject == decoded(section.first("Subject"))
    assert fields.to == decoded(section.first("To"))
    assert fields.message_id == decoded(section.first("Message-ID"))
    assert fields.received == tuple(v.strip() for v in section.get_all("Received"))

    # DKIM's view
    signatures = section.get_all("DKIM-Signature")
    assert _signature_headers(content) == [v.encode() for v in signatures]
    assert may_be_signed(content) == bool(signatures)

    # AddHeader insertion: the added fields follow the others, the body is untouched, and the
    # rule facts of the un-rewritten message with added headers agree with the rewritten one
    inserted = with_headers(content, ADDED)
    after = read(inserted)
    assert [f.name for f in after.fields] == names + [n for n, _v in ADDED]
    if not section.truncated:
        assert after.separator
        assert inserted[after.body_start:] == content[section.body_start:]
    assert facts_of(content, ADDED).x_headers == x_headers(after)
    assert facts_of(content, ADDED).from_ == facts_of(inserted).from_


@pytest.mark.parametrize("content", case_files())
def test_case_files_every_consumer_agrees(content: bytes) -> None:
    check_consumers(content)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sections())
def test_generated_sections_every_consumer_agrees(content: bytes) -> None:
    check_consumers(content)


def test_field_10_obs_from_is_seen_by_every_consumer() -> None:
    for content in (b"X-Note : hi\r\nFrom : ceo@bank.test\r\nSubject\t: s\r\n\r\nb\r\n",
                    b"From\r\n : ceo@bank.test\r\n\r\nb\r\n"):
        assert from_domains(content) == ("bank.test",)
        assert facts_of(content).from_ == ("ceo@bank.test",)
        assert extract(content).from_ == "ceo@bank.test"
        assert common_headers(content)["from"] == ["ceo@bank.test"]


def test_case_file_corpus_is_present() -> None:
    if not Path(CASES).exists():
        pytest.skip("shared cases not mounted")
    assert len(case_files()) >= 5


def test_consumers_are_fast_on_a_hostile_section() -> None:
    content = b"".join(b"X-%d : v\r\n" % i for i in range(9_000)) + b"From: a@b.test\r\n\r\n"
    started = time.perf_counter()
    check_consumers(content)
    assert time.perf_counter() - started < 10
