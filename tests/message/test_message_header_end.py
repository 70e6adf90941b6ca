"""header_end finds the blank line after the headers, CRLF or LF-only, in one bounded scan.

Updated for issue 10 (one header reader): the old definition ("the first blank line anywhere,
else the whole content") was the field 08 bug when the blank line is missing; it still holds for
every header section made of fields, which is what the random test now generates."""

from __future__ import annotations

import random

from mailmgr.mime.headers import header_end, with_headers


def _reference(content: bytes) -> int:
    """The definition: the earlier of the first CRLF and the first LF-only blank line."""
    crlf = content.find(b"\r\n\r\n")
    lf = content.find(b"\n\n")
    if crlf != -1 and (lf == -1 or crlf < lf):
        return crlf + 2
    if lf != -1:
        return lf + 1
    return len(content)


def test_matches_the_definition_on_random_mixed_line_endings() -> None:
    rng = random.Random(7)
    lines = [b"A: 1", b"B : x y", b" folded", b"\tmore", b"From: a@b", b"C:"]
    body = [b"x", b"\r", b" ", b"A: 1", b"\r\n", b"\n"]
    for _ in range(20_000):
        eols = [rng.choice([b"\r\n", b"\n"])] * 8  # one line ending per message
        section = b"".join(rng.choice(lines[:1] + lines[4:]) + eols[0] if i == 0
                           else rng.choice(lines) + eols[i % 8]
                           for i in range(rng.randrange(1, 8)))
        content = section + eols[0] + b"".join(
            rng.choice(body) for _ in range(rng.randrange(0, 8)))
        assert header_end(content) == _reference(content), content


def test_known_shapes() -> None:
    assert header_end(b"A: 1\r\nB: 2\r\n\r\nbody\n\nx") == 12
    assert header_end(b"A: 1\nB: 2\n\nbody\r\n\r\n") == 10
    assert header_end(b"A: 1\r\n") == 6  # no body separator: all headers
    # a bare CR ends a line (it becomes CRLF at the next hop): "y" is the first body line
    assert header_end(b"B : x\ry\r\n\r\n") == len(b"B : x\r")
    assert with_headers(b"A: 1\r\n\r\nbody", (("X-T", "v"),)) == b"A: 1\r\nX-T: v\r\n\r\nbody"
