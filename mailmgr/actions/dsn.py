"""RFC 3464 delivery status notifications (multipart/report) for the Bounce action.

Builds bytes only; sending belongs to bounce.py. Lines end with CRLF; the original message is
returned as its header section (text/rfc822-headers), never its body. Every field built from
envelope or config data goes through mailmgr.mime.render, so none can add a line.
"""

from __future__ import annotations

import base64
import email.utils
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from mailmgr.mime.headers import header_end
from mailmgr.mime.render import render_field, sanitise

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_UNITEXT_ESCAPED = frozenset(" +=\\")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class DsnRequest:
    reporting_mta: str  # our hostname
    sender: str  # From: of the DSN (the action's Sender)
    to: str  # the original envelope sender
    recipients: Sequence[str]  # the matched recipients being bounced
    status_code: str  # RFC 3463 enhanced status, e.g. 5.1.1
    smtp_reply_code: str  # e.g. 550
    diagnostic_message: str
    human_text: str | None
    original_headers: bytes
    arrival: float  # epoch seconds the original was received
    now: float
    original_id: str


def _encode_unitext(address: str) -> str:
    """RFC 6533 §3 utf-8-addr-unitext: UTF-8 kept, and each character an address type may not
    carry (controls, SP, "+", "=", "\\", DEL, C1, U+2028/9) as `\\x{HEX}`."""
    return "".join(
        f"\\x{{{ord(char):X}}}" if char in _UNITEXT_ESCAPED or _CONTROL.match(char) else char
        for char in address
    )


def generic_address(address: str) -> str:
    """The `address-type; generic-address` of RFC 3464 §2.3.2 (Final-Recipient,
    Original-Recipient): rfc822 for a plain ASCII address, else utf-8 (RFC 6533) escaped, so a
    control character in a stored recipient is shown, never sent raw."""
    if address.isascii() and not _CONTROL.search(address):
        return f"rfc822; {address}"
    return f"utf-8; {_encode_unitext(address)}"


def _fields(*fields: tuple[str, str]) -> bytes:
    return b"".join(render_field(name, value) for name, value in fields)


def _body_lines(text: str) -> list[str]:
    """Body text as lines: any line break (CRLF, LF or a bare CR) ends a line, and control
    characters in a line are replaced, so no part boundary or bare CR can come from the data."""
    return [sanitise(line) for line in _LINE_BREAK.split(text)]


def diagnostic_code(request: DsnRequest) -> str:
    return f"smtp; {request.smtp_reply_code} {request.status_code} {request.diagnostic_message}"


def _human_part(request: DsnRequest) -> bytes:
    text = request.human_text or (
        "This is the mail system at host {host}.\n\n"
        "Your message could not be delivered to the following recipients:\n\n{rcpts}\n\n"
        "Reason: {code} {status} {diag}\n"
    ).format(host=request.reporting_mta,
             rcpts="\n".join(f"  <{sanitise(r)}>" for r in request.recipients),
             code=request.smtp_reply_code, status=request.status_code,
             diag=request.diagnostic_message)
    text = "\n".join(_body_lines(text))
    if text.isascii():
        return _fields(("Content-Type", "text/plain; charset=us-ascii"),
                       ("Content-Transfer-Encoding", "7bit")) + b"\r\n" + _crlf(text)
    encoded = base64.encodebytes(text.encode("utf-8")).decode("ascii")
    return _fields(("Content-Type", "text/plain; charset=utf-8"),
                   ("Content-Transfer-Encoding", "base64")) + b"\r\n" + _crlf(encoded.rstrip())


def _crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8") + b"\r\n"


def _status_part(request: DsnRequest) -> bytes:
    """message/delivery-status (RFC 3464 §2.2, §2.3): per-message fields, then one block per
    recipient; every field goes through the renderer."""
    out = [_fields(("Content-Type", "message/delivery-status")), b"\r\n",
           _fields(("Reporting-MTA", f"dns; {request.reporting_mta}"),
                   ("Original-Envelope-Id", request.original_id),
                   ("Arrival-Date", email.utils.formatdate(request.arrival)))]
    for recipient in request.recipients:
        out += [b"\r\n", _fields(("Final-Recipient", generic_address(recipient)),
                                  ("Action", "failed"),
                                  ("Status", request.status_code),
                                  ("Diagnostic-Code", diagnostic_code(request)),
                                  ("Last-Attempt-Date", email.utils.formatdate(request.now)))]
    return b"".join(out)


def build_dsn(request: DsnRequest) -> bytes:
    boundary = "=_mailmgr_dsn_" + secrets.token_hex(12)
    headers = request.original_headers.replace(b"\r\n", b"\n").rstrip(b"\n")
    delimiter = f"--{boundary}\r\n".encode("ascii")
    head = _fields(
        ("From", request.sender),
        ("To", request.to),
        ("Subject", "Delivery Status Notification (Failure)"),
        ("Date", email.utils.formatdate(request.now)),
        ("Message-ID", f"<{request.original_id}.{secrets.token_hex(6)}@{request.reporting_mta}>"),
        ("Auto-Submitted", "auto-replied"),
        ("MIME-Version", "1.0"),
        ("Content-Type",
         f'multipart/report; report-type=delivery-status; boundary="{boundary}"'),
    )
    return b"".join([
        head, b"\r\n", b"This is a MIME-encapsulated delivery status notification.\r\n",
        delimiter, _human_part(request),
        delimiter, _status_part(request), b"\r\n",
        delimiter, _fields(("Content-Type", "text/rfc822-headers")), b"\r\n",
        headers.replace(b"\n", b"\r\n"), b"\r\n",
        f"\r\n--{boundary}--\r\n".encode("ascii"),
    ])


def original_header_section(content: bytes) -> bytes:
    return content[: header_end(content)]
