"""The `Received:` trace field mailmgr adds as the receiving SMTP server (RFC 5321 §4.4).

Built from the stored session facts only, so every retry of a message renders the same bytes.
Names no software or version (semantics.md §2) and lists a recipient only when there is one.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import re

from mailmgr.message import InboundMessage

# What may appear unquoted in the `from` clause; anything else in a client's HELO is replaced,
# so a hostile HELO cannot inject header syntax (parentheses, semicolons, line breaks).
_HELO_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")


def _address_literal(ip: str) -> str:
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return "[unknown]"
    return f"[IPv6:{parsed.compressed}]" if parsed.version == 6 else f"[{parsed}]"


def _protocol(message: InboundMessage) -> str:
    """RFC 3848 keywords: ESMTP, plus S for TLS and A for an authenticated client."""
    session = message.session
    return "ESMTP" + ("S" if session.tls else "") + ("A" if session.auth_user else "")


def received_field(message: InboundMessage, hostname: str, eol: bytes = b"\r\n") -> bytes:
    """The complete field, folded, ending with `eol`."""
    session = message.session
    helo = _HELO_UNSAFE.sub("?", session.helo)[:255] or "unknown"
    parts = [f"from {helo} ({_address_literal(session.peer_ip)})"]
    by = f"by {hostname} with {_protocol(message)}"
    if session.tls and session.tls_protocol and session.tls_cipher:
        by += f" (using {session.tls_protocol} with cipher {session.tls_cipher})"
    parts.append(by)
    ident = f"id {message.id}"
    recipients = message.envelope.rcpt_to
    if len(recipients) == 1 and "\n" not in recipients[0] and "\r" not in recipients[0]:
        ident += f"\n\tfor <{recipients[0]}>"
    parts.append(ident)
    when = email.utils.format_datetime(
        dt.datetime.fromtimestamp(message.received_at, dt.UTC).replace(microsecond=0)
    )
    text = "Received: " + "\n\t".join(parts) + f"; {when}"
    return text.replace("\n", eol.decode()).encode("utf-8") + eol
