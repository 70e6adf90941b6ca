"""SMTP wire format for our client: replies, command arguments, and the DATA payload.

Owns line-ending normalisation and dot-stuffing (so no smuggling payload reaches the next hop);
must not do I/O beyond reading one reply from a stream.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

MAX_REPLY_LINES = 100
MAX_LINE = 4096  # RFC 5321 allows 512 per reply line; be lenient, but bounded
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def transient(self) -> bool:
        """4xx, and anything else that is neither success nor 5xx (a confused server)."""
        return not self.positive and not self.permanent

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


class SmtpError(Exception):
    """A session-level failure; `temporary` says whether a retry may succeed."""

    temporary = True
    code = "SmtpError"


class SmtpProtocolError(SmtpError):
    """The server closed the connection or sent something that is not an SMTP reply."""

    code = "ProtocolError"


class SmtpReplyError(SmtpError):
    """A command during session set-up (greeting, EHLO, STARTTLS, AUTH) was refused."""

    def __init__(self, stage: str, reply: Reply) -> None:
        super().__init__(f"{stage} refused: {reply}")
        self.stage = stage
        self.reply = reply
        self.code = str(reply.code)


class TlsUnavailable(SmtpError):
    """Tls.Required, but the relay offers no STARTTLS (or AUTH would go in clear)."""

    def __init__(self, message: str, code: str = "TlsRequired") -> None:
        super().__init__(message)
        self.code = code


async def read_reply(reader: asyncio.StreamReader, seconds: float) -> Reply:
    """One (possibly multi-line) reply, each line within `seconds`."""
    lines: list[str] = []
    code = ""
    while len(lines) < MAX_REPLY_LINES:
        try:
            async with asyncio.timeout(seconds):
                raw = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            raise SmtpProtocolError("the server closed the connection") from exc
        except asyncio.LimitOverrunError as exc:
            raise SmtpProtocolError("reply line too long") from exc
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
            raise SmtpProtocolError(f"malformed reply {line[:80]!r}")
        if code and line[:3] != code:
            raise SmtpProtocolError(f"reply code changed mid-reply: {line[:80]!r}")
        code = line[:3]
        lines.append(line[4:])
        if line[3:4] != "-":
            return Reply(int(code), tuple(lines))
    raise SmtpProtocolError("reply has too many lines")


def command_arg(text: str) -> str:
    """An address or parameter as it may appear in a command: no CR, LF or NUL, ever, so a
    crafted address can never inject a second command."""
    if any(c in text for c in "\r\n\0"):
        raise ValueError(f"control character in SMTP argument {text[:80]!r}")
    return text


def to_wire(content: bytes) -> bytes:
    """The DATA payload: every line end (CRLF, bare CR, bare LF) made CRLF, lines starting
    with '.' doubled, a final CRLF if missing, then the terminating '.' line.

    After this, the only `CRLF.CRLF` in the payload is the terminator we add: a `\\n.\\r\\n`
    (or any other end-of-data look-alike) in the message becomes an ordinary `..` line."""
    lines = _LINE_END.split(content)
    if lines and lines[-1] == b"":
        lines.pop()
    out = bytearray()
    for line in lines:
        if line.startswith(b"."):
            out += b"."
        out += line
        out += b"\r\n"
    out += b".\r\n"
    return bytes(out)


def has_8bit(content: bytes) -> bool:
    return not content.isascii()
