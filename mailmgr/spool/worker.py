"""Runs spooled messages through a processor: a bounded queue, `concurrency` worker tasks, a timer
heap for retries and a rescan that finds ids the queue had no room for. Owns scheduling only;
must not write records itself except through the store (checkpoint, finish).

Every pending id is in exactly one of: queued, in flight, scheduled, or (after an overflow) only
in the store until the rescan picks it up. That is what keeps a message from being processed by
two workers at once, and from being lost when the queue is full. The operator's commands
(`mailmgr queue` through the admin listener: retry_now, retry_all, delete) move ids within that
same bookkeeping; delete refuses an id in flight and keeps it from starting until its DONE
record is durable.

Processing yields to ingest: while messages are being submitted fast (SMTP accepts), at most
`busy_concurrency` run at once, so the accept path keeps the event loop; a message waits for that
at most `max_defer` seconds (due retries are never held), so the backlog always drains.

Heavy messages (mailmgr.heavy: >= 1 MiB, known once loaded) use at most half the workers; one
that finds that lane full is parked, not waited for, so ordinary mail keeps the other half.
Starts are counted in the spool (`spool.starts`, in every checkpoint of a run; written before the
run for heavy or interrupted messages); after MAX_STARTS runs that never ended (the process died
in them) the next start waits a growing backoff, and after GIVE_UP_STARTS the message is set
aside, unprocessed, in the spool's quarantine folder (.eml + .json, fsynced) with a
`spool.message_set_aside` error: never a restart-loop poison, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Protocol

from mailmgr import heavy, logs
from mailmgr.errors import SpoolError
from mailmgr.message import ProcessingState
from mailmgr.spool.store import SpoolEntry, SpoolStore

Checkpoint = Callable[[ProcessingState], Awaitable[None]]
_MAX_TICK = 0.5  # the timer re-reads the clock at least this often (injected clocks jump)
_MAX_BACKOFF = 300.0
_RATE_BUCKET = 0.5  # submit-rate buckets (seconds): the rate covers the last 0.5-1 s
_GATE_TICK = 0.05  # a held message re-checks the ingest signal at least this often
STARTS_KEY = "spool.starts"  # reserved action_data keys: never a "<rule>.<action>" key
DELAYED_KEY = "spool.start-delayed"  # the next start of a restart-looping message is due
MAX_STARTS = 3  # unfinished starts of a message before its next one is delayed
GIVE_UP_STARTS = 8  # unfinished starts after which it is set aside in quarantine/
_POISON_BACKOFF = 60.0  # first delay after MAX_STARTS; doubles per start, capped at 1 h


class InFlight(Exception):
    """The message is being processed right now (an operator's delete must wait)."""


class Processor(Protocol):
    async def __call__(self, entry: SpoolEntry, checkpoint: Checkpoint) -> ProcessingState:
        """Process from `entry.state`; return the final state. done=True → finished; otherwise
        the message is checkpointed and retried at `state.next_attempt_at` (epoch seconds)."""
        ...


class SpoolWorker:
    def __init__(
        self,
        store: SpoolStore,
        processor: Processor,
        *,
        concurrency: int = 8,
        queue_size: int = 10000,
        clock: Callable[[], float] = time.time,
        rescan_interval: float = 30.0,
        crash_backoff: float = 1.0,
        busy_rate: float = 50.0,
        busy_concurrency: int = 2,
        max_defer: float = 10.0,
    ) -> None:
        """While more than `busy_rate` messages per second are submitted, run at most
        `busy_concurrency` (at least 1) messages at once; a message queued for `max_defer`
        seconds runs anyway."""
        self._store = store
        self._processor = processor
        self._concurrency = max(1, concurrency)
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=max(1, queue_size))
        self._clock = clock
        self._rescan_interval = rescan_interval
        self._crash_backoff = crash_backoff
        self._queued: dict[str, float] = {}  # id -> when queued (monotonic; 0: a due retry)
        self._inflight: set[str] = set()
        self._scheduled: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._counter = itertools.count()
        self._crashes: dict[str, int] = {}  # consecutive processor crashes per in-spool id
        self._timer_wake = asyncio.Event()
        self._rescan_wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        self._helpers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._busy_rate = busy_rate
        self._busy_concurrency = max(1, min(busy_concurrency, self._concurrency))
        self._max_defer = max_defer
        self._bucket = 0  # current submit-rate bucket number and counts of it and the one before
        self._bucket_count = 0
        self._previous_count = 0
        self._slot_freed = asyncio.Event()
        self._heavy_limit = max(1, self._concurrency // 2)
        self._heavy_running = 0
        self._heavy_ids: set[str] = set()  # ids known to be heavy (from their size)
        self._parked: dict[str, None] = {}  # heavy ids waiting for the heavy lane, in order
        self._survived: dict[str, int] = {}  # id -> start count of a run that raised
        self._deleting: set[str] = set()  # ids an operator is deleting: never started

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, message_ids: Iterable[str]) -> None:
        """Schedule recovered ids (each at its stored next_attempt_at) and start working."""
        for mid in message_ids:
            self._admit(mid)
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._work(), name=f"spool-worker-{i}")
            for i in range(self._concurrency)
        ]
        self._helpers = [
            loop.create_task(self._timer(), name="spool-timer"),
            loop.create_task(self._rescan(), name="spool-rescan"),
        ]

    def submit(self, message_id: str) -> None:
        """Queue a freshly committed id. Never blocks: if the queue is full the id stays in the
        store only, and the rescan picks it up when there is room."""
        self._note_submit()
        if self._stopping or self._known(message_id):
            return
        self._enqueue(message_id)

    @property
    def ingest_busy(self) -> bool:
        """True while messages are submitted faster than `busy_rate` per second."""
        bucket = int(time.monotonic() / _RATE_BUCKET)
        count = 0
        if bucket == self._bucket:
            count = self._bucket_count + self._previous_count
        elif bucket == self._bucket + 1:
            count = self._bucket_count
        return count >= self._busy_rate * 2 * _RATE_BUCKET

    async def stop(self, grace: float) -> None:
        """Take no new work; give in-flight messages `grace` seconds, then cancel them. What is
        unfinished stays in the spool for the next start."""
        self._stopping = True
        for task in self._helpers:
            task.cancel()
        for task in self._workers:
            if task not in self._busy:
                task.cancel()
        busy = [t for t in self._workers if t in self._busy]
        if busy:
            _, late = await asyncio.wait(busy, timeout=max(0.0, grace))
            for task in late:
                task.cancel()
        await asyncio.gather(*self._workers, *self._helpers, return_exceptions=True)

    async def wait_idle(self, timeout: float, soon: float = 1.0) -> bool:  # noqa: ASYNC109
        """Test helper: True once nothing is queued, in flight or scheduled within `soon` s."""
        deadline = time.monotonic() + timeout
        while True:
            due = min(self._scheduled.values(), default=None)
            idle = not (self._queued or self._inflight or self._parked
                        or self._rescan_wake.is_set())
            if idle and (due is None or due > self._clock() + soon):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)

    # --- operator commands (mailmgr queue, through the admin listener) -------------------------

    def status(self, mid: str) -> tuple[str, float | None]:
        """(`queued` | `in-flight` | `scheduled` | `parked` | `waiting`, when it is scheduled
        in epoch seconds or None). `waiting`: only in the store until the rescan admits it."""
        if mid in self._inflight:
            return "in-flight", None
        if mid in self._scheduled:
            return "scheduled", self._scheduled[mid]
        if mid in self._queued:
            return "queued", None
        if mid in self._parked:
            return "parked", None
        return "waiting", None

    def retry_now(self, mid: str) -> str:
        """Make a pending message due now: a scheduled one moves from the timer to the queue
        (its heap entry is superseded); others are already due or running. Returns the status
        it had (see `status`). KeyError if the id is not pending."""
        if not self._store.is_pending(mid) or mid in self._deleting:
            raise KeyError(mid)
        status, _ = self.status(mid)
        if status == "scheduled":
            del self._scheduled[mid]
            if not self._enqueue(mid, due=True):
                self._schedule(mid, self._clock())  # queue full: the timer retries at once
        elif status == "waiting":
            self._rescan_wake.set()
        return status

    def retry_all(self) -> int:
        """`retry_now` for every scheduled message; returns how many were moved."""
        moved = 0
        for mid in list(self._scheduled):
            if self._store.is_pending(mid) and mid not in self._deleting:
                self.retry_now(mid)
                moved += 1
        return moved

    async def delete(self, mid: str) -> None:
        """Finish a pending message unprocessed (a DONE record, durable when this returns).
        KeyError if it is not pending; InFlight if a worker is running it right now (its
        actions may be half done: the operator tries again once it is checkpointed)."""
        if not self._store.is_pending(mid) or mid in self._deleting:
            raise KeyError(mid)
        if mid in self._inflight:
            raise InFlight(mid)
        # From here until the DONE record is durable, no worker may start it (_work checks).
        self._deleting.add(mid)
        try:
            await self._store.finish(mid)
        finally:
            self._deleting.discard(mid)
        self._scheduled.pop(mid, None)  # a heap entry left behind is skipped by the timer
        self._parked.pop(mid, None)
        self._heavy_ids.discard(mid)
        self._crashes.pop(mid, None)
        self._survived.pop(mid, None)

    # --- bookkeeping -------------------------------------------------------------------------

    def _known(self, mid: str) -> bool:
        return (mid in self._queued or mid in self._inflight or mid in self._scheduled
                or mid in self._parked)

    def _note_submit(self) -> None:
        bucket = int(time.monotonic() / _RATE_BUCKET)
        if bucket != self._bucket:
            self._previous_count = self._bucket_count if bucket == self._bucket + 1 else 0
            self._bucket, self._bucket_count = bucket, 0
        self._bucket_count += 1

    def _enqueue(self, mid: str, *, due: bool = False) -> bool:
        try:
            self._queue.put_nowait(mid)
        except asyncio.QueueFull:
            self._rescan_wake.set()
            return False
        self._queued[mid] = 0.0 if due else time.monotonic()
        return True

    def _schedule(self, mid: str, when: float) -> None:
        self._scheduled[mid] = when
        heapq.heappush(self._heap, (when, next(self._counter), mid))
        self._timer_wake.set()

    def _admit(self, mid: str) -> bool:
        """Place a pending id that is not known yet; False if the queue was full."""
        if self._known(mid):
            return True
        try:
            when = self._store.peek_state(mid).next_attempt_at
        except KeyError:
            return True  # finished meanwhile
        if when > self._clock():
            self._schedule(mid, when)
            return True
        return self._enqueue(mid)

    # --- tasks -------------------------------------------------------------------------------

    async def _timer(self) -> None:
        while True:
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                when, _, mid = heapq.heappop(self._heap)
                if self._scheduled.get(mid) != when:
                    continue  # superseded entry
                del self._scheduled[mid]
                self._enqueue(mid, due=True)  # if full, the rescan finds it in the store
            delay = self._heap[0][0] - now if self._heap else _MAX_TICK
            self._timer_wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(max(delay, 0.0), _MAX_TICK)):
                    await self._timer_wake.wait()

    async def _rescan(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._rescan_interval):
                    await self._rescan_wake.wait()
            if self._queue.full():
                await asyncio.sleep(0.05)  # keep the wake flag: retry once there is room
                continue
            self._rescan_wake.clear()
            for mid in self._store.pending_ids():
                if not self._admit(mid):
                    break  # full again; _enqueue set the flag for another pass

    async def _work(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        while not self._stopping:
            mid = await self._queue.get()
            await self._yield_to_ingest(mid)  # still counted as queued while it waits
            self._queued.pop(mid, None)
            if mid in self._inflight or mid in self._deleting:
                continue
            if mid in self._heavy_ids and self._heavy_running >= self._heavy_limit:
                self._parked[mid] = None  # known heavy: no need to load it to know
                continue
            self._inflight.add(mid)
            self._busy.add(me)
            try:
                await self._process(mid)
            finally:
                self._inflight.discard(mid)
                self._busy.discard(me)
                self._slot_freed.set()

    async def _yield_to_ingest(self, mid: str) -> None:
        while (
            len(self._inflight) >= self._busy_concurrency
            and not self._stopping
            and time.monotonic() - self._queued.get(mid, 0.0) < self._max_defer
            and self.ingest_busy
        ):
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_GATE_TICK):
                    await self._slot_freed.wait()

    async def _process(self, mid: str) -> None:
        store = self._store
        try:
            entry = await store.load(mid)
        except KeyError:
            self._crashes.pop(mid, None)
            return  # finished meanwhile
        except SpoolError as exc:
            logs.error("spool.load_failed", message_id=mid, error=str(exc))
            self._retry_after_crash(mid)
            return
        if entry.state.done:
            await self._finish(mid)
            return
        if not heavy.is_heavy(len(entry.message.content)):
            await self._start(mid, entry, durable=self._prior_starts(mid, entry) > 0)
            return
        self._heavy_ids.add(mid)
        if self._heavy_running >= self._heavy_limit:
            self._parked[mid] = None
            return
        self._heavy_running += 1
        try:
            await self._start(mid, entry, durable=True)
        finally:
            self._heavy_running -= 1
            self._unpark()

    def _unpark(self) -> None:
        while self._parked and self._heavy_running < self._heavy_limit:
            mid = next(iter(self._parked))
            del self._parked[mid]
            if self._store.is_pending(mid) and self._enqueue(mid, due=True):
                return  # one freed slot, one parked message; a full queue: the rescan finds it

    async def _start(self, mid: str, entry: SpoolEntry, *, durable: bool) -> None:
        """Run the processor once, counting the start. `durable`: write the count before
        running (heavy messages, and any message whose last run never ended); otherwise it
        rides on the processor's own first checkpoint, at no extra write."""
        starts = self._prior_starts(mid, entry) + 1
        if durable:
            started = await self._count_start(mid, entry, starts)
            if started is None:
                return
            entry = started
        await self._run(mid, entry, starts)

    def _prior_starts(self, mid: str, entry: SpoolEntry) -> int:
        """Runs of this message that never ended: the stored count, less the last run when it
        ended in this process by an exception (the crash backoff handles those)."""
        prior = _starts(entry.state)
        return prior - 1 if prior and self._survived.get(mid) == prior else prior

    async def _count_start(self, mid: str, entry: SpoolEntry, starts: int
                           ) -> SpoolEntry | None:
        """Record one more start before it runs (one durable write); None when it must not run
        now (delayed, or set aside after GIVE_UP_STARTS)."""
        state = entry.state
        delayed = any(key == DELAYED_KEY for key, _ in state.action_data)
        if starts > GIVE_UP_STARTS:
            reason = "the process stopped while processing it every time"
            try:
                path = await self._store.set_aside(entry, reason)
            except (OSError, SpoolError) as exc:  # kept in the spool: tried again later
                logs.error("spool.set_aside_failed", message_id=mid, error=str(exc))
                self._retry_after_crash(mid)
                return None
            logs.error("spool.message_set_aside", message_id=mid,
                       size=len(entry.message.content), starts=starts - 1, reason=reason,
                       path=str(path))
            self._heavy_ids.discard(mid)
            return None
        state = _with_starts(state, starts)
        if starts > MAX_STARTS and not delayed:
            delay = min(_POISON_BACKOFF * 2 ** (starts - MAX_STARTS - 1), 3600.0)
            logs.error("spool.restart_loop", message_id=mid, starts=starts - 1,
                       retry_in=delay)
            # Not a start yet: it is counted when it runs, after the delay (DELAYED_KEY).
            later = replace(entry.state, next_attempt_at=self._clock() + delay,
                            action_data=(*entry.state.action_data, (DELAYED_KEY, "true")))
            await self._store.checkpoint(mid, later)
            self._schedule(mid, later.next_attempt_at)
            return None
        await self._store.checkpoint(mid, state)
        return SpoolEntry(entry.message, state)

    async def _run(self, mid: str, entry: SpoolEntry, starts: int) -> None:
        store = self._store

        async def checkpoint(state: ProcessingState) -> None:
            # Every checkpoint of this run says it started: if the process dies before the run
            # ends, the next start knows.
            await store.checkpoint(mid, _with_starts(state, starts))

        self._survived.pop(mid, None)

        try:
            final = await self._processor(entry, checkpoint)
            if final.done:
                await store.finish(mid)
                self._heavy_ids.discard(mid)
                self._survived.pop(mid, None)
            else:
                # The run ended on its own: its starts no longer suggest a crash loop.
                data = tuple(d for d in final.action_data
                             if d[0] not in (STARTS_KEY, DELAYED_KEY))
                final = replace(final, action_data=data)
                await store.checkpoint(mid, final)
                self._schedule(mid, final.next_attempt_at)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logs.error(
                "spool.processing_crashed",
                message_id=mid,
                error=repr(exc),
                traceback=traceback.format_exc(limit=8),
            )
            self._survived[mid] = starts  # the process lived: not a restart-loop start
            self._retry_after_crash(mid)
            return
        self._crashes.pop(mid, None)

    async def _finish(self, mid: str) -> None:
        try:
            await self._store.finish(mid)
        except SpoolError as exc:
            logs.error("spool.finish_failed", message_id=mid, error=str(exc))
            self._retry_after_crash(mid)

    def _retry_after_crash(self, mid: str) -> None:
        if not self._store.is_pending(mid):
            self._heavy_ids.discard(mid)
            self._survived.pop(mid, None)
            self._crashes.pop(mid, None)
            return
        n = self._crashes.get(mid, 0) + 1
        self._crashes[mid] = n
        delay = min(self._crash_backoff * (2 ** (n - 1)), _MAX_BACKOFF)
        self._schedule(mid, self._clock() + delay)


def _starts(state: ProcessingState) -> int:
    """Recorded unfinished starts of a heavy message (0 when none or unreadable)."""
    for key, value in state.action_data:
        if key == STARTS_KEY:
            try:
                n = json.loads(value)
            except ValueError:
                return 0
            return n if isinstance(n, int) else 0
    return 0


def _with_starts(state: ProcessingState, starts: int) -> ProcessingState:
    data = tuple(d for d in state.action_data if d[0] not in (STARTS_KEY, DELAYED_KEY))
    return replace(state, action_data=(*data, (STARTS_KEY, json.dumps(starts))))
