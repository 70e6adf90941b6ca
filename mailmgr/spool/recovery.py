"""Start-up scan of spool segments: validates every record, truncates a torn tail of the newest
segment and copies segments with damage into quarantine. Blocking I/O: run it in an executor.
Must not decide liveness (the index does) and must never raise on bad data.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from mailmgr import logs
from mailmgr.errors import CorruptRecord
from mailmgr.message import ProcessingState
from mailmgr.spool.committer import Location, fsync_dir
from mailmgr.spool.record import Damage, Record, RecordType, decode_state, received_at_of, scan

SUFFIX = ".seg"


@dataclass(frozen=True)
class Found:
    """One valid record met during recovery, with what the index needs from it."""

    type: RecordType
    message_id: str
    location: Location
    received_at: float = 0.0
    state: ProcessingState | None = None


@dataclass(frozen=True)
class SegmentScan:
    seq: int
    size: int
    mtime: float
    records: tuple[Found, ...]
    quarantined: bool


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in directory.iterdir():
        stem = path.name.removesuffix(SUFFIX)
        if path.name.endswith(SUFFIX) and stem.isdigit() and path.is_file():
            found.append((int(stem), path))
        else:
            logs.warning("spool.unknown_file_ignored", file=str(path))
    return sorted(found)


def _quarantine(path: Path, quarantine_dir: Path, fsync: bool) -> Path:
    target = quarantine_dir / f"{path.name}.{time.time_ns()}"
    shutil.copyfile(path, target)
    if fsync:
        fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(quarantine_dir)
    return target


def _truncate(path: Path, size: int, fsync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _found(seq: int, record: Record) -> Found:
    loc = Location(seq, record.offset, record.length)
    if record.type is RecordType.MESSAGE:
        return Found(
            record.type, record.message_id, loc, received_at=received_at_of(record.payload)
        )
    if record.type is RecordType.STATE:
        return Found(record.type, record.message_id, loc, state=decode_state(record.payload))
    return Found(record.type, record.message_id, loc)


def scan_segment(
    seq: int, path: Path, *, last: bool, quarantine_dir: Path, fsync: bool
) -> SegmentScan:
    data = path.read_bytes()
    mtime = path.stat().st_mtime
    records: list[Found] = []
    bad: list[int] = []
    size = len(data)
    for item in scan(data):
        if isinstance(item, Damage):
            if item.tail and last:
                # A batch that was being written when we crashed: it was never acknowledged.
                logs.warning(
                    "spool.torn_tail_truncated",
                    file=str(path),
                    offset=item.offset,
                    bytes=item.end - item.offset,
                )
                _truncate(path, item.offset, fsync)
                size = item.offset
            else:
                logs.warning(
                    "spool.corrupt_record", file=str(path), offset=item.offset, end=item.end
                )
                bad.append(item.offset)
            continue
        try:
            records.append(_found(seq, item))
        except CorruptRecord as exc:
            logs.warning("spool.corrupt_record", file=str(path), offset=item.offset, error=str(exc))
            bad.append(item.offset)
    if bad:
        copy = _quarantine(path, quarantine_dir, fsync)
        logs.warning(
            "spool.segment_quarantined",
            file=str(path),
            offset=bad[0],
            damaged_ranges=len(bad),
            copy=str(copy),
        )
    return SegmentScan(seq, size, mtime, tuple(records), quarantined=bool(bad))


@dataclass(frozen=True)
class Recovered:
    segments: tuple[SegmentScan, ...]
    next_seq: int  # above every segment file present, readable or not


def recover_segments(segments_dir: Path, quarantine_dir: Path, *, fsync: bool) -> Recovered:
    """Scan every segment in order. Damage in the middle of a segment, or at the end of any but
    the newest, is quarantined and skipped; scanning resumes at the next valid record."""
    segments = list_segments(segments_dir)
    result = []
    for i, (seq, path) in enumerate(segments):
        last = i == len(segments) - 1
        try:
            result.append(
                scan_segment(seq, path, last=last, quarantine_dir=quarantine_dir, fsync=fsync)
            )
        except OSError as exc:
            # An unreadable segment must not stop the server; it stays on disk untouched.
            logs.error("spool.segment_unreadable", file=str(path), error=str(exc))
    next_seq = segments[-1][0] + 1 if segments else 1
    return Recovered(tuple(result), next_seq)
