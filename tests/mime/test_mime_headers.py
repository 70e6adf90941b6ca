"""The one header reader: RFC 5322 fields incl. obsolete syntax, where the section ends, bounds,
the verified cache, and AddHeader insertion (with_headers)."""

from __future__ import annotations

import time

import pytest

from mailmgr.mime import headers
from mailmgr.mime.headers import read, with_fields, with_headers


def pairs(content: bytes) -> list[tuple[str, str]]:
    return [(f.name, f.value) for f in read(content).fields]


def test_rfc5322_appendix_a_1_1_simple_message() -> None:
    content = (b"From: John Doe <jdoe@machine.example>\r\nTo: Mary Smith <mary@example.net>\r\n"
               b"Subject: Saying Hello\r\nDate: Fri, 21 Nov 1997 09:55:06 -0600\r\n"
               b"Message-ID: <1234@local.machine.example>\r\n\r\nThis is a message just to say "
               b"hello.\r\nSo, \"Hello\".\r\n")
    section = read(content)
    assert [f.name for f in section.fields] == ["From", "To", "Subject", "Date", "Message-ID"]
    assert section.first("subject") == "Saying Hello"
    assert section.separator and section.eol == b"\r\n" and not section.truncated
    assert content[section.body_start:].startswith(b"This is a message")
    assert content[section.end:section.body_start] == b"\r\n"
    first = section.fields[0]
    assert content[first.start:first.end] == b"From: John Doe <jdoe@machine.example>\r\n"


def test_rfc5322_appendix_a_6_3_obsolete_white_space_and_folding() -> None:
    # A.6.3: white space before the colon and folded lines, all of which must be accepted.
    content = (b"From  : John Doe <jdoe@machine(comment).  example>\r\n"
               b"To    : Mary Smith\r\n  \r\n          <mary@example.net>\r\n"
               b"Subject     : Saying Hello\r\n"
               b"Date        : Fri, 21 Nov 1997 09(comment):   55  :  06 -0600\r\n"
               b"Message-ID  : <1234   @   local(blah)  .machine .example>\r\n\r\nbody\r\n")
    section = read(content)
    assert [f.name for f in section.fields] == ["From", "To", "Subject", "Date", "Message-ID"]
    assert section.first("To") == "Mary Smith            <mary@example.net>"
    assert section.first("From") == "John Doe <jdoe@machine(comment).  example>"


@pytest.mark.parametrize("name", [b"From", b"To", b"Cc", b"Subject", b"Sender", b"X-Note"])
@pytest.mark.parametrize("gap", [b" ", b"\t", b"  \t ", b"\r\n ", b" \r\n\t"])
def test_white_space_and_folds_before_the_colon(name: bytes, gap: bytes) -> None:
    content = name + gap + b": value\r\nAfter: yes\r\n\r\nbody\r\n"
    assert pairs(content) == [(name.decode(), "value"), ("After", "yes")]


def test_value_unfolding_keeps_white_space_and_drops_line_breaks() -> None:
    content = b"Subject: one\r\n two\r\n\tthree  \r\nX: \t lead\r\n\r\n"
    assert pairs(content) == [("Subject", "one two\tthree  "), ("X", "lead")]
    assert pairs(b"A:\r\n folded-only\r\n\r\n") == [("A", "folded-only")]


def test_lf_only_and_utf8() -> None:
    content = "Subject: caf\u00e9\nFrom: J\u00f6rg <j@x.test>\n\nbody\n".encode()
    section = read(content)
    assert section.eol == b"\n" and section.first("subject") == "caf\u00e9"
    assert read(b"Subject: bad \xff byte\r\n\r\n").first("Subject") == "bad \ufffd byte"


def test_missing_separator_the_first_non_field_line_starts_the_body() -> None:
    content = b"From: a@example.test\r\nSubject: no separator\r\nHello world.\r\nTo: x@y\r\n"
    section = read(content)
    assert [f.name for f in section.fields] == ["From", "Subject"]
    assert not section.separator and section.end == section.body_start
    assert content[section.body_start:].startswith(b"Hello world.")


def test_blank_line_ends_the_section_cr_lf_or_lf() -> None:
    assert read(b"A: 1\r\n\r\nB: 2\r\n").names() == ("A",)
    assert read(b"A: 1\n\nB: 2\n").names() == ("A",)
    assert read(b"\r\nA: 1\r\n").names() == ()
    assert read(b"").fields == () and read(b"").end == 0


def test_bare_cr_ends_a_line_and_nul_is_data() -> None:
    # A bare CR becomes CRLF at the next hop (Relay's wire encoding), so it ends a line here too:
    # the "hidden" field is a field for every consumer, as it will be downstream.
    section = read(b"Subject: lone\rTo: hidden\r\nFrom: a@b\r\n\r\n")
    assert pairs(b"Subject: lone\rTo: hidden\r\nFrom: a@b\r\n\r\n") == [
        ("Subject", "lone"), ("To", "hidden"), ("From", "a@b")]
    assert section.first("To") == "hidden"
    assert pairs(b"Subject: a\r b\rX: 1\r\rbody") == [("Subject", "a b"), ("X", "1")]
    assert read(b"Subject: a\r\rbody").body_start == len(b"Subject: a\r\r")
    assert pairs(b"X: a\x00b\r\n\r\n") == [("X", "a\x00b")]
    # a NUL in a name: not a field, so it ends the section (it is the first body line)
    assert read(b"A: 1\r\nX\x00Y: 2\r\nB: 3\r\n\r\n").names() == ("A",)


