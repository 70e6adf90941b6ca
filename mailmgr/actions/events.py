"""The SES event objects PublishToSns and InvokeLambda send: `mail` and `receipt` (seed 003).

Pure functions from an ActionInput to JSON-ready documents; must not call AWS or log. The
headers list is capped by the caller's limit (10 KB for Lambda, 20 or 100 KB for SNS).
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.parser import BytesHeaderParser
from typing import Any

from mailmgr.actions.base import ActionInput
from mailmgr.message import Verdict, header_end

LAMBDA_HEADERS_LIMIT = 10 * 1024
SNS_CONTENT_HEADERS_LIMIT = 20 * 1024
SNS_HEADERS_LIMIT = 100 * 1024

# commonHeaders keys that hold address lists, in the order SES writes them.
_ADDRESS_LISTS = (("from", "From"), ("sender", "Sender"), ("replyTo", "Reply-To"),
                  ("to", "To"), ("cc", "Cc"), ("bcc", "Bcc"))


def iso_time(epoch: float) -> str:
    """ISO 8601 with milliseconds and a Z, as SES writes timestamps."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def raw_headers(content: bytes) -> list[tuple[str, str]]:
    """(name, unfolded value) pairs of the header section, in order; undecodable bytes are
    replaced rather than dropped."""
    section = content[: header_end(content)].decode("utf-8", errors="replace")
    pairs: list[tuple[str, str]] = []
    for line in section.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        if line[0] in " \t" and pairs:
            name, value = pairs[-1]
            pairs[-1] = (name, value + " " + line.strip())
        elif ":" in line:
            name, _, value = line.partition(":")
            pairs.append((name.strip(), value.strip()))
    return pairs


def _addresses(value: Any) -> list[Address]:
    found = getattr(value, "addresses", None)
    return list(found) if found else []


def common_headers(content: bytes) -> dict[str, Any]:
    """SES `commonHeaders`: decoded address lists, subject, date, message ID, return path."""
    parsed = BytesHeaderParser(policy=policy.default).parsebytes(content[: header_end(content)])
    common: dict[str, Any] = {}
    return_path = parsed.get("Return-Path")
    if return_path is not None:
        addrs = _addresses(return_path)
        common["returnPath"] = addrs[0].addr_spec if addrs else str(return_path).strip("<> ")
    for key, header in _ADDRESS_LISTS:
        values: list[str] = []
        for raw in parsed.get_all(header) or []:
            addrs = _addresses(raw)
            if addrs:
                values.extend(str(a) for a in addrs)
            else:
                values.append(str(raw))
        if values:
            common[key] = values
    # Date and Message-ID as written (SES does not normalise them); Subject decoded.
    raw = {name.lower(): value for name, value in reversed(raw_headers(content))}
    for key, header in (("date", "date"), ("messageId", "message-id")):
        if header in raw:
            common[key] = raw[header]
    subject = parsed.get("Subject")
    if subject is not None:
        common["subject"] = str(subject)
    return common


def destination(content: bytes) -> list[str]:
    """Every recipient address in the To and Cc headers (seed 003: `mail.destination`)."""
    parsed = BytesHeaderParser(policy=policy.compat32).parsebytes(content[: header_end(content)])
    raw = [str(v) for name in ("To", "Cc") for v in parsed.get_all(name) or []]
    return list(dict.fromkeys(a for _, a in email.utils.getaddresses(raw) if a))


def mail_object(item: ActionInput, headers_limit: int) -> dict[str, Any]:
    """SES `mail`: the message as received plus the headers added so far."""
    headers: list[dict[str, str]] = []
    size = 0
    truncated = False
    for name, value in raw_headers(item.content):
        size += len(name.encode()) + len(value.encode()) + 4
        if size > headers_limit:
            truncated = True
            break
        headers.append({"name": name, "value": value})
    return {
        "timestamp": iso_time(item.message.received_at),
        "source": item.message.envelope.mail_from,
        "messageId": item.message.id,
        "destination": destination(item.content),
        "headersTruncated": truncated,
        "headers": headers,
        "commonHeaders": common_headers(item.content),
    }


def receipt_object(item: ActionInput, action: dict[str, Any], now: float) -> dict[str, Any]:
    """SES `receipt`: matched recipients, verdicts (spam/virus DISABLED: no analyzer yet),
    dmarcPolicy only when DMARC failed, and the action that is running."""
    v = item.verdicts
    receipt: dict[str, Any] = {
        "timestamp": iso_time(now),
        "processingTimeMillis": max(0, round((now - item.message.received_at) * 1000)),
        "recipients": list(item.recipients),
        "spamVerdict": {"status": "DISABLED"},
        "virusVerdict": {"status": "DISABLED"},
        "spfVerdict": {"status": v.spf.value},
        "dkimVerdict": {"status": v.dkim.value},
        "dmarcVerdict": {"status": v.dmarc.value},
    }
    if v.dmarc is Verdict.FAIL and v.dmarc_policy is not None:
        receipt["dmarcPolicy"] = v.dmarc_policy.value.lower()
    receipt["action"] = action
    return receipt
