"""The SES event objects PublishToSns and InvokeLambda send: `mail` and `receipt` (seed 003).

Pure functions from an ActionInput to JSON-ready documents; must not call AWS or log. The
headers list is capped by the caller's limit (10 KB for Lambda, 20 or 100 KB for SNS). Header
fields come from mailmgr.mime (the one reader, strict address lists, RFC 2047 §6.2 decoding).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mailmgr.actions.base import ActionInput
from mailmgr.message import Verdict
from mailmgr.mime import addresses, rfc2047
from mailmgr.mime.headers import read

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
    replaced rather than dropped. As SES presents them, each fold (the line break and the white
    space around it) becomes one space."""
    pairs: list[tuple[str, str]] = []
    for f in read(content).fields:
        value = f.value.strip()
        nl = content.find(b"\n", f.start, f.end)
        if nl != -1 and nl + 1 < f.end:  # continuation lines: rejoin them from the bytes
            colon = content.index(b":", f.start, f.end)  # a name holds no colon
            lines = content[colon + 1:f.end].decode("utf-8", "replace").split("\n")
            value = " ".join(p for p in (x.strip(" \t\r") for x in lines) if p)
        pairs.append((f.name, value))
    return pairs


def common_headers(content: bytes) -> dict[str, Any]:
    """SES `commonHeaders`: decoded address lists, subject, date, message ID, return path."""
    section = read(content)
    common: dict[str, Any] = {}
    return_path = section.first("Return-Path")
    if return_path is not None:
        found = addresses.parse(return_path)
        common["returnPath"] = found[0].addr_spec if found else return_path.strip("<> \t")
    for key, header in _ADDRESS_LISTS:
        values: list[str] = []
        for raw in section.get_all(header):
            mailboxes = addresses.parse(raw)
            if mailboxes:
                values.extend(str(m) for m in mailboxes)
            else:  # malformed or empty: the text as written, decoded
                values.append(rfc2047.decode(raw.strip()))
        if values:
            common[key] = values
    # Date and Message-ID as written (SES does not normalise them); Subject decoded.
    for key, header in (("date", "Date"), ("messageId", "Message-ID")):
        value = section.first(header)
        if value is not None:
            common[key] = value.strip()
    subject = section.first("Subject")
    if subject is not None:
        common["subject"] = rfc2047.decode(subject.strip())
    return common


def destination(content: bytes) -> list[str]:
    """Every recipient address in the To and Cc headers (seed 003: `mail.destination`)."""
    section = read(content)
    return list(addresses.addr_specs([*section.get_all("To"), *section.get_all("Cc")]))


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
    """SES `receipt`: matched recipients, verdicts (spam and virus from the configured analyzers,
    DISABLED when no analyzer of that kind is configured), dmarcPolicy only when DMARC failed,
    and the action that is running."""
    v = item.verdicts
    receipt: dict[str, Any] = {
        "timestamp": iso_time(now),
        "processingTimeMillis": max(0, round((now - item.message.received_at) * 1000)),
        "recipients": list(item.recipients),
        "spamVerdict": {"status": v.spam.value if v.spam is not None else "DISABLED"},
        "virusVerdict": {"status": v.virus.value if v.virus is not None else "DISABLED"},
        "spfVerdict": {"status": v.spf.value},
        "dkimVerdict": {"status": v.dkim.value},
        "dmarcVerdict": {"status": v.dmarc.value},
    }
    if v.dmarc is Verdict.FAIL and v.dmarc_policy is not None:
        receipt["dmarcPolicy"] = v.dmarc_policy.value.lower()
    receipt["action"] = action
    return receipt
