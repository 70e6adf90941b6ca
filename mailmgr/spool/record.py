"""The on-disk record format of spool segments: encoding, decoding and resynchronising scans.

Pure byte handling; must not open files, touch the event loop or know about segment liveness.

Record layout (little-endian): magic ``MMS1`` | type u8 | flags u8 | id length u16 |
payload length u32 | payload CRC32 u32 | header CRC32 u32 (over the 16 bytes before it and the
id) | id (ASCII) | payload. The header CRC lets a scan trust the length field and resynchronise
on the magic after damage without mistaking message content for a record.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from mailmgr.errors import CorruptRecord
from mailmgr.message import (
    AnalysisResults,
    Envelope,
    InboundMessage,
    ProcessingState,
    SessionFacts,
    is_message_id,
)

MAGIC = b"MMS1"
_FIXED = struct.Struct("<4sBBHII")  # magic, type, flags, id length, payload length, payload crc
_HCRC = struct.Struct("<I")
HEADER_SIZE = _FIXED.size + _HCRC.size  # 20, followed by the id
_MSG_PREFIX = struct.Struct("<dI")  # received_at, metadata length
MAX_PAYLOAD = 1 << 31  # sanity bound; the header CRC already vouches for the length


class RecordType(IntEnum):
    MESSAGE = 1
    STATE = 2
    DONE = 3


@dataclass(frozen=True)
class Record:
    """One decoded record as found in a segment, located by its offset and total length."""

    type: RecordType
    message_id: str
    offset: int
    length: int
    payload: bytes


def encode(rtype: RecordType, message_id: str, payload: bytes, flags: int = 0) -> bytes:
    ident = message_id.encode("ascii")
    fixed = _FIXED.pack(MAGIC, int(rtype), flags, len(ident), len(payload), zlib.crc32(payload))
    hcrc = zlib.crc32(ident, zlib.crc32(fixed))
    return b"".join((fixed, _HCRC.pack(hcrc), ident, payload))


def encode_message(message: InboundMessage) -> bytes:
    meta: dict[str, Any] = {
        "id": message.id,
        "received_at": message.received_at,
        "envelope": message.envelope.to_json(),
        "session": message.session.to_json(),
        "size": message.size,
    }
    if message.analysis:  # absent when empty: records stay as they were without analyzers
        meta["analysis"] = message.analysis.to_json()
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    # The body follows the metadata verbatim: JSON-encoding it would cost time and space.
    payload = b"".join(
        (_MSG_PREFIX.pack(message.received_at, len(meta_bytes)), meta_bytes, message.content)
    )
    return encode(RecordType.MESSAGE, message.id, payload)


def encode_state(message_id: str, state: ProcessingState) -> bytes:
    payload = json.dumps(state.to_json(), separators=(",", ":")).encode("utf-8")
    return encode(RecordType.STATE, message_id, payload)


def encode_done(message_id: str) -> bytes:
    return encode(RecordType.DONE, message_id, b"")


def received_at_of(payload: bytes) -> float:
    """The arrival time stored at the front of a MESSAGE payload (cheap; no JSON parsing)."""
    if len(payload) < _MSG_PREFIX.size:
        raise CorruptRecord("message payload too short")
    received_at, _ = _MSG_PREFIX.unpack_from(payload)
    return float(received_at)


def decode_message(payload: bytes) -> InboundMessage:
    try:
        received_at, meta_len = _MSG_PREFIX.unpack_from(payload)
        start = _MSG_PREFIX.size
        meta = json.loads(payload[start : start + meta_len].decode("utf-8"))
        content = payload[start + meta_len :]
        if len(content) != int(meta["size"]):
            raise CorruptRecord("message content length does not match its metadata")
        return InboundMessage(
            id=str(meta["id"]),
            received_at=float(received_at),
            envelope=Envelope.from_json(meta["envelope"]),
            session=SessionFacts.from_json(meta["session"]),
            content=content,
            analysis=AnalysisResults.from_json(meta.get("analysis")),
        )
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise CorruptRecord(f"undecodable message record: {exc}") from exc


def decode_state(payload: bytes) -> ProcessingState:
    try:
        return ProcessingState.from_json(json.loads(payload.decode("utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptRecord(f"undecodable state record: {exc}") from exc


class ParseStatus(IntEnum):
    OK = 0
    SHORT = 1  # the buffer ends inside this record (a torn write if at the end of a log)
    BAD = 2  # wrong magic, header CRC, type or payload CRC


@dataclass(frozen=True)
class Parsed:
    status: ParseStatus
    record: Record | None = None
    # Total length when the header CRC vouches for it even though the payload is damaged, so a
    # scan skips the payload instead of resynchronising inside it (where a message body could
    # carry something that looks like a record).
    trusted_length: int | None = None


def parse_at(buf: bytes, pos: int) -> Parsed:
    """Parse the record starting at `pos`; never raises."""
    end = len(buf)
    if end - pos < HEADER_SIZE:
        prefix = buf[pos : pos + len(MAGIC)]
        return Parsed(ParseStatus.SHORT if MAGIC.startswith(prefix) else ParseStatus.BAD)
    magic, rtype, _flags, id_len, plen, pcrc = _FIXED.unpack_from(buf, pos)
    if magic != MAGIC:
        return Parsed(ParseStatus.BAD)
    (hcrc,) = _HCRC.unpack_from(buf, pos + _FIXED.size)
    id_start = pos + HEADER_SIZE
    if end - id_start < id_len:
        return Parsed(ParseStatus.SHORT)
    ident = buf[id_start : id_start + id_len]
    if zlib.crc32(ident, zlib.crc32(buf[pos : pos + _FIXED.size])) != hcrc:
        return Parsed(ParseStatus.BAD)
    try:
        kind = RecordType(rtype)
        message_id = ident.decode("ascii")
    except ValueError:
        return Parsed(ParseStatus.BAD)
    if not is_message_id(message_id) or plen > MAX_PAYLOAD:
        return Parsed(ParseStatus.BAD)
    length = HEADER_SIZE + id_len + plen
    p_start = id_start + id_len
    if end - p_start < plen:
        return Parsed(ParseStatus.SHORT, trusted_length=length)
    payload = buf[p_start : p_start + plen]
    if zlib.crc32(payload) != pcrc:
        return Parsed(ParseStatus.BAD, trusted_length=length)
    return Parsed(ParseStatus.OK, Record(kind, message_id, pos, length, payload))


def resync(buf: bytes, start: int) -> int | None:
    """The offset of the next valid record at or after `start`, or None if there is none."""
    pos = buf.find(MAGIC, start)
    while pos != -1:
        if parse_at(buf, pos).status is ParseStatus.OK:
            return pos
        pos = buf.find(MAGIC, pos + 1)
    return None


@dataclass(frozen=True)
class Damage:
    """A byte range of a segment that holds no valid record; `tail` if nothing valid follows."""

    offset: int
    end: int
    tail: bool


def scan(buf: bytes) -> Iterator[Record | Damage]:
    """Yield every valid record and every damaged range of a segment, in file order."""
    pos = 0
    while pos < len(buf):
        parsed = parse_at(buf, pos)
        if parsed.record is not None:
            yield parsed.record
            pos += parsed.record.length
            continue
        skip = parsed.trusted_length
        if skip is not None and pos + skip < len(buf):
            nxt = resync(buf, pos + skip)
        elif skip is not None:
            nxt = None  # a record cut off by the end of the data: a torn write
        else:
            nxt = resync(buf, pos + 1)
        if nxt is None:
            yield Damage(pos, len(buf), tail=True)
            return
        yield Damage(pos, nxt, tail=False)
        pos = nxt
