"""The durable spool: an append-only segment log with group commit, an in-memory index, segment
deletion and compaction, and recovery at start-up. Owns `<dir>/segments/` and `<dir>/quarantine/`;
must not process messages (the worker does) or block the event loop.

Design (as recommended): records go to the active segment through one committer that shares one
fdatasync among all concurrent commits. Every public write runs in a shielded task, so a caller
that is cancelled (a client that disconnects) never cancels a write other records share, and its
record still becomes durable. Index updates happen in log order inside the committer's
completion callback, so memory never disagrees with what recovery would rebuild. Choices the
brief left open: each open() starts a fresh segment; "arrival order" is received_at, then log
order; an old segment is compacted when its live MESSAGE bytes are <= 1/4 of segment_size (or
it was quarantined, so damaged files do not linger); a failed batch also retires its segment.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mailmgr import logs
from mailmgr.errors import CorruptRecord, SpoolError
from mailmgr.message import InboundMessage, ProcessingState, is_message_id
from mailmgr.spool.committer import GroupCommitter, Location, fsync_dir, segment_name
from mailmgr.spool.index import LiveMessage, SpoolIndex
from mailmgr.spool.record import (
    ParseStatus,
    RecordType,
    decode_message,
    encode_done,
    encode_message,
    encode_state,
    parse_at,
)
from mailmgr.spool.recovery import recover_segments

T = TypeVar("T")
_LARGE = 1 << 20  # messages above this are encoded off the loop
_COMPACT_CHUNK = 256


@dataclass(frozen=True)
class SpoolEntry:
    message: InboundMessage
    state: ProcessingState


@dataclass(frozen=True)
class SpoolStats:
    batches: int
    records: int
    fsyncs: int  # data fdatasyncs: one per successful batch, shared by all its records
    dir_fsyncs: int
    bytes_written: int
    failed_batches: int
    segments: int
    segments_deleted: int
    messages_compacted: int
    pending: int


@dataclass(frozen=True)
class SpoolCounts:
    """Unfinished messages split by state at one instant (see `SpoolStore.counts`)."""

    pending: int  # waiting for (or in) their first run: no temporary failure recorded
    retrying: int  # a temporary failure recorded, or scheduled for a later attempt
    oldest_received_at: float | None  # epoch seconds of the oldest unfinished message


def _read(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _read_message(path: Path, loc: Location) -> InboundMessage:
    raw = _read(path, loc.offset, loc.length)
    parsed = parse_at(raw, 0)
    if parsed.record is None or parsed.record.type is not RecordType.MESSAGE:
        raise CorruptRecord(f"damaged record at {path}:{loc.offset}")
    return decode_message(parsed.record.payload)


def _read_many(paths_and_locs: list[tuple[Path, Location]]) -> list[bytes | None]:
    out: list[bytes | None] = []
    for path, loc in paths_and_locs:
        try:
            out.append(_read(path, loc.offset, loc.length))
        except OSError:
            out.append(None)
    return out


class SpoolStore:
    def __init__(
        self,
        directory: Path,
        *,
        segment_size: int = 64 * 1024 * 1024,
        fsync: bool = True,
        compact_after: float = 600.0,
        max_pending_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._dir = Path(directory)
        self._segments_dir = self._dir / "segments"
        self._quarantine_dir = self._dir / "quarantine"
        self._segment_size = segment_size
        self._fsync = fsync
        self._compact_after = compact_after
        self._max_pending = max_pending_bytes
        self._index = SpoolIndex()
        self._committer: GroupCommitter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ops: set[asyncio.Future[Any]] = set()
        self._compactor: asyncio.Task[None] | None = None
        self._compact_lock = asyncio.Lock()
        self._closed = False
        self._lock_fd: int | None = None
        self._deleted = 0
        self._compacted = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def open(self, *, lock_wait: float = 0.0) -> list[str]:
        """Create directories, recover, start the committer. Returns unfinished message ids in
        arrival order (received_at, then log order). `lock_wait`: seconds to wait for a spool
        lock another process holds (a `mailmgr queue` command on the stopped server holds it
        while it reads the spool) before OSError(EBUSY)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._make_dirs)
        deadline = loop.time() + lock_wait
        while True:
            try:
                self._lock_fd = self._lock()
                break
            except OSError:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.1)
        found = await loop.run_in_executor(
            None,
            lambda: recover_segments(self._segments_dir, self._quarantine_dir, fsync=self._fsync),
        )
        index = self._index
        for seg in found.segments:
            index.add_segment(seg.seq, seg.mtime, quarantined=seg.quarantined)
            for rec in seg.records:
                if rec.type is RecordType.MESSAGE:
                    index.put_message(rec.message_id, rec.location, rec.received_at, seg.mtime)
                elif rec.type is RecordType.STATE and rec.state is not None:
                    index.put_state(rec.message_id, rec.state, rec.location.segment, seg.mtime)
                elif rec.type is RecordType.DONE:
                    index.put_done(rec.message_id, rec.location.segment, seg.mtime)
        index.live = dict(sorted(index.live.items(), key=lambda kv: kv[1].received_at))
        self._committer = GroupCommitter(
            self._segments_dir,
            first_seq=found.next_seq,
            segment_size=self._segment_size,
            fsync=self._fsync,
            max_pending_bytes=self._max_pending,
            on_opened=self._on_opened,
            on_retired=self._on_retired,
        )
        self._committer.start()
        self._reap()
        self._compactor = loop.create_task(self._compact_loop(), name="spool-compactor")
        logs.event(
            "spool.recovered",
            directory=str(self._dir),
            pending=len(index.live),
            segments=len(index.segments),
        )
        return list(index.live)

    async def close(self) -> None:
        """Flush what is queued, stop the committer and background work, close files."""
        if self._closed:
            return
        self._closed = True
        if self._compactor is not None:
            self._compactor.cancel()
            await asyncio.gather(self._compactor, return_exceptions=True)
        if self._ops:  # writes already started complete while the committer still runs
            await asyncio.gather(*self._ops, return_exceptions=True)
        if self._committer is not None:
            await self._committer.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _lock(self) -> int:
        """An exclusive lock on the spool for this process's lifetime: a second mailmgr on the
        same DataDirectory would recover (and move) the segments the first is writing, and lose
        accepted mail. Raises OSError(EBUSY) naming the directory."""
        fd = os.open(self._dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OSError(errno.EBUSY, "the spool is in use by another mailmgr process",
                          str(self._dir)) from None
        return fd

    def _make_dirs(self) -> None:
        for path in (self._dir, self._segments_dir, self._quarantine_dir):
            path.mkdir(parents=True, exist_ok=True)
        if self._fsync:
            fsync_dir(self._dir)

    # --- writes ------------------------------------------------------------------------------

    def _live_committer(self) -> GroupCommitter:
        if self._committer is None or self._closed:
            raise SpoolError("spool is not open")
        return self._committer

    async def _shielded(self, op: Awaitable[T]) -> T:
        """Run `op` to completion even if our caller is cancelled."""
        task: asyncio.Future[T] = asyncio.ensure_future(op)
        self._ops.add(task)
        task.add_done_callback(self._ops.discard)
        return await asyncio.shield(task)

    async def commit(self, message: InboundMessage) -> None:
        """Durable (fdatasync'd) when this returns; raises SpoolError (answer 451)."""
        committer = self._live_committer()
        if not is_message_id(message.id):
            raise ValueError(f"not a spool message id: {message.id!r}")
        if message.id in self._index.live:
            raise SpoolError(f"message id {message.id} is already spooled")

        def durable(locs: list[Location]) -> None:
            self._index.put_message(message.id, locs[0], message.received_at, time.time())
            self._reap()

        async def run() -> None:
            if message.size > _LARGE:
                loop = asyncio.get_running_loop()
                record = await loop.run_in_executor(None, encode_message, message)
            else:
                record = encode_message(message)
            await committer.append([record], durable)

        await self._shielded(run())

    async def checkpoint(self, message_id: str, state: ProcessingState) -> None:
        """Durably record the latest processing state; KeyError if the id is not pending."""
        committer = self._live_committer()
        entry = self._index.live.get(message_id)
        if entry is None or entry.finishing:
            raise KeyError(message_id)
        entry.inflight += 1

        def durable(locs: list[Location]) -> None:
            self._index.put_state(message_id, state, locs[0].segment, time.time())
            self._reap()

        async def run() -> None:
            try:
                await committer.append([encode_state(message_id, state)], durable)
            finally:
                entry.inflight -= 1

        await self._shielded(run())

    async def finish(self, message_id: str) -> None:
        """Durably mark the message done; a no-op for ids that are not pending."""
        committer = self._live_committer()
        entry = self._index.live.get(message_id)
        if entry is None or entry.finishing:
            return
        entry.finishing = True

        def durable(locs: list[Location]) -> None:
            self._index.put_done(message_id, locs[0].segment, time.time())
            self._reap()

        async def run() -> None:
            try:
                await committer.append([encode_done(message_id)], durable)
            except BaseException:
                entry.finishing = False
                raise

        await self._shielded(run())

    async def set_aside(self, entry: SpoolEntry, reason: str) -> Path:
        """Copy an accepted message that must not be processed again (it stopped the process
        every time) to `<dir>/quarantine/<id>.eml` with `<id>.json` (envelope, session, state,
        reason), both fsynced, so the operator still has it; then finish it. Returns the .eml
        path. The 250 promised the message is kept: this is how it is kept when it cannot be
        processed."""
        message = entry.message
        eml = self._quarantine_dir / f"{message.id}.eml"
        meta = {"id": message.id, "received_at": message.received_at, "reason": reason,
                "envelope": message.envelope.to_json(), "session": message.session.to_json(),
                "state": entry.state.to_json()}

        def write() -> None:
            self._quarantine_dir.mkdir(parents=True, exist_ok=True)
            for path, data in ((eml, message.content),
                               (eml.with_suffix(".json"),
                                json.dumps(meta, sort_keys=True).encode("utf-8"))):
                with open(path, "wb") as f:
                    f.write(data)
                    f.flush()
                    if self._fsync:
                        os.fsync(f.fileno())
            if self._fsync:
                fsync_dir(self._quarantine_dir)

        await asyncio.get_running_loop().run_in_executor(None, write)
        await self.finish(message.id)
        return eml

    # --- reads -------------------------------------------------------------------------------

    async def load(self, message_id: str) -> SpoolEntry:
        """The message as committed and its latest durable state; KeyError if not pending."""
        loop = asyncio.get_running_loop()
        for _ in range(5):
            entry = self._index.live.get(message_id)
            if entry is None:
                raise KeyError(message_id)
            loc = entry.location
            path = self._segment_path(loc.segment)
            try:
                message = await loop.run_in_executor(None, _read_message, path, loc)
            except FileNotFoundError:
                continue  # compacted and deleted meanwhile; the index points elsewhere now
            except OSError as exc:
                raise SpoolError(f"cannot read {path}: {exc}") from exc
            current = self._index.live.get(message_id, entry)
            return SpoolEntry(message, current.state)
        raise SpoolError(f"message {message_id} kept moving while being read")

    def pending_ids(self) -> list[str]:
        """Unfinished message ids known in memory, in arrival order."""
        return list(self._index.live)

    def is_pending(self, message_id: str) -> bool:
        return message_id in self._index.live

    def peek_state(self, message_id: str) -> ProcessingState:
        """The latest durable state without reading the message; KeyError if not pending."""
        return self._index.live[message_id].state

    def counts(self, now: float) -> SpoolCounts:
        """Pending vs retrying (attempts > 0 or next_attempt_at > now) and the oldest arrival;
        one pass over the in-memory index (no I/O), for metrics at scrape time."""
        retrying = 0
        oldest: float | None = None
        for entry in self._index.live.values():
            state = entry.state
            if state.attempts > 0 or state.next_attempt_at > now:
                retrying += 1
            if oldest is None or entry.received_at < oldest:
                oldest = entry.received_at
        return SpoolCounts(len(self._index.live) - retrying, retrying, oldest)

    @property
    def writable(self) -> bool:
        """Readiness: open, the latest batch written (and fdatasync'd) without error, and the
        segment folder writable for this process (one access(2) call; no write per probe)."""
        committer = self._committer
        if committer is None or self._closed or committer.stats.last_failed:
            return False
        return os.access(self._segments_dir, os.W_OK | os.X_OK)

    @property
    def stats(self) -> SpoolStats:
        c = self._committer.stats if self._committer is not None else None
        return SpoolStats(
            batches=c.batches if c else 0,
            records=c.records if c else 0,
            fsyncs=c.fsyncs if c else 0,
            dir_fsyncs=c.dir_fsyncs if c else 0,
            bytes_written=c.bytes_written if c else 0,
            failed_batches=c.failed_batches if c else 0,
            segments=len(self._index.segments),
            segments_deleted=self._deleted,
            messages_compacted=self._compacted,
            pending=len(self._index.live),
        )

    def fail_next_write(self) -> None:
        """Test seam: the next batch writes half its bytes to the segment, then fails (EIO)."""
        self._live_committer().fail_next_batch()

    # --- segments ----------------------------------------------------------------------------

    def _segment_path(self, seq: int) -> Path:
        return self._segments_dir / segment_name(seq)

    def _on_opened(self, seq: int) -> None:
        self._index.add_segment(seq, time.time(), active=True)

    def _on_retired(self, seq: int, size: int) -> None:
        self._index.retire_segment(seq)
        self._reap()

    def _reap(self) -> None:
        """Start deleting segments nothing needs any more."""
        for seq in self._index.take_dead():
            task = asyncio.get_running_loop().create_task(self._delete(seq))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _delete(self, seq: int) -> None:
        path = self._segment_path(seq)
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._unlink, path)
        except OSError as exc:
            logs.error("spool.segment_delete_failed", file=str(path), error=str(exc))
            self._index.undelete(seq)
            return
        # Only now, with the unlink durable, may DONE records that shadow it go too.
        self._index.drop_segment(seq)
        self._deleted += 1
        self._reap()

    def _unlink(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        if self._fsync:
            fsync_dir(self._segments_dir)

    # --- compaction --------------------------------------------------------------------------

    async def _compact_loop(self) -> None:
        interval = max(0.5, min(self._compact_after / 4, 60.0))
        await self.compact(min_age=self._compact_after)  # quarantined segments go at once
        while True:
            await asyncio.sleep(interval)
            try:
                await self.compact()
            except SpoolError as exc:
                logs.warning("spool.compaction_failed", error=str(exc))

    async def compact(self, min_age: float | None = None) -> int:
        """Re-append idle unfinished messages (MESSAGE + latest STATE) that alone keep an old or
        quarantined segment alive, so that segment can be deleted. Returns how many moved."""
        age = self._compact_after if min_age is None else min_age
        async with self._compact_lock:  # one pass at a time: passes would pick the same ids
            ids = self._index.compaction_candidates(time.time(), age, self._segment_size // 4)
            moved = 0
            for start in range(0, len(ids), _COMPACT_CHUNK):
                moved += await self._compact_chunk(ids[start : start + _COMPACT_CHUNK])
            return moved

    async def _compact_chunk(self, ids: list[str]) -> int:
        committer = self._live_committer()
        index = self._index
        wanted = [(mid, index.live[mid].location) for mid in ids if mid in index.live]
        loop = asyncio.get_running_loop()
        raws = await loop.run_in_executor(
            None, _read_many, [(self._segment_path(loc.segment), loc) for _, loc in wanted]
        )
        moves: list[tuple[str, LiveMessage, ProcessingState]] = []
        records: list[bytes] = []
        for (mid, loc), raw in zip(wanted, raws, strict=True):
            entry = index.live.get(mid)
            # Re-check now, synchronously with the enqueue below, so no checkpoint or DONE of
            # this message can be ordered before its copy in the log.
            if entry is None or entry.location != loc or entry.inflight or entry.finishing:
                continue
            if raw is None or parse_at(raw, 0).status is not ParseStatus.OK:
                logs.warning("spool.compaction_skipped", message_id=mid, offset=loc.offset)
                continue
            entry.inflight += 1
            moves.append((mid, entry, entry.state))
            records += [raw, encode_state(mid, entry.state)]
        if not moves:
            return 0

        def durable(locs: list[Location]) -> None:
            now = time.time()
            for i, (mid, entry, state) in enumerate(moves):
                index.put_message(mid, locs[2 * i], entry.received_at, now)
                index.put_state(mid, state, locs[2 * i + 1].segment, now)
            self._compacted += len(moves)
            self._reap()

        async def run() -> None:
            try:
                await committer.append(records, durable)
            finally:
                for _, entry, _ in moves:
                    entry.inflight -= 1

        await self._shielded(run())
        return len(moves)
