"""The one renderer of header fields built from session, envelope or config data (RFC 5322 §2.2).

Whatever the text holds, the bytes it returns are one field: control characters are replaced
before folding, so no line break can come from the data. Must not read or parse messages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# RFC 5322 §2.1.1: lines SHOULD be at most 78 and MUST be at most 998 octets, CRLF excluded.
SOFT_LIMIT = 78
HARD_LIMIT = 998
REPLACEMENT = "?"
MAX_SPACES = 64

# What is replaced by REPLACEMENT in a value: C0 controls (HTAB too: it becomes a SP, below),
# DEL, C1 controls (U+0085 NEL among them), the Unicode line and paragraph separators (which
# str.splitlines and some MUAs treat as line breaks) and lone surrogates (undecodable bytes
# kept by surrogateescape cannot be encoded to UTF-8).
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_FTEXT = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 §3.6.8: printable US-ASCII but ":"
_WORD = re.compile(r"[ \t]*[^ \t]+")  # white space and the word after it: folds go before it
_LONG_SPACE = " " * (MAX_SPACES + 1)
_SPACES = re.compile(f" {{{MAX_SPACES + 1},}}")
# RFC 2045 §5.1 token (non-ASCII allowed as RFC 6532 does), and RFC 5322 dot-atom-text @ a
# domain name, the two forms of an RFC 8601 pvalue that need no quoting.
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~\x80-\U0010ffff]+")
_ADDRESS = re.compile(
    r"(?:[!#$%&'*+\-/=?^_`{|}~0-9A-Za-z\x80-\U0010ffff]+"
    r"(?:\.[!#$%&'*+\-/=?^_`{|}~0-9A-Za-z\x80-\U0010ffff]+)*)?"
    r"@[0-9A-Za-z\x80-\U0010ffff](?:[0-9A-Za-z\-\x80-\U0010ffff]*[0-9A-Za-z\x80-\U0010ffff])?"
    r"(?:\.[0-9A-Za-z\x80-\U0010ffff](?:[0-9A-Za-z\-\x80-\U0010ffff]*[0-9A-Za-z\x80-\U0010ffff])?)*"
)


def sanitise(text: str) -> str:
    """`text` fit for one header line: HTAB becomes SP; every other C0 control (CR, LF, NUL…),
    DEL, C1 control, U+2028/U+2029 and lone surrogate becomes "?" (one per character); a run
    of more than MAX_SPACES spaces is cut to MAX_SPACES (a line that may be folded into needs
    something besides white space, RFC 5322 §3.2.2, and must stay within 998 octets)."""
    if _UNSAFE.search(text) is not None:
        text = _UNSAFE.sub(REPLACEMENT, text)
    text = text.replace("\t", " ")
    if _LONG_SPACE in text:
        text = _SPACES.sub(" " * MAX_SPACES, text)
    return text


def quoted_string(text: str) -> str:
    """`text` as an RFC 5322 §3.2.4 quoted-string: sanitised, `\\` and `"` as quoted-pairs."""
    escaped = sanitise(text).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def value(text: str) -> str:
    """An RFC 2045 `value` (token / quoted-string), as RFC 8601 §2.2 uses for the authserv-id
    and `reason`: the text itself when it is a token, else a quoted-string."""
    clean = sanitise(text)
    return clean if _TOKEN.fullmatch(clean) else quoted_string(clean)


def pvalue(text: str) -> str:
    """An RFC 8601 §2.2 pvalue: a token or `[local-part] "@" domain-name` as is, anything else
    (spaces, quotes, parentheses, ";", an empty string…) as a quoted-string."""
    clean = sanitise(text)
    if _TOKEN.fullmatch(clean) or _ADDRESS.fullmatch(clean):
        return clean
    return quoted_string(clean)


def _check(name: str, eol: bytes) -> None:
    if not _FTEXT.fullmatch(name):
        raise ValueError(f"header field name {name!r} is not RFC 5322 ftext")
    if len(name) + 2 > HARD_LIMIT:
        raise ValueError(f"header field name of {len(name)} characters cannot fit one line")
    if eol not in (b"\r\n", b"\n"):
        raise ValueError(f"line ending {eol!r} is neither CRLF nor LF")


def _split_hard(word: str, room: int) -> list[str]:
    """A word longer than a line can hold, in pieces of at most `room` octets; each piece
    after the first gets a leading SP to fold before (the one change unfolding shows). The
    first piece holds more than white space, as sanitise bounds runs of spaces."""
    pieces: list[str] = []
    current = ""
    size = 0
    for char in word:
        width = len(char.encode("utf-8"))
        if size + width > room:
            pieces.append(current)
            current, size = " ", 1
        current += char
        size += width
    pieces.append(current)
    return pieces


def _fold(line: str, out: list[str]) -> None:
    """Append the physical lines of one logical line (no trailing white space): folds go
    before white space, so each continuation line starts with WSP and holds something else
    too (RFC 5322 §3.2.2)."""
    if len(line) <= SOFT_LIMIT and line.isascii():
        out.append(line)  # the common case: nothing to fold
        return
    current = ""
    size = 0
    for word in _WORD.findall(line):
        width = len(word.encode("utf-8"))
        for piece in _split_hard(word, HARD_LIMIT) if width > HARD_LIMIT else (word,):
            width = len(piece.encode("utf-8"))
            if current and size + width > SOFT_LIMIT:
                out.append(current)
                current, size = "", 0
            current += piece
            size += width
    out.append(current)


def render_lines(name: str, parts: Sequence[str], eol: bytes = b"\r\n") -> bytes:
    """The field `name: parts[0]`, each later part on a continuation line of its own that
    starts with HTAB; a part longer than 78 octets is folded further at its spaces. Parts are
    sanitised first (see `sanitise`) and lose trailing spaces; parts holding nothing but white
    space are left out.

    Unfolding (RFC 5322 §2.2.3: remove each line ending) gives `name: ` + the sanitised parts
    joined with HTAB (`name:` when there is none), except that a word too long for any line
    (over 998 octets with the spaces before it) gets a SP where it had to be broken (§2.1.1's
    998-octet MUST). Ends with `eol`.
    Raises ValueError for a name that is not ftext (§3.6.8) or an `eol` other than CRLF/LF.
    """
    _check(name, eol)
    clean = [text for text in (sanitise(part).rstrip(" ") for part in parts) if text.strip(" ")]
    lines: list[str] = []
    for index, text in enumerate(clean or [""]):
        _fold((f"{name}: {text}" if text else f"{name}:") if index == 0 else f"\t{text}", lines)
    return eol.join(line.encode("utf-8") for line in lines) + eol


def render_field(name: str, value: str, eol: bytes = b"\r\n") -> bytes:
    """One header field, `name: value`, folded at white space to stay within 78 octets a line
    where it can (998 always), ending with `eol`; see `render_lines` for the guarantees."""
    return render_lines(name, (value,), eol)
