"""RFC 2047 decoding per §6.2: the RFC's own examples, undecodable words kept, linear cost."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from mailmgr.mime.rfc2047 import decode


@pytest.mark.parametrize(("encoded", "decoded"), [
    # RFC 2047 §8, the table of examples
    ("(=?ISO-8859-1?Q?a?=)", "(a)"),
    ("(=?ISO-8859-1?Q?a?= b)", "(a b)"),
    ("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"),
    ("(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)"),
    ("(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)"),
    ("(=?ISO-8859-1?Q?a_b?=)", "(a b)"),
    ("(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)"),
    # §8 header examples
    ("=?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>", "Keith Moore <moore@cs.utk.edu>"),
    ("=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>",
     "Andr\u00e9 Pirard <PIRARD@vm1.ulg.ac.be>"),
    ("=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n    "
     "=?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=",
     "If you can read this you understand the example."),
])
def test_rfc2047_section_8_examples(encoded: str, decoded: str) -> None:
    assert decode(encoded) == decoded


def test_no_space_is_inserted_next_to_text() -> None:
    assert decode("Re:=?utf-8?q?caf=C3=A9?=!") == "Re:caf\u00e9!"
    assert decode("a =?utf-8?q?b?= c") == "a b c"
    assert decode("x=?utf-8?b?w6k=?=y") == "x\u00e9y"


def test_utf8_split_across_adjacent_words_survives() -> None:
    # "\u00e9" is C3 A9; each half in its own B word
    assert decode("=?utf-8?b?w6==?= =?utf-8?b?qQ==?=") == "\u00e9"
    assert decode("=?utf-8?q?=C3?= =?UTF-8?Q?=A9?=") == "\u00e9"


@pytest.mark.parametrize("word", [
    "=?no-such-charset?q?x?=", "=?base64?q?eA==?=", "=?utf-8?x?abc?=", "=?utf-8?q?\u00e9?=",
])
def test_undecodable_words_are_kept_as_written(word: str) -> None:
    assert decode(f"a {word} b") == f"a {word} b"
    assert decode(f"=?utf-8?q?x?= {word}") == f"x {word}"


def test_rfc2231_language_and_bad_padding() -> None:
    assert decode("=?utf-8*en?q?hi?=") == "hi"
    assert decode("=?utf-8?b?w6k?=") == "\u00e9"  # missing padding
    assert decode("=?utf-8?q?=ZZ?=") == "=ZZ"  # a bad escape is kept


def test_plain_text_is_returned_unchanged() -> None:
    text = "nothing = ? encoded here"
    assert decode(text) is text


def test_hostile_03_many_adjacent_words_are_linear_in_time_and_memory() -> None:
    for n in (10_000, 40_000):
        value = " ".join("=?utf-8?Q?a=C3=A9?=" for _ in range(n))
        tracemalloc.start()
        started = time.perf_counter()
        result = decode(value)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert result == "a\u00e9" * n
        assert elapsed < 2.0
        assert peak < 20 * len(value) + 1_000_000, (n, peak)
