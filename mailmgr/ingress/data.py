"""DATA framing (RFC 5321 §4.1.1.4, §4.5.2): find `<CRLF>.<CRLF>`, enforce the size limit,
undo dot-stuffing. Works on chunks, never line by line; keeps the bytes exactly as received.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

TERMINATOR = b"\r\n.\r\n"
# Matcher states for the terminator at the start of the body (state 2: the CRLF that ended the
# DATA command line counts as its first two bytes); a byte not listed falls back to state 0.
_START_STEPS: tuple[dict[bytes, int], ...] = (
    {},
    {b"\n": 2, b"\r": 1},
    {b".": 3, b"\r": 1},
    {b"\r": 4},
    {b"\n": 5, b"\r": 1},
)


def unstuff(raw: bytes) -> bytes:
    """Remove the leading dot of every line (RFC 5321 §4.5.2); one pass in C."""
    content = raw.replace(b"\r\n.", b"\r\n")
    return content[1:] if content[:1] == b"." else content


def raw_cap(limit: int) -> int:
    """Unstuffing removes at most one byte per line of at least four raw bytes (`..<CRLF>`), so
    more raw bytes than this can never fit `limit`: beyond it, nothing more is kept."""
    return limit + limit // 3 + 8


async def discard_line(reader: asyncio.StreamReader, consumed: int) -> None:
    """Drop the rest of an over-long line: `consumed` bytes, then up to the next LF."""
    await reader.read(consumed)
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as overrun:
            await reader.read(overrun.consumed)


class DataProgress(Protocol):
    """What times a DATA transfer (`limits.DataWatch`)."""

    def progress(self, consumed: int) -> None: ...

    def stop(self) -> None: ...


async def read_message(
    reader: asyncio.StreamReader, limit: int, watch: DataProgress | None = None
) -> bytes | None:
    """Read one message up to the terminator; return it unstuffed, or None when it exceeds
    `limit` bytes (the rest is still read and discarded, so the session stays in sync).

    readuntil() searches for the terminator in C; when the reader's buffer overruns its limit
    we take exactly what it says is safe, so the terminator never straddles two reads and
    bytes pipelined after it stay in the reader. Only the first bytes are read one at a time,
    while they could still complete a terminator begun by the CRLF of the DATA line.
    `watch.progress(consumed)` gets the raw bytes read so far after each chunk (the DATA
    timeout and rate check follow it); `watch.stop()` is called however the read ends.
    """
    try:
        return await _read(reader, limit, watch)
    finally:
        if watch is not None:
            watch.stop()


async def _read(
    reader: asyncio.StreamReader, limit: int, watch: DataProgress | None
) -> bytes | None:
    head = bytearray()
    state = 2
    while state:
        byte = await reader.readexactly(1)
        head += byte
        state = _START_STEPS[state].get(byte, 0)
        if state == 5:
            content = unstuff(bytes(head[:-3]))
            return content if len(content) <= limit else None
    cap = raw_cap(limit)
    parts: list[bytes] = [bytes(head)]
    size = len(head)
    while True:
        try:
            chunk: bytes = await reader.readuntil(TERMINATOR)
            done = True
        except asyncio.LimitOverrunError as overrun:
            chunk = await reader.read(overrun.consumed)
            done = False
        size += len(chunk)
        if size <= cap:
            parts.append(chunk[:-3] if done else chunk)  # keep the CRLF, drop ".<CRLF>"
        elif parts:
            parts.clear()
        if done:
            break
        if watch is not None:
            watch.progress(size)
    if size > cap:
        return None
    content = unstuff(b"".join(parts))
    return content if len(content) <= limit else None
