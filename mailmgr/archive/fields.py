"""Search fields of an archived message, taken from its header section and MIME structure.

Header fields come from mailmgr.mime (the one header reader, cached per message version) and are
decoded with its linear RFC 2047 decoder; owns the has-attachments rule. Does no I/O and never
raises on malformed mail (a field it cannot read is None or kept raw).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime

from mailmgr.mime import rfc2047, walk
from mailmgr.mime.headers import HeaderSection, read


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
    """Unfold and RFC 2047-decode one header value (§6.2, linear: mailmgr.mime.rfc2047); a Date
    is normalised as the email package's DateHeader does, a bad one kept as written. Text
    around encoded words, and values without any, are kept exactly as written (the same on
    every Python, unlike the email package's header registry)."""
    value = raw.replace("\r", "").replace("\n", "").strip() if "\n" in raw else raw.strip()
    if name.lower() == "date":
        try:
            return format_datetime(parsedate_to_datetime(value))
        except Exception:  # a bad date is kept as written
            return value
    return rfc2047.decode(value)


def _needs_mime_walk(headers: HeaderSection) -> bool:
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
    msg = read(content)

    def get(name: str) -> str | None:
        raw = msg.first(name)
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
        received=tuple(v.strip() for v in msg.get_all("Received")),
        has_attachments=_needs_mime_walk(msg) and has_attachments(content),
    )
