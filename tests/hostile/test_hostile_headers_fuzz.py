"""Bounded hypothesis fuzz of the header reader, address parser and RFC 2047 decoder: they never
raise, keep their structural invariants and stay linear-ish. MAILMGR_FUZZ_EXAMPLES=20000 for a
longer run (bench/README or tests: `MAILMGR_FUZZ_EXAMPLES=20000 pytest tests/hostile -k fuzz`)."""

from __future__ import annotations

import os
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailmgr.mime import addresses, headers, rfc2047

EXAMPLES = int(os.environ.get("MAILMGR_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# bytes biased towards the characters that matter to the grammar
ALPHABET = [b"A", b"From", b" ", b"\t", b":", b"\r", b"\n", b"\r\n", b"\x00", b"\xff", b"=?",
            b"?=", b"utf-8?q?", b"From ", b"x", b"@", b"<", b">", b"(", b")", b'"', b"\\",
            b",", b";", b"."]
chunks = st.lists(st.sampled_from(ALPHABET), max_size=200).map(b"".join)


def check_section(content: bytes) -> None:
    section = headers.read(content)
    assert 0 <= section.end <= section.body_start <= len(content)
    assert section.eol in (b"\r\n", b"\n")
    previous = 0
    for f in section.fields:
        assert previous <= f.start < f.end <= section.end
        assert ":" not in f.name and f.name == f.name.strip()
        assert "\n" not in f.value and f.value[:1] not in (" ", "\t")
        previous = f.end
    if section.separator:
        assert content[section.end:section.body_start] in (b"\r\n", b"\n", b"\r")
    inserted = headers.with_headers(content, (("X-Fuzz", "1"),))
    again = headers.read(inserted)
    assert [f.name for f in again.fields][-1:] == ["X-Fuzz"] or section.truncated


@FUZZ
@given(chunks)
def test_reader_never_raises_and_keeps_invariants(content: bytes) -> None:
    check_section(content)


@FUZZ
@given(st.binary(max_size=2000))
def test_reader_on_random_bytes(content: bytes) -> None:
    check_section(content)


@FUZZ
@given(chunks)
def test_address_parser_and_decoder_never_raise(content: bytes) -> None:
    text = content.decode("utf-8", "replace")
    found = addresses.parse(text)
    assert found is None or len(found) <= addresses.MAX_ADDRESSES
    for mailbox in found or ():
        assert "@" in mailbox.addr_spec
        assert addresses.parse(str(mailbox)) is not None  # what we render parses again
    decoded = rfc2047.decode(text)
    assert len(decoded) <= 4 * len(text) + 1


@settings(max_examples=max(10, EXAMPLES // 30), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=30).map(b"".join))
def test_reader_is_linear_ish_on_repeated_patterns(unit: bytes) -> None:
    small, large = unit * 2_000, unit * 20_000
    timings = []
    for content in (small, large):
        started = time.perf_counter()
        headers.read(content)
        addresses.parse(content.decode("utf-8", "replace"))
        rfc2047.decode(content.decode("utf-8", "replace"))
        timings.append(time.perf_counter() - started)
    assert timings[1] < 2.0, (unit, timings)
    assert timings[1] < 40 * timings[0] + 0.05, (unit, timings)
