"""The Authentication-Results header (RFC 8601): its text, the forged copies to strip, and the
message actions see (ours prepended like a trace header, the forged ones removed).

The stamp is computed once with the verdicts and kept in ProcessingState.action_data under
STAMP_KEY, so a retry shows actions the same bytes. Forged fields are found with the RFC 8601
parser (mailmgr.mime.authres); ours is written by mailmgr.mime.render, never by hand. Must not
run any check itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mailmgr.message import InboundMessage, ProcessingState
from mailmgr.mime import authres
from mailmgr.mime.headers import read
from mailmgr.mime.render import pvalue, render_lines
from mailmgr.mime.render import value as authserv_value
from mailmgr.verdicts.dkim import DkimResult
from mailmgr.verdicts.dmarc import DmarcResult
from mailmgr.verdicts.spf import SpfResult

HEADER = "Authentication-Results"
STAMP_KEY = "verdicts.authentication-results"  # reserved: never a "<rule>.<action>" key
_LOWER = HEADER.lower()


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


def header_value(
    authserv_id: str,
    spf: SpfResult | None,
    dkim: DkimResult | None,
    dmarc: DmarcResult | None,
) -> str:
    """The value, unfolded: results joined by `; `. Every identity (smtp.mailfrom, smtp.helo,
    header.d, header.s, header.from) is an RFC 8601 pvalue, quoted when it is not a token or
    address, with control characters replaced (mailmgr.mime.render.sanitise).
    `None` for a check that did not finish within the bound: reported as temperror."""
    parts = [authserv_value(authserv_id)]
    if spf is None:
        parts.append("spf=temperror (not completed in time)")
    else:
        prop = "smtp.mailfrom" if spf.identity == "mailfrom" else "smtp.helo"
        identity = f" {prop}={pvalue(spf.sender)}" if spf.sender else ""
        parts.append(f"spf={spf.result}{identity}")
    if dkim is None:
        parts.append("dkim=temperror (not completed in time)")
    elif not dkim.signatures:
        parts.append("dkim=none")
    else:
        for sig in dkim.signatures:
            props = "".join(
                f" {name}={pvalue(value)}"
                for name, value in (("header.d", sig.domain), ("header.s", sig.selector))
                if value
            )
            parts.append(f"dkim={sig.result}{props}")
    if dmarc is None:
        parts.append("dmarc=temperror (not completed in time)")
    else:
        text = f"dmarc={dmarc.result}"
        if dmarc.header_from:
            text += f" header.from={pvalue(dmarc.header_from)}"
        if dmarc.published is not None:
            applied = dmarc.policy if dmarc.policy is not None else dmarc.published
            text += f" policy.dmarc={applied.value.lower()}"
        parts.append(text)
    return "; ".join(parts)


def claims_authserv_id(value: str, authserv_id: str) -> bool:
    """Whether an incoming Authentication-Results value must go (RFC 8601 §5): it claims our
    authserv-id (read by the RFC 8601 parser: nested comments, quoted-pairs, folding, a
    quoted-string id, a version number, any case), or no authserv-id can be read from it at
    all (unterminated comment or quoted-string, over the parser's length or nesting bound),
    since a laxer reader downstream might find ours in it."""
    claimed = authres.authserv_id(value)
    # A non-ASCII id (e.g. ours next to a no-break space) is ours to a reader that strips
    # Unicode white space: removed too (RFC 8601 §5 lets a border MTA remove any).
    return (claimed is None or not claimed.isascii()
            or authres.same_authserv_id(claimed, authserv_id))


def forged_ranges(content: bytes, authserv_id: str) -> tuple[tuple[int, int], ...]:
    """Byte ranges (with continuation lines) of the Authentication-Results fields to remove:
    those for which `claims_authserv_id` holds."""
    return tuple(
        (field.start, field.end)
        for field in read(content).fields
        if field.key == _LOWER and claims_authserv_id(field.value, authserv_id)
    )


def stamp(content: bytes, authserv_id: str, value: str) -> Stamp:
    return Stamp(value, forged_ranges(content, authserv_id))


def _result_lines(value: str) -> list[str]:
    """`value` cut after each `;` outside a quoted-string, so each result gets its own line
    (the stored value may come from an older release: render_lines sanitises it again)."""
    if '"' not in value:  # the common case: no quoted-string, every ";" ends a result
        return [part.strip(" ") + ";" for part in value.split(";")[:-1]] + [
            value.rsplit(";", 1)[-1].strip(" ")]
    lines: list[str] = []
    start = 0
    quoted = escaped = False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = quoted
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            lines.append(value[start:index + 1].strip(" "))
            start = index + 1
    lines.append(value[start:].strip(" "))
    return lines


def message_eol(content: bytes) -> bytes:
    """The line ending the message's header section uses (CRLF unless it is LF-only)."""
    return read(content).eol


def stamped_content(content: bytes, found: Stamp, below: bytes = b"") -> bytes:
    """`content` without the forged fields and with ours on top, folded with the message's
    own line ending; `below` (complete fields, e.g. our Received) goes right under ours."""
    section = read(content)
    eol = section.eol
    kept = bytearray()
    pos = 0
    for start, stop in found.strip:
        kept += content[pos:start]
        pos = stop
    if section.truncated or (not section.separator and section.end < len(content)):
        # The reader stopped at a bound, or at a line that is not a field with no blank line
        # before it (mailmgr.mime.headers): what follows was a header to no consumer here, so it
        # must not be one downstream either (a reader that only stops at the blank line would
        # find a second From or a forged Authentication-Results there). A blank line makes the
        # rest body text for every later reader.
        kept += content[pos:section.end] + eol
        pos = section.end
    kept += content[pos:]
    # An empty value: only fields to strip (no verdicts were computed), nothing of ours to add.
    ours = render_lines(HEADER, _result_lines(found.value), eol) if found.value else b""
    return ours + below + bytes(kept)


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