def test_mbox_from_lines_and_orphan_continuations_are_skipped() -> None:
    content = (b"From sender@x Sat Nov 21 10:00:00 2026\n  orphan\nFrom: a@b.test\n"
               b"From misplaced line\nSubject: s\n\nbody\n")
    assert pairs(content) == [("From", "a@b.test"), ("Subject", "s")]
    assert pairs(b" continuation first\r\nSubject: s\r\n\r\nb\r\n") == [("Subject", "s")]
    assert pairs(b"From : obs@b.test\r\n\r\n") == [("From", "obs@b.test")]


def test_bounds_set_truncated_and_stop_after_the_last_complete_field() -> None:
    many = b"".join(b"X-%d: v\r\n" % i for i in range(headers.MAX_FIELDS + 5))
    section = read(many + b"From: a@b\r\n\r\nbody")
    assert section.truncated and len(section.fields) == headers.MAX_FIELDS
    assert section.first("From") is None and not section.separator
    assert section.end == section.fields[-1].end

    long_line = b"Subject: " + b"x" * (headers.MAX_LINE_BYTES + 10) + b"\r\n"
    section = read(b"A: 1\r\n" + long_line + b"From: a@b\r\n\r\n")
    assert section.truncated and section.names() == ("A",) and section.end == 6

    huge = b"A: 1\r\n" + b"X: " + b"y" * 1000 + b"\r\n" * 0
    big = huge + b"".join(b"X-Fill: " + b"z" * 900 + b"\r\n" for _ in range(1200))
    section = read(big + b"\r\nbody")
    assert section.truncated and section.end <= headers.MAX_SECTION_BYTES


def test_long_but_allowed_line_is_read() -> None:
    value = b"y" * (headers.MAX_LINE_BYTES - 100)
    section = read(b"Subject: " + value + b"\r\n\r\n")
    assert not section.truncated and section.first("Subject") == value.decode()


def test_reader_is_linear_on_adversarial_shapes() -> None:
    shapes = [
        b"A" * 900_000,                               # one endless name
        b"A: " + b" \r\n" * 300_000,                  # endless folding
        b"Name" + b" \r\n" * 300_000 + b"x",          # folds before a missing colon
        b"X: 1\r\n" * 150_000,                        # many fields
    ]
    for content in shapes:
        started = time.perf_counter()
        read(content)
        assert time.perf_counter() - started < 1.0, content[:20]


def test_cache_hits_only_for_the_same_bytes() -> None:
    content = b"Subject: one\r\n\r\nbody"
    first = read(content)
    assert read(content) is first
    other = bytearray(content)
    other[9:12] = b"two"
    assert read(bytes(other)).first("Subject") == "two"
    # no separator: the whole content is verified, so an extension is not a hit
    short = b"A: 1"
    assert read(short).names() == ("A",)
    assert read(b"A: 12\r\nB: 2").names() == ("A", "B")


def test_cache_is_bounded() -> None:
    for i in range(headers.CACHE_ENTRIES * 3):
        read(b"X-N: %d\r\n\r\n" % i)
    assert len(headers._cache) <= headers.CACHE_ENTRIES
    big = b"X: " + b"v" * (headers.CACHE_MAX_HEAD + 10) + b"\r\n\r\n"
    read(big)
    assert all(len(head) <= headers.CACHE_MAX_HEAD for head, _w, _s in headers._cache.values())


@pytest.mark.parametrize(("content", "expected"), [
    (b"A: 1\r\n\r\nbody", b"A: 1\r\nX-T: v\r\n\r\nbody"),
    (b"A: 1\nB: 2\n\nbody\n", b"A: 1\nB: 2\nX-T: v\n\nbody\n"),
    # field 08: the separator was missing; the field goes before the body and the blank line
    # is added
    (b"A: 1\r\nbody line\r\n", b"A: 1\r\nX-T: v\r\n\r\nbody line\r\n"),
    (b"A: 1\r\n", b"A: 1\r\nX-T: v\r\n\r\n"),
    (b"A: 1", b"A: 1\r\nX-T: v\r\n\r\n"),
    (b"", b"X-T: v\r\n\r\n"),
    (b"\r\nbody", b"X-T: v\r\n\r\nbody"),
    (b"From x\nA: 1\n\nb", b"From x\nA: 1\nX-T: v\n\nb"),
])
def test_with_headers_inserts_before_the_body(content: bytes, expected: bytes) -> None:
    assert with_headers(content, (("X-T", "v"),)) == expected
    assert with_headers(content, ()) is content


def test_with_fields_is_what_with_headers_reads() -> None:
    for content in (b"A: 1\r\nbody\r\n", b"A : 1\nB: 2\n\nx", b""):
        added = (("X-T", "v"), ("X-U", " w"))
        view = with_fields(read(content), added)
        after = read(with_headers(content, added))
        assert [(f.name, f.value) for f in view.fields] == [
            (f.name, f.value) for f in after.fields]
