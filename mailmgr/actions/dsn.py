"""RFC 3464 delivery status notifications (multipart/report) for the Bounce action.

Builds bytes only; sending belongs to bounce.py. Lines end with CRLF; the original message is
returned as its header section (text/rfc822-headers), never its body.
"""

from __future__ import annotations

import base64
import email.utils
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from mailmgr.message import header_end


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


def _address_type(address: str) -> str:
    return "rfc822" if address.isascii() else "utf-8"


def diagnostic_code(request: DsnRequest) -> str:
    return f"smtp; {request.smtp_reply_code} {request.status_code} {request.diagnostic_message}"


def _human_part(request: DsnRequest) -> list[str]:
    text = request.human_text or (
        "This is the mail system at host {host}.\n\n"
        "Your message could not be delivered to the following recipients:\n\n{rcpts}\n\n"
        "Reason: {code} {status} {diag}\n"
    ).format(host=request.reporting_mta, rcpts="\n".join(f"  <{r}>" for r in request.recipients),
             code=request.smtp_reply_code, status=request.status_code,
             diag=request.diagnostic_message)
    text = text.replace("\r\n", "\n")
    if text.isascii():
        return ["Content-Type: text/plain; charset=us-ascii",
                "Content-Transfer-Encoding: 7bit", "", *text.split("\n")]
    encoded = base64.encodebytes(text.encode("utf-8")).decode("ascii").rstrip("\n")
    return ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64", "",
            *encoded.split("\n")]


def _status_part(request: DsnRequest) -> list[str]:
    lines = ["Content-Type: message/delivery-status", "",
             f"Reporting-MTA: dns; {request.reporting_mta}",
             f"Original-Envelope-Id: {request.original_id}",
             f"Arrival-Date: {email.utils.formatdate(request.arrival)}"]
    for recipient in request.recipients:
        lines += ["",
                  f"Final-Recipient: {_address_type(recipient)}; {recipient}",
                  "Action: failed",
                  f"Status: {request.status_code}",
                  f"Diagnostic-Code: {diagnostic_code(request)}",
                  f"Last-Attempt-Date: {email.utils.formatdate(request.now)}"]
    return lines


def build_dsn(request: DsnRequest) -> bytes:
    boundary = "=_mailmgr_dsn_" + secrets.token_hex(12)
    headers = request.original_headers.replace(b"\r\n", b"\n").rstrip(b"\n")
    head = [
        f"From: {request.sender}",
        f"To: {request.to}",
        "Subject: Delivery Status Notification (Failure)",
        f"Date: {email.utils.formatdate(request.now)}",
        f"Message-ID: <{request.original_id}.{secrets.token_hex(6)}@{request.reporting_mta}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f' boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated delivery status notification.",
    ]
    text = "\r\n".join([
        *head,
        f"--{boundary}", *_human_part(request),
        f"--{boundary}", *_status_part(request), "",
        f"--{boundary}", "Content-Type: text/rfc822-headers", "",
    ]).encode("utf-8")
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    return text + b"\r\n" + headers.replace(b"\n", b"\r\n") + b"\r\n" + tail


def original_header_section(content: bytes) -> bytes:
    return content[: header_end(content)]
