"""RFC 2047 encoded-word decoding exactly per §6.2, in one linear pass (time and memory).
"""

from __future__ import annotations

import binascii
import codecs
import re
from functools import lru_cache

# Decisions:
# - Text around an encoded word is kept exactly as written: no space is inserted (unlike
#   `email.header.make_header`). Words are decoded wherever they appear, also next to other text,
#   as mail clients do.
# - Linear white space between two adjacent decodable encoded words is dropped (§6.2); adjacent
#   words in the same charset are joined as bytes before decoding, so a character split across
#   words (common with UTF-8 in B encoding) survives.
# - A word that cannot be decoded (unknown or non-text charset, bad base64, non-ASCII encoded text)
#   is kept as written, and the white space next to it too.
# - B and Q encodings (§4); the charset goes through Python's codecs with replacement; an RFC 2231
#   language suffix (`utf-8*en`) is ignored.
_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([BbQq])\?([^?\s]*)\?=")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
_LWSP = " \t\r\n"


@lru_cache(maxsize=128)
def _codec(charset: str) -> str | None:
    """The codec name for `charset`, or None when Python has no text codec for it."""
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None  # base64, rot13 and friends are not character sets
    return info.name


def _q(text: str) -> bytes:
    data = text.encode("ascii").replace(b"_", b" ")
    return _Q_HEX.sub(lambda m: bytes((int(m.group(1), 16),)), data)


def _b(text: str) -> bytes:
    data = text.encode("ascii")
    data += b"=" * (-len(data) % 4)
    return binascii.a2b_base64(data)


def word_bytes(encoding: str, text: str) -> bytes | None:
    """The octets of one encoded word's encoded-text; None when it is not valid."""
    if not text.isascii():
        return None
    try:
        return _q(text) if encoding in "Qq" else _b(text)
    except (binascii.Error, ValueError):
        return None


# Decoded text is header text (RFC 2047 §5: an encoded word stands for printable text): a control
# character it carries -- CR, LF, ESC, NUL, C1 -- would become a line break in a rendered header,
# a forged field in an event, or a terminal escape in `archive search`; it is replaced. TAB stays.
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def decode(value: str) -> str:
    """`value` with its RFC 2047 encoded words decoded (see the module docstring). Never raises;
    O(len(value)) time and memory."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pos = 0
    run = bytearray()  # octets of adjacent decodable words in one charset
    run_codec: str | None = None
    run_text: list[str] = []  # the words as written, for a run that will not decode

    def flush() -> None:
        nonlocal run_codec
        if run_codec is not None:
            try:
                out.append(_CONTROLS.sub("\ufffd", bytes(run).decode(run_codec, "replace")))
            except Exception:  # a codec that fails anyway: keep what was written
                out.append("".join(run_text))
        run.clear()
        run_text.clear()
        run_codec = None

    previous_decoded = False
    for m in _WORD.finditer(value):
        gap = value[pos:m.start()]
        codec = _codec(m.group(1).lower())
        octets = word_bytes(m.group(2), m.group(3)) if codec is not None else None
        pos = m.end()
        if octets is None:
            flush()
            out.append(gap)
            out.append(m.group(0))
            previous_decoded = False
            continue
        if not (previous_decoded and gap.strip(_LWSP) == ""):
            flush()
            out.append(gap)
        elif codec != run_codec:
            flush()  # the white space between the two words is dropped (§6.2)
        run_codec = codec
        run += octets
        run_text.append(m.group(0))
        previous_decoded = True
    flush()
    out.append(value[pos:])
    return "".join(out)
