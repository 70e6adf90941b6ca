"""SpoolWorker yields to ingest: fewer messages at once while submits arrive fast, never zero,
a bounded deferral, due retries not held back, and full concurrency once ingest is quiet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

from mailmgr.message import InboundMessage, ProcessingState
from mailmgr.spool.store import SpoolEntry, SpoolStore
from mailmgr.spool.worker import Checkpoint, SpoolWorker

Factory = Callable[..., InboundMessage]


class Gauge:
    """A processor that takes `delay` seconds and records the most messages at once."""

    def __init__(self, delay: float, busy: Callable[[], bool] = lambda: False) -> None:
        self.delay = delay
        self.busy = busy
        self.active = 0
        self.peak = 0
        self.busy_peak = 0  # most at once among messages started while ingest was busy
        self.done: list[str] = []
        self.retry_once: set[str] = set()
        self.started: dict[str, float] = {}

    async def __call__(self, entry: SpoolEntry, checkpoint: Checkpoint) -> ProcessingState:
        mid = entry.message.id
        self.started[mid] = time.time()
        self.active += 1
        self.peak = max(self.peak, self.active)
        if self.busy():
            self.busy_peak = max(self.busy_peak, self.active)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.active -= 1
        if mid in self.retry_once:
            self.retry_once.discard(mid)
            return replace(entry.state, attempts=1, next_attempt_at=time.time() + 0.3)
        self.done.append(mid)
        return replace(entry.state, done=True)


async def _commit(store: SpoolStore, factory: Factory, n: int) -> list[InboundMessage]:
    messages = [factory(size=200) for _ in range(n)]
    for m in messages:
        await store.commit(m)
    return messages


async def test_busy_ingest_limits_concurrency_and_everything_drains(
    store: SpoolStore, message_factory: Factory
) -> None:
    gauge = Gauge(delay=0.02)
    worker = SpoolWorker(store, gauge, concurrency=8, busy_rate=20, busy_concurrency=2)
    # Once the busy signal decays (a slow machine may still be draining), full concurrency is
    # right again: only messages started while ingest was busy must respect the limit.
    gauge.busy = lambda: worker.ingest_busy
    await worker.start([])
    messages = await _commit(store, message_factory, 60)
    for m in messages:  # 60 submits at once: far above 20 per second
        worker.submit(m.id)
    assert worker.ingest_busy
    assert await worker.wait_idle(10)
    await worker.stop(1)
    assert sorted(gauge.done) == sorted(m.id for m in messages)
    assert store.pending_ids() == []
    assert 1 <= gauge.busy_peak <= 2


async def test_quiet_ingest_uses_full_concurrency(
    store: SpoolStore, message_factory: Factory
) -> None:
    gauge = Gauge(delay=0.05)
    worker = SpoolWorker(store, gauge, concurrency=8, busy_rate=1000, busy_concurrency=1)
    messages = await _commit(store, message_factory, 16)
    await worker.start([m.id for m in messages])  # recovered ids are not submits
    assert not worker.ingest_busy
    assert await worker.wait_idle(10)
    await worker.stop(1)
    assert len(gauge.done) == 16 and gauge.peak == 8


async def test_deferral_is_bounded_by_max_defer(
    store: SpoolStore, message_factory: Factory
) -> None:
    gauge = Gauge(delay=0.2)
    worker = SpoolWorker(store, gauge, concurrency=4, busy_rate=1, busy_concurrency=1,
                         max_defer=0.1)
    await worker.start([])
    messages = await _commit(store, message_factory, 4)
    for m in messages:
        worker.submit(m.id)
    await asyncio.sleep(0.15)
    for m in await _commit(store, message_factory, 2):  # keep ingest "busy"
        worker.submit(m.id)
    assert await worker.wait_idle(10)
    await worker.stop(1)
    assert gauge.peak >= 2  # held messages ran once they had waited max_defer


async def test_retry_during_busy_ingest_runs_when_due_and_finishes(
    store: SpoolStore, message_factory: Factory
) -> None:
    gauge = Gauge(delay=0.05)
    worker = SpoolWorker(store, gauge, concurrency=4, busy_rate=1, busy_concurrency=1,
                         max_defer=60)
    await worker.start([])
    retried, *others = await _commit(store, message_factory, 11)
    gauge.retry_once.add(retried.id)
    worker.submit(retried.id)
    await asyncio.sleep(0.1)  # first attempt done: the retry is due 0.3 s after it
    first = gauge.started[retried.id]
    for m in others:  # a busy ingest while the retry waits in the timer
        worker.submit(m.id)
    assert await worker.wait_idle(10)
    await worker.stop(1)
    assert sorted(gauge.done) == sorted(m.id for m in (retried, *others))
    assert gauge.started[retried.id] >= first + 0.3  # not early
    assert gauge.peak <= 4 and store.pending_ids() == []
