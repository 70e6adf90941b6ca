"""The Authentication-Results header (RFC 8601): its text, the forged copies to strip, and the
message actions see (ours prepended like a trace header, the forged ones removed).

The stamp is computed once with the verdicts and kept in ProcessingState.action_data under
STAMP_KEY, so a retry shows actions the same bytes. Must not run any check itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from mailmgr.message import InboundMessage, ProcessingState, header_end
from mailmgr.verdicts.dkim import DkimResult
from mailmgr.verdicts.dmarc import DmarcResult
from mailmgr.verdicts.spf import SpfResult

HEADER = "Authentication-Results"
STAMP_KEY = "verdicts.authentication-results"  # reserved: never a "<rule>.<action>" key
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.@]+$")
_COMMENT = re.compile(r"\([^()]*\)")


@dataclass(frozen=True)
class Stamp:
    """Our header's value (unfolded; `; ` between results) and the byte ranges of incoming
    Authentication-Results fields that claim our authserv-id."""

    value: str
    strip: tuple[tuple[int, int], ...] = ()

    def to_text(self) -> str:
        return json.dumps({"value": self.value, "strip": [list(r) for r in self.strip]})

    @classmethod
    def from_text(cls, text: str) -> Stamp:
        data = json.loads(text)
        return cls(str(data["value"]), tuple((int(a), int(b)) for a, b in data["strip"]))


def _pvalue(value: str) -> str:
    if _SAFE_VALUE.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def header_value(
    authserv_id: str,
    spf: SpfResult | None,
    dkim: DkimResult | None,
    dmarc: DmarcResult | None,
) -> str:
    """`None` for a check that did not finish within the bound: reported as temperror."""
    parts = [authserv_id]
    if spf is None:
        parts.append("spf=temperror (not completed in time)")
    else:
        prop = "smtp.mailfrom" if spf.identity == "mailfrom" else "smtp.helo"
        identity = f" {prop}={_pvalue(spf.sender)}" if spf.sender else ""
        parts.append(f"spf={spf.result}{identity}")
    if dkim is None:
        parts.append("dkim=temperror (not completed in time)")
    elif not dkim.signatures:
        parts.append("dkim=none")
    else:
        for sig in dkim.signatures:
            props = "".join(
                f" {name}={_pvalue(value)}"
                for name, value in (("header.d", sig.domain), ("header.s", sig.selector))
                if value
            )
            parts.append(f"dkim={sig.result}{props}")
    if dmarc is None:
        parts.append("dmarc=temperror (not completed in time)")
    else:
        text = f"dmarc={dmarc.result}"
        if dmarc.header_from:
            text += f" header.from={_pvalue(dmarc.header_from)}"
        if dmarc.published is not None:
            applied = dmarc.policy if dmarc.policy is not None else dmarc.published
            text += f" policy.dmarc={applied.value.lower()}"
        parts.append(text)
    return "; ".join(parts)


def _authserv_id(value: bytes) -> str:
    text = _COMMENT.sub(" ", value.decode("utf-8", "replace"))
    return text.split(";", 1)[0].strip().split()[0].lower() if text.strip() else ""


def forged_ranges(content: bytes, authserv_id: str) -> tuple[tuple[int, int], ...]:
    """Byte ranges (with continuation lines) of Authentication-Results fields whose
    authserv-id is ours, compared case-insensitively."""
    end = header_end(content)
    ours = authserv_id.lower()
    ranges: list[tuple[int, int]] = []
    pos = 0
    while pos < end:
        line_end = content.find(b"\n", pos, end)
        stop = end if line_end == -1 else line_end + 1
        while stop < end and content[stop:stop + 1] in (b" ", b"\t"):
            nxt = content.find(b"\n", stop, end)
            stop = end if nxt == -1 else nxt + 1
        name, colon, value = content[pos:stop].partition(b":")
        if colon and name.strip().lower() == HEADER.lower().encode() and (
            _authserv_id(value) == ours
        ):
            ranges.append((pos, stop))
        pos = stop
    return tuple(ranges)


def stamp(content: bytes, authserv_id: str, value: str) -> Stamp:
    return Stamp(value, forged_ranges(content, authserv_id))


def message_eol(content: bytes) -> bytes:
    """The line ending the message's header section uses (CRLF unless it is LF-only)."""
    return b"\r\n" if b"\r\n" in content[: header_end(content) + 2] or not content else b"\n"


def stamped_content(content: bytes, found: Stamp, below: bytes = b"") -> bytes:
    """`content` without the forged fields and with ours on top, folded with the message's
    own line ending; `below` (complete fields, e.g. our Received) goes right under ours."""
    eol = message_eol(content)
    kept = bytearray()
    pos = 0
    for start, stop in found.strip:
        kept += content[pos:start]
        pos = stop
    kept += content[pos:]
    folded = (";" + eol.decode() + "\t").join(found.value.split("; "))
    return f"{HEADER}: {folded}".encode() + eol + below + bytes(kept)


@dataclass(frozen=True)
class AuthenticatedMessage(InboundMessage):
    """The message as actions see it; `size` stays the size as received (MESSAGE_SIZE)."""

    received_size: int = 0

    @property
    def size(self) -> int:
        return self.received_size


def stored_stamp(state: ProcessingState) -> Stamp | None:
    for key, text in state.action_data:
        if key == STAMP_KEY:
            try:
                return Stamp.from_text(text)
            except (ValueError, KeyError, TypeError):
                return None
    return None


def message_for_actions(
    message: InboundMessage, state: ProcessingState, trace: bytes = b""
) -> InboundMessage:
    """`message` as actions see it: the stamp of `state` on top, then `trace` (our Received
    field); unchanged when there is neither."""
    found = stored_stamp(state)
    if found is None and not trace:
        return message
    content = (
        stamped_content(message.content, found, trace) if found else trace + message.content
    )
    return AuthenticatedMessage(
        id=message.id,
        received_at=message.received_at,
        envelope=message.envelope,
        session=message.session,
        content=content,
        received_size=message.size,
    )
