"""MessageFacts: every attribute a rule condition can read, extracted once per message state.

Reads the header section through mailmgr.mime (the one header reader; the body is never read)
and never raises on malformed input: a malformed address list yields no candidates. Pure, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailmgr.message import ClientCertificate, InboundMessage, Verdicts
from mailmgr.mime import headers as mime_headers
from mailmgr.mime import rfc2047
from mailmgr.mime.addresses import addr_specs
from mailmgr.mime.headers import HeaderSection

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
        for f in headers.fields:
            if f.key.startswith("x-"):
                x_values.setdefault(f.key, []).append(f.value.strip())
        return cls(
            mail_from=_non_empty(message.envelope.mail_from),
            helo=_non_empty(session.helo),
            from_=addresses(headers, "From"),
            sender=addresses(headers, "Sender"),
            to=addresses(headers, "To"),
            cc=addresses(headers, "Cc"),
            subject=tuple(rfc2047.decode(v.strip()) for v in headers.get_all("Subject")),
            x_headers=tuple((k, tuple(v)) for k, v in x_values.items()),
            read_receipt_requested=any(headers.get_all(h) for h in _READ_RECEIPT_HEADERS),
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


def parse_headers(content: bytes, added: tuple[tuple[str, str], ...] = ()) -> HeaderSection:
    """The header section of `content` as the one reader sees it, plus the `added` fields as
    AddHeader inserts them (after the others); the body is never read."""
    return mime_headers.with_fields(mime_headers.read(content), added)


def addresses(headers: HeaderSection, name: str) -> tuple[str, ...]:
    """Every addr-spec (no display names) in all occurrences of header `name`, de-duplicated;
    a malformed list contributes none (RFC 5322 §3.4, our strict parser)."""
    return tuple(a for a in addr_specs(headers.get_all(name)) if "\ufffd" not in a)


def _non_empty(value: str) -> tuple[str, ...]:
    return (value,) if value else ()
