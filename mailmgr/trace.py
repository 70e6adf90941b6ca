"""The `Received:` trace field mailmgr adds as the receiving SMTP server (RFC 5321 §4.4).

Built from the stored session facts only, so every retry of a message renders the same bytes.
Names no software or version (semantics.md §2) and lists a recipient only when there is one.
Rendered by mailmgr.mime.render, so no stored value can add a line to it.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import re

from mailmgr.message import InboundMessage
from mailmgr.mime.render import render_lines

# What may appear unquoted in the `from` clause; anything else in a client's HELO is replaced,
# so a hostile HELO cannot inject header syntax (parentheses, semicolons, line breaks).
_HELO_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")
# A recipient with any control character (C0, DEL, C1, U+2028/9) is left out of the `for`
# clause rather than shown altered: the clause is optional (RFC 5321 §4.4) and a mangled path
# would name someone else.
_PATH_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


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


def _a_label(helo: str) -> str:
    """A U-label HELO (RFC 6531 lets SMTPUTF8 clients send one) as its A-label (RFC 5890), so
    an ASCII header names it faithfully; as given when it is not a valid IDN."""
    if helo.isascii():
        return helo
    try:
        return helo.encode("idna").decode("ascii")
    except UnicodeError:
        return helo


def received_field(message: InboundMessage, hostname: str, eol: bytes = b"\r\n") -> bytes:
    """The complete field, one clause a line, ending with `eol`; never more than one field,
    whatever the session facts hold (see mailmgr.mime.render.render_lines)."""
    session = message.session
    helo = _HELO_UNSAFE.sub("?", _a_label(session.helo))[:255] or "unknown"
    parts = [f"from {helo} ({_address_literal(session.peer_ip)})"]
    by = f"by {hostname} with {_protocol(message)}"
    if session.tls and session.tls_protocol and session.tls_cipher:
        by += f" (using {session.tls_protocol} with cipher {session.tls_cipher})"
    parts += [by, f"id {message.id}"]
    recipients = message.envelope.rcpt_to
    if len(recipients) == 1 and not _PATH_UNSAFE.search(recipients[0]):
        parts.append(f"for <{recipients[0]}>")
    when = email.utils.format_datetime(
        dt.datetime.fromtimestamp(message.received_at, dt.UTC).replace(microsecond=0)
    )
    parts[-1] += f"; {when}"
    return render_lines("Received", parts, eol)
