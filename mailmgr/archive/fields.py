"""Search fields of an archived message, taken from its header section and MIME structure.

Owns header decoding (RFC 2047, folding) and the has-attachments rule; does no I/O and never
raises on malformed mail (a field it cannot read is None or kept raw).
"""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser, Parser

from mailmgr.message import header_end

_FOLD = re.compile(r"\r?\n(?=[ \t])")


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


def _header_message(content: bytes) -> Message:
    # Headers may carry raw UTF-8 (SMTPUTF8); decode leniently so a bad byte costs one char.
    text = content[: header_end(content)].decode("utf-8", errors="replace")
    return Parser(policy=email.policy.compat32).parsestr(text, headersonly=True)


def has_attachments(content: bytes) -> bool:
    """True when some leaf part is `Content-Disposition: attachment`, or is a non-text part
    with a file name (inline images with a name count, as mail clients show them)."""
    try:
        msg = BytesParser(policy=email.policy.default).parsebytes(content)
        for part in msg.walk():
            if part.get_content_maintype() == "multipart":
                continue
            if part.get_content_disposition() == "attachment":
                return True
            if part.get_filename() and part.get_content_maintype() != "text":
                return True
    except Exception:  # a message we cannot parse has no attachments we know of
        return False
    return False


def extract(content: bytes) -> HeaderFields:
    """Parse the header section (and, for has_attachments, the MIME tree) of `content`.

    CPU-bound for large messages: call it off the event loop."""
    msg = _header_message(content)

    def get(name: str) -> str | None:
        raw = msg.get(name)
        return None if raw is None else decode_value(name, str(raw))

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
        received=tuple(_FOLD.sub("", str(v)).strip() for v in msg.get_all("Received") or ()),
        has_attachments=has_attachments(content),
    )
