"""Search fields of an archived message, taken from its header section and MIME structure.

Owns header decoding (RFC 2047, folding) and the has-attachments rule; does no I/O and never
raises on malformed mail (a field it cannot read is None or kept raw). Runs for every archived
message, so the common case (plain ASCII headers, a single-part body) avoids the email package.
"""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.utils import format_datetime, parsedate_to_datetime

from mailmgr.message import header_end
from mailmgr.mime import walk

_FOLD = re.compile(r"\r?\n(?=[ \t])")
# The email package's own rules for the header section (feedparser.headerRE and NLCRE_crack).
_HEADER_LINE = re.compile(r"^(From |[\041-\071\073-\176]*:|[\t ])")
_LINES = re.compile(r"(?<=\r\n)|(?<=\r)(?!\n)|(?<=\n)")
# Values the header registry renders unchanged, so they need no parse: unstructured text without
# encoded words, dot-atom message ids, and address lists of dot-atom addresses with plain
# (dot-free, single-spaced) display names.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_ADDR = rf"{_DOT_ATOM}@{_DOT_ATOM}"
_MAILBOX = rf"(?:{_ADDR}|{_ATOM}(?: {_ATOM})* <{_ADDR}>)"
_PLAIN_ADDRESSES = re.compile(rf"{_MAILBOX}(?:, {_MAILBOX})*")
_PLAIN_MSG_ID = re.compile(rf"<{_ADDR}>")
_ADDRESS_HEADERS = frozenset({"to", "from", "cc"})
_UNSTRUCTURED_HEADERS = frozenset(
    {"subject", "in-reply-to", "x-mailer", "x-original-mailer", "x-priority"}
)


@dataclass(frozen=True)
class HeaderFields:
    """The header-derived columns of an archive row (None: the header is absent)."""

    date: str | None = None
    to: str | None = None
    from_: str | None = None
    cc: str | None = None
    subject: str | None = None
    message_id: str | None = None
    in_reply_to: str | None = None
    x_mailer: str | None = None
    x_original_mailer: str | None = None
    x_priority: str | None = None
    received: tuple[str, ...] = ()
    has_attachments: bool = False


def decode_value(name: str, raw: str) -> str:
    """Unfold and RFC 2047-decode one header value; fall back to less clever decodings rather
    than lose text (the default policy drops unparsable address parts)."""
    value = _FOLD.sub("", raw).strip()
    fast = _plain_value(name.lower(), value)
    if fast is not None:
        return fast
    try:
        header = email.policy.default.header_factory(name, value)
        if not header.defects:
            return str(header)
    except Exception:  # the email package raises many types on bad input
        pass
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def _plain_value(key: str, value: str) -> str | None:
    """What the header registry would return for a value that cannot need it; None: ask it."""
    if not value or not value.isascii() or "=?" in value:
        return None
    if key in _UNSTRUCTURED_HEADERS:
        return value
    if key in _ADDRESS_HEADERS:
        return value if _PLAIN_ADDRESSES.fullmatch(value) else None
    if key == "message-id":
        return value if _PLAIN_MSG_ID.fullmatch(value) else None
    if key == "date":
        try:  # the registry's DateHeader does exactly this; a bad date is kept as written
            return format_datetime(parsedate_to_datetime(value))
        except Exception:
            return value
    return None


class _Headers:
    """The header section as the email package's compat32 parser splits it: fields in order,
    values with their folding, parsing stopping at the first line that is not a header."""

    def __init__(self, text: str) -> None:
        self.fields: list[tuple[str, str]] = []
        lines = [line for line in _LINES.split(text) if line]
        name: str | None = None
        value: list[str] = []
        for line in lines:
            if not _HEADER_LINE.match(line):
                break  # the email package treats the rest as body
            if line[0] in " \t":
                if name is not None:
                    value.append(line)
                continue
            self._add(name, value)
            name, value = None, []
            if line.startswith("From "):
                continue  # an mbox separator or a misplaced one: never a field
            colon = line.find(":")
            if colon <= 0:
                continue
            name, value = line[:colon], [line]
        self._add(name, value)

    def _add(self, name: str | None, lines: list[str]) -> None:
        if name is None:
            return
        value = lines[0].split(":", 1)[1].lstrip(" \t") + "".join(lines[1:])
        self.fields.append((name, value.rstrip("\r\n")))

    def get(self, name: str) -> str | None:
        key = name.lower()
        return next((v for n, v in self.fields if n.lower() == key), None)

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self.fields if n.lower() == key]


def _header_section(content: bytes) -> _Headers:
    # Headers may carry raw UTF-8 (SMTPUTF8); decode leniently so a bad byte costs one char.
    return _Headers(content[: header_end(content)].decode("utf-8", errors="replace"))


def _needs_mime_walk(headers: _Headers) -> bool:
    """False when the top-level headers alone show there is no attachment: a single part that
    is neither a container nor named nor given a Content-Disposition (the walk would find
    exactly that, so skipping it changes no result)."""
    if headers.get_all("Content-Disposition"):
        return True
    for value in headers.get_all("Content-Type"):
        lower = value.lower()
        if "multipart" in lower or "message" in lower or "name" in lower:
            return True
    return False


def has_attachments(content: bytes) -> bool:
    """True when some walked leaf part is `Content-Disposition: attachment`, or is a non-text
    part with a file name (inline images with a name count, as mail clients show them).
    Linear in the size; bounded by mailmgr.mime.walk's part and depth limits (past them the
    answer is about the parts walked)."""
    return walk.has_attachments(walk.walk(content))


def extract(content: bytes) -> HeaderFields:
    """Parse the header section (and, when it may hold an attachment, the MIME tree) of
    `content`. CPU-bound for large multipart messages: call it off the event loop."""
    msg = _header_section(content)

    def get(name: str) -> str | None:
        raw = msg.get(name)
        return None if raw is None else decode_value(name, raw)

    return HeaderFields(
        date=get("Date"),
        to=get("To"),
        from_=get("From"),
        cc=get("Cc"),
        subject=get("Subject"),
        message_id=get("Message-ID"),
        in_reply_to=get("In-Reply-To"),
        x_mailer=get("X-Mailer"),
        x_original_mailer=get("X-Original-Mailer"),
        x_priority=get("X-Priority"),
        received=tuple(_FOLD.sub("", v).strip() for v in msg.get_all("Received")),
        has_attachments=_needs_mime_walk(msg) and has_attachments(content),
    )
