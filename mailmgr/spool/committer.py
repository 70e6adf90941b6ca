"""Group commit: one task appends everything queued to the active segment with one write and one
fdatasync per batch, so concurrent commits share an fsync. Owns the active segment file and
rotation; knows nothing of messages or liveness. File I/O runs on one dedicated thread.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mailmgr import logs
from mailmgr.errors import SpoolError

_IOV_MAX = 1024


@dataclass(frozen=True)
class Location:
    """Where one record lives: segment sequence number, byte offset and total record length."""

    segment: int
    offset: int
    length: int


@dataclass(frozen=True)
class CommitStats:
    """Counters of the committer: `fsyncs` counts data fdatasyncs (one per successful batch)."""

    batches: int = 0
    records: int = 0
    fsyncs: int = 0
    dir_fsyncs: int = 0
    bytes_written: int = 0
    failed_batches: int = 0
    last_failed: bool = False  # the latest batch failed (readiness: the spool is not writable)


Durable = Callable[[list[Location]], None]


@dataclass
class _Item:
    records: list[bytes]
    size: int
    future: asyncio.Future[list[Location]]
    on_durable: Durable | None


@dataclass
class _BatchResult:
    locations: list[list[Location]] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)
    retired: list[tuple[int, int]] = field(default_factory=list)  # (segment, final size)
    fsyncs: int = 0
    dir_fsyncs: int = 0
    written: int = 0
    error: OSError | None = None


def segment_name(seq: int) -> str:
    return f"{seq:012d}.seg"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, bufs: list[bytes]) -> None:
    """writev everything, coping with short writes (which leave a partial record behind)."""
    views = [memoryview(b) for b in bufs if b]
    i = 0
    while i < len(views):
        n = os.writev(fd, views[i : i + _IOV_MAX])
        while n > 0:
            if n >= len(views[i]):
                n -= len(views[i])
                i += 1
            else:
                views[i] = views[i][n:]
                n = 0


def _consume(fut: asyncio.Future[list[Location]]) -> None:
    # A cancelled caller no longer awaits its shielded future; read the outcome so asyncio does
    # not report "exception never retrieved".
    if not fut.cancelled():
        fut.exception()


class GroupCommitter:
    """Appends record groups durably. `append` returns once its batch is fdatasync'd."""

    def __init__(
        self,
        directory: Path,
        *,
        first_seq: int,
        segment_size: int,
        fsync: bool,
        max_pending_bytes: int,
        on_opened: Callable[[int], None],
        on_retired: Callable[[int, int], None],
    ) -> None:
        self._dir = directory
        self._next_seq = first_seq
        self._segment_size = segment_size
        self._fsync = fsync
        self._max_pending = max_pending_bytes
        self._on_opened = on_opened
        self._on_retired = on_retired
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-io")
        self._queue: list[_Item] = []
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._stats = CommitStats()
        # Touched only on the I/O thread:
        self._fd: int | None = None
        self._seq = -1
        self._size = 0
        self._fail_next = False

    @property
    def stats(self) -> CommitStats:
        return self._stats

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="spool-committer")

    def fail_next_batch(self) -> None:
        """Test seam: the next batch writes half its bytes for real, then fails with EIO."""
        self._fail_next = True

    async def append(
        self, records: list[bytes], on_durable: Durable | None = None
    ) -> list[Location]:
        """Write `records` contiguously in one batch; durable when this returns.

        Cancelling the caller does not cancel the write: the records are still written and
        `on_durable` still runs. Raises SpoolError if the batch fails (nothing of it remains).
        """
        size = sum(len(r) for r in records)
        while self._queued_bytes > 0 and self._queued_bytes + size > self._max_pending:
            self._space.clear()
            await self._space.wait()
        if self._closing:
            raise SpoolError("spool is closed")
        fut: asyncio.Future[list[Location]] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_consume)
        self._queue.append(_Item(records, size, fut, on_durable))
        self._queued_bytes += size
        self._wake.set()
        return await asyncio.shield(fut)

    async def close(self) -> None:
        """Write everything already queued, then close the active segment."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._io, self._close_active)
        for seq, size in result.retired:
            self._on_retired(seq, size)
        self._io.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch, self._queue = self._queue, []
                self._queued_bytes = 0
                self._space.set()
                groups = [item.records for item in batch]
                result = await loop.run_in_executor(self._io, self._write_batch, groups)
                self._apply(batch, result)
        except asyncio.CancelledError:
            for item in self._queue:
                if not item.future.done():
                    item.future.set_exception(SpoolError("spool committer stopped"))
            raise

    def _apply(self, batch: list[_Item], result: _BatchResult) -> None:
        s = self._stats
        ok = result.error is None
        self._stats = CommitStats(
            batches=s.batches + 1,
            records=s.records + (sum(len(i.records) for i in batch) if ok else 0),
            fsyncs=s.fsyncs + result.fsyncs,
            dir_fsyncs=s.dir_fsyncs + result.dir_fsyncs,
            bytes_written=s.bytes_written + result.written,
            failed_batches=s.failed_batches + (0 if ok else 1),
            last_failed=not ok,
        )
        for seq in result.opened:
            self._on_opened(seq)
        if result.error is not None:
            logs.error("spool.write_failed", error=str(result.error), records=len(batch))
            for item in batch:
                item.future.set_exception(SpoolError(f"spool write failed: {result.error}"))
        else:
            for item, locs in zip(batch, result.locations, strict=True):
                if item.on_durable is not None:
                    try:
                        item.on_durable(locs)
                    except Exception as exc:  # a bookkeeping bug must not strand other waiters
                        logs.error("spool.index_update_failed", error=repr(exc))
                item.future.set_result(locs)
        for seq, size in result.retired:
            self._on_retired(seq, size)

    # --- I/O thread -----------------------------------------------------------------------

    def _open_next(self, result: _BatchResult) -> int:
        seq = self._next_seq
        path = self._dir / segment_name(seq)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        self._next_seq += 1
        self._fd, self._seq, self._size = fd, seq, 0
        result.opened.append(seq)
        if self._fsync:
            fsync_dir(self._dir)  # the new name must survive a crash, not just its data
            result.dir_fsyncs += 1
        return fd

    def _retire(self, result: _BatchResult) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            result.retired.append((self._seq, self._size))
            self._fd = None

    def _close_active(self) -> _BatchResult:
        result = _BatchResult()
        self._retire(result)
        return result

    def _write_batch(self, groups: list[list[bytes]]) -> _BatchResult:
        result = _BatchResult()
        try:
            if self._fd is None or self._size >= self._segment_size:
                self._retire(result)
                self._open_next(result)
            assert self._fd is not None
            fd, start = self._fd, self._size  # _size only advances after a batch succeeds
            offset = start
            for group in groups:
                locs = []
                for rec in group:
                    locs.append(Location(self._seq, offset, len(rec)))
                    offset += len(rec)
                result.locations.append(locs)
            bufs = [rec for group in groups for rec in group]
            if self._fail_next:
                self._fail_next = False
                joined = b"".join(bufs)
                _write_all(fd, [joined[: len(joined) // 2]])
                raise OSError(errno.EIO, "injected write failure")
            _write_all(fd, bufs)
            if self._fsync:
                os.fdatasync(fd)
                result.fsyncs += 1
            self._size = offset
            result.written = offset - start
        except OSError as exc:
            result.error = exc
            result.locations = []
            self._undo(self._size, result)
        return result

    def _undo(self, start: int, result: _BatchResult) -> None:
        """Cut the segment back to its pre-batch length so no partial record remains, then
        retire it: after a failed write or fdatasync the file's page state is unknown."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, start)
            if self._fsync:
                os.fdatasync(self._fd)
            self._size = start
        except OSError as exc:
            # Recovery treats the leftover as damage (quarantine), never as a record.
            logs.error("spool.truncate_failed", segment=self._seq, offset=start, error=str(exc))
        self._retire(result)
