"""extract() against the email package's full parse (every header through the registry, every body
through the MIME parser) where that parse reads the header section as RFC 5322 does.

Updated for issue 10 (one header reader): values are now kept as written apart from RFC 2047
decoding (the registry's re-rendering differs across Python patch releases and its decoder is
quadratic, hostile 03), and obsolete syntax / bare CRs no longer end the header section (field 10),
so the samples where the email package differs have explicit expectations in ODD below."""

from __future__ import annotations

import email.policy
import random
from email.header import decode_header, make_header
from email.parser import BytesParser, Parser

import pytest

from mailmgr.archive.fields import HeaderFields, decode_value, extract
from mailmgr.mime.headers import header_end
from tests.archive.archive_samples import PLAIN, multipart_alternative, with_attachment

NAMES = ("Date", "To", "From", "Cc", "Subject", "Message-ID", "In-Reply-To", "X-Mailer",
         "X-Original-Mailer", "X-Priority")


def reference_value(name: str, value: str) -> str:
    try:
        header = email.policy.default.header_factory(name, value)
        if not header.defects:
            return str(header)
    except Exception:
        pass
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def reference(content: bytes) -> HeaderFields:
    text = content[: header_end(content)].decode("utf-8", errors="replace")
    msg = Parser(policy=email.policy.compat32).parsestr(text, headersonly=True)

    def get(name: str) -> str | None:
        raw = msg.get(name)
        if raw is None:
            return None
        return reference_value(name, str(raw).replace("\r\n ", " ").replace("\r\n\t", "\t")
                               .replace("\n ", " ").replace("\n\t", "\t").strip())

    attachments = False
    for part in BytesParser(policy=email.policy.default).parsebytes(content).walk():
        if part.get_content_maintype() == "multipart":
            continue
        if part.get_content_disposition() == "attachment" or (
            part.get_filename() and part.get_content_maintype() != "text"
        ):
            attachments = True
    received = tuple(
        str(v).replace("\r\n", "").replace("\n", "").strip()
        for v in msg.get_all("Received") or ()
    )
    return HeaderFields(date=get("Date"), to=get("To"), from_=get("From"),
                        cc=get("Cc"), subject=get("Subject"), message_id=get("Message-ID"),
                        in_reply_to=get("In-Reply-To"), x_mailer=get("X-Mailer"),
                        x_original_mailer=get("X-Original-Mailer"),
                        x_priority=get("X-Priority"), received=received,
                        has_attachments=attachments)


SAMPLES = [
    PLAIN,
    with_attachment(),
    multipart_alternative(),
    b"Subject: no body at all\r\n",
    b"",
    b"\r\nbody only\r\n",
    b"From bounce@x Sat Nov 21 10:00:00 2026\nFrom: a@b.test\nSubject: mbox\n\nbody\n",
    b" continuation first\r\nSubject: s\r\n\r\nb\r\n",
    b"Subject: a\r\nnot a header line\r\nTo: hidden@x.test\r\n\r\nb\r\n",
    b"Date: not a date\r\nMessage-ID: bad id\r\nIn-Reply-To: <a@b> (comment)\r\n\r\n",
    b"Date: \r\nSubject:\r\nX-Priority:   3  \r\n\r\n",
    b"Subject: =?utf-8?b?w4lsaXNl?= and =?bogus?= text\r\n\r\n",
    "Subject: raw UTF-8 sübject\r\nFrom: Jörg <j@x.test>\r\n\r\n".encode(),
    b"Subject: bad \xff byte\r\n\r\n",
    b"Content-Type: text/plain; name=notes.txt\r\n\r\ntext\r\n",
    b"Content-Type: application/pdf; name=a.pdf\r\n\r\n%PDF\r\n",
    b"Content-Disposition: attachment; filename=a.txt\r\n\r\nx\r\n",
    b"Content-Type: message/rfc822\r\n\r\nContent-Type: application/pdf; name=x.pdf\r\n\r\nx\r\n",
    b"Content-Type: text/plain\r\nSubject: long\r\n folded\r\n\tsubject\r\n\r\nbody\r\n",
    b"Subject: x\n\nlf only\n",
]


ODD = [
    # a bare CR ends a line (as at the next hop): "CR" is the first body line, To is body text
    (b"Subject: lone\rCR\r\nTo: x@y.test\r\n\r\n", {"subject": "lone", "to": None}),
    (b"Subject: lone\rTo: x@y.test\r\n\r\n", {"subject": "lone", "to": "x@y.test"}),
    # obs-optional white space before the colon: the first Subject is a field
    (b"Subject : spaced name\r\nsubject: second\r\n\r\n", {"subject": "spaced name"}),
    (b"To: J. Doe <j@x.test>, \"Quoted, Name\" <q@x.test>\r\nCc: <only@angle.test>\r\n\r\n",
     {"to": 'J. Doe <j@x.test>, "Quoted, Name" <q@x.test>', "cc": "<only@angle.test>"}),
    (b"From: John  Doe <j@x.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n",
     {"from_": "John  Doe <j@x.test>", "date": "Mon, 01 Jan 2024 10:00:00 +0000"}),
    (b"From: =?utf-8?q?J=C3=B6rg?= <j@x.test>\r\nSubject: a=?utf-8?q?b?=c\r\n\r\n",
     {"from_": "J\u00f6rg <j@x.test>", "subject": "abc"}),
]


@pytest.mark.parametrize(("content", "expected"), ODD)
def test_extract_odd_header_sections(content: bytes, expected: dict[str, str | None]) -> None:
    fields = extract(content)
    for name, value in expected.items():
        assert getattr(fields, name) == value, name


@pytest.mark.parametrize("content", SAMPLES)
def test_extract_matches_the_full_parse(content: bytes) -> None:
    assert extract(content) == reference(content)


def test_values_without_encoded_words_are_kept_as_written() -> None:
    rng = random.Random(7)
    alphabet = "abcXYZ019 .,;:<>@\"()[]\\!#$%&'*+/=?^_`{|}~-\t"
    for _ in range(3000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))).strip()
        if "=?" in value or not value:
            continue
        for name in NAMES:
            if name != "Date":
                assert decode_value(name, value) == value, (name, value)


def test_plain_single_part_message_is_never_mime_parsed() -> None:
    # Sanity that the fast path answers the common case: no attachment, the plain fields.
    fields = extract(b"From: bench <bench@load.test>\r\nTo: sink <sink@mailmgr.test>\r\n"
                     b"Subject: load test\r\nMessage-ID: <bench@load.test>\r\n\r\n" + b"x" * 100)
    assert fields.from_ == "bench <bench@load.test>" and fields.subject == "load test"
    assert fields.message_id == "<bench@load.test>" and fields.has_attachments is False
