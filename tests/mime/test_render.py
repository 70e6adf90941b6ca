"""The header renderer: one field out, whatever text goes in (RFC 5322 §2.1.1, §2.2, §3.2.2)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmgr.mime.render import (
    HARD_LIMIT,
    SOFT_LIMIT,
    pvalue,
    quoted_string,
    render_field,
    render_lines,
    sanitise,
    value,
)
from tests.mime.fuzz import EXAMPLES

# Characters that must never appear in a rendered line (its terminator aside): every C0 but
# HTAB, DEL, C1, the Unicode line/paragraph separators and lone surrogates.
_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_HOSTILE = st.lists(
    st.one_of(
        st.sampled_from([" " * 40, "\t" * 30, "\r", "\n", "\r\n", "\x00", "\t", " ", "\x0b",
                         "\x0c", "\x1b", "\x7f",
                         "\x85", "\x9b", "\u2028", "\u2029", "\udc80", "é", "€", ":", ";",
                         '"', "\\", "(", ")", "x" * 70, "é" * 300]),
        st.characters(),
    ),
    max_size=60,
).map("".join)
_NAMES = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
                 min_size=1, max_size=40)


def _check_one_field(rendered: bytes, name: str, eol: bytes) -> list[str]:
    """The physical lines, after checking they make exactly one well-formed field."""
    assert rendered.endswith(eol)
    text = rendered.decode("utf-8")
    lines = text[: -len(eol)].split(eol.decode())
    assert lines[0].startswith(f"{name}:")
    for number, line in enumerate(lines):
        assert "\r" not in line and "\n" not in line
        assert len(line.encode("utf-8")) <= HARD_LIMIT
        if number:
            assert line[:1] in (" ", "\t") and line.strip(" \t"), (number, line)
        body = line[1:] if number else line
        assert "\t" not in body
        assert not _FORBIDDEN.search(line)
    return lines


def _unfold(rendered: bytes, eol: bytes) -> str:
    return rendered.decode("utf-8")[: -len(eol)].replace(eol.decode(), "")


def _assert_unfolds_to(rendered: bytes, eol: bytes, expected: str) -> None:
    if max(len(w.encode()) for w in re.findall("[ \t]*[^ \t]+", expected)) <= HARD_LIMIT:
        assert _unfold(rendered, eol) == expected
    else:  # a word no line can hold is broken by a fold: one SP more after unfolding
        assert _unfold(rendered, eol).replace(" ", "") == expected.replace(" ", "")


@settings(max_examples=EXAMPLES, deadline=None)
@given(_NAMES, _HOSTILE, st.sampled_from([b"\r\n", b"\n"]))
def test_any_value_renders_one_field_that_unfolds_to_the_sanitised_value(
    name: str, text: str, eol: bytes
) -> None:
    rendered = render_field(name, text, eol)
    _check_one_field(rendered, name, eol)
    clean = sanitise(text).rstrip(" ")
    expected = f"{name}: {clean}" if clean else f"{name}:"
    _assert_unfolds_to(rendered, eol, expected)


@settings(max_examples=EXAMPLES, deadline=None)
@given(_NAMES, st.lists(_HOSTILE, max_size=6))
def test_any_parts_render_one_field_one_part_a_line(name: str, parts: list[str]) -> None:
    rendered = render_lines(name, parts)
    _check_one_field(rendered, name, b"\r\n")
    kept = [sanitise(p).rstrip(" ") for p in parts if sanitise(p).strip(" ")]
    _assert_unfolds_to(rendered, b"\r\n", f"{name}: " + "\t".join(kept) if kept else f"{name}:")


@settings(max_examples=EXAMPLES, deadline=None)
@given(_HOSTILE)
def test_pvalue_and_value_are_single_safe_words(text: str) -> None:
    for rendered in (pvalue(text), value(text), quoted_string(text)):
        assert not _FORBIDDEN.search(rendered) and "\t" not in rendered
        if rendered.startswith('"'):
            assert re.fullmatch(r'"(?:[^"\\]|\\.)*"', rendered), rendered
        else:
            assert " " not in rendered and ";" not in rendered and "(" not in rendered


def test_every_control_character_is_replaced() -> None:
    controls = "".join(map(chr, [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]))
    rendered = render_field("X-Test", f"a{controls}b")
    assert rendered == b"X-Test: a" + b"?" * 9 + b" " + b"?" * (len(controls) - 10) + b"b\r\n"
    assert render_field("X", "x\udcff") == b"X: x?\r\n"  # a surrogateescape'd byte


def test_bare_cr_cannot_start_a_header_line() -> None:
    rendered = render_field("Authentication-Results",
                            "mx; spf=none smtp.helo=x\rX-Injected: yes\r\n\tmore")
    assert rendered == (b"Authentication-Results: mx; spf=none smtp.helo=x?X-Injected: yes??"
                        b" more\r\n")


@pytest.mark.parametrize("name", ["", "Bad Name", "X:Y", "X\r\nY", "Na\x00me", "Ünï", "X\t"])
def test_a_name_that_is_not_ftext_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="ftext"):
        render_field(name, "v")


def test_other_line_endings_are_refused() -> None:
    with pytest.raises(ValueError, match="line ending"):
        render_field("X", "v", b"\r")


def test_folds_at_white_space_within_78_octets() -> None:
    words = " ".join(f"word{i:02d}" for i in range(40))
    rendered = render_field("Subject", words)
    lines = _check_one_field(rendered, "Subject", b"\r\n")
    assert len(lines) > 3 and all(len(line) <= SOFT_LIMIT for line in lines)
    assert _unfold(rendered, b"\r\n") == f"Subject: {words}"


def test_a_long_word_stays_whole_up_to_998_octets() -> None:
    word = "x" * 900
    rendered = render_field("X-Long", f"a {word} b")
    assert rendered == f"X-Long: a\r\n {word}\r\n b\r\n".encode()


def test_a_word_over_998_octets_is_broken_with_a_fold() -> None:
    rendered = render_field("X-Long", "é" * 1500)
    lines = _check_one_field(rendered, "X-Long", b"\r\n")
    assert len(lines) == 5 and lines[0] == "X-Long:"  # 3,000 octets: 4 pieces
    assert _unfold(rendered, b"\r\n").replace(" ", "") == "X-Long:" + "é" * 1500


def test_white_space_only_parts_and_trailing_space_make_no_empty_line() -> None:
    assert render_lines("X", ["a  ", "  ", "\t ", "b  "]) == b"X: a\r\n\tb\r\n"
    assert render_lines("X", []) == b"X:\r\n"
    assert render_field("X", " " * 200) == b"X:\r\n"
    spaced = render_field("X", "a" + " " * 3000 + "b")
    assert spaced == b"X: a" + b" " * 64 + b"b\r\n"  # runs of spaces are bounded


def test_pvalue_quotes_what_is_not_a_token_or_address() -> None:
    assert pvalue("bounce@example.com") == "bounce@example.com"
    assert pvalue("mta.example.net") == "mta.example.net"
    assert pvalue("a=b+c@example.com") == "a=b+c@example.com"
    assert pvalue('"x y"@example.com') == '"\\"x y\\"@example.com"'
    assert pvalue("x\rX-Injected: yes") == '"x?X-Injected: yes"'
    assert pvalue("a;b") == '"a;b"' and pvalue("") == '""' and pvalue("a/b") == '"a/b"'
    assert value("mx.example") == "mx.example" and value("mx example") == '"mx example"'
