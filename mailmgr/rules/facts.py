"""MessageFacts: every attribute a rule condition can read, extracted once per message state.

Parses only the header section (never the body) and never raises on malformed input: anything
that cannot be understood simply yields no candidates. Pure, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses

from mailmgr.message import ClientCertificate, InboundMessage, Verdicts, header_end

_READ_RECEIPT_HEADERS = ("disposition-notification-to", "return-receipt-to")


@dataclass(frozen=True)
class MessageFacts:
    """Candidates per attribute; an absent attribute is an empty tuple (semantics.md §4)."""

    mail_from: tuple[str, ...]
    helo: tuple[str, ...]
    from_: tuple[str, ...]
    sender: tuple[str, ...]
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: tuple[str, ...]
    x_headers: tuple[tuple[str, tuple[str, ...]], ...]  # lower-case name -> every value
    read_receipt_requested: bool
    message_size: int
    source_ip: str
    tls: bool
    tls_wrapped: bool
    client_certificate: ClientCertificate | None
    verdicts: Verdicts

    @classmethod
    def build(
        cls,
        message: InboundMessage,
        added_headers: tuple[tuple[str, str], ...] = (),
        verdicts: Verdicts | None = None,
    ) -> MessageFacts:
        headers = parse_headers(message.content, added_headers)
        session = message.session
        x_values: dict[str, list[str]] = {}
        for name, value in headers.items():
            key = name.strip().lower()
            if key.startswith("x-"):
                x_values.setdefault(key, []).append(_unfold(value))
        return cls(
            mail_from=_non_empty(message.envelope.mail_from),
            helo=_non_empty(session.helo),
            from_=addresses(headers, "From"),
            sender=addresses(headers, "Sender"),
            to=addresses(headers, "To"),
            cc=addresses(headers, "Cc"),
            subject=tuple(_decode(v) for v in _all(headers, "Subject")),
            x_headers=tuple((k, tuple(v)) for k, v in x_values.items()),
            read_receipt_requested=any(_all(headers, h) for h in _READ_RECEIPT_HEADERS),
            message_size=message.size,
            source_ip=session.peer_ip,
            tls=session.tls or session.tls_wrapped,
            tls_wrapped=session.tls_wrapped,
            client_certificate=session.client_certificate,
            verdicts=verdicts if verdicts is not None else Verdicts(),
        )

    def mime_header(self, name: str) -> tuple[str, ...]:
        key = name.strip().lower()
        for header, values in self.x_headers:
            if header == key:
                return values
        return ()

    def certificate(self, attribute: str) -> tuple[str, ...]:
        if self.client_certificate is None:
            return ()
        return self.client_certificate.values(attribute)


def parse_headers(content: bytes, added: tuple[tuple[str, str], ...] = ()) -> Message:
    """The header section of `content` (plus `added`) as a compat32 Message; the body is never
    read. Bytes are decoded as UTF-8 with replacement so SMTPUTF8 headers stay readable."""
    text = content[: header_end(content)].decode("utf-8", errors="replace")
    if added:
        if text and not text.endswith("\n"):
            text += "\n"
        text += "".join(f"{name}: {value}\n" for name, value in added)
    try:
        return HeaderParser(policy=compat32).parsestr(text, headersonly=True)
    except Exception:  # the parser is lenient; this is a last-resort guard for odd input
        return Message(policy=compat32)


def addresses(headers: Message, name: str) -> tuple[str, ...]:
    """Every addr-spec (no display names) in all occurrences of header `name`, de-duplicated."""
    values = [_unfold(v) for v in _all(headers, name)]
    if not values:
        return ()
    try:
        pairs = getaddresses(values)
    except Exception:
        return ()
    seen: dict[str, None] = {}
    for _display, addr in pairs:
        addr = addr.strip()
        if _is_addr_spec(addr):
            seen.setdefault(addr, None)
    return tuple(seen)


def _is_addr_spec(addr: str) -> bool:
    """Enough of an addr-spec to be a candidate; undecodable bytes (U+FFFD) make it garbage."""
    local, at, domain = addr.rpartition("@")
    return bool(at and local and domain) and "\ufffd" not in addr


def _all(headers: Message, name: str) -> list[str]:
    return [str(v) for v in headers.get_all(name, [])]


def _non_empty(value: str) -> tuple[str, ...]:
    return (value,) if value else ()


def _unfold(value: str) -> str:
    return value.replace("\r", "").replace("\n", "").strip()


def _decode(value: str) -> str:
    """RFC 2047 decoding; undecodable encoded words are kept as written."""
    raw = _unfold(value)
    try:
        return str(make_header(decode_header(raw)))
    except Exception:
        return raw
