"""SpoolWorker: processing, retry scheduling, crash isolation, overflow, stop with grace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mailmgr.message import InboundMessage, ProcessingState
from mailmgr.spool.store import SpoolEntry, SpoolStore
from mailmgr.spool.worker import Checkpoint, SpoolWorker

Factory = Callable[..., InboundMessage]
LogEvents = Any  # the log_events fixture (tests/spool/conftest.py)


class Recorder:
    """A processor that records calls and follows a script of outcomes per message."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, ProcessingState, float]] = []
        self.contents: dict[str, bytes] = {}
        self.active: set[str] = set()
        self.overlap = False
        self.delay = delay
        self.script: dict[str, list[Callable[[SpoolEntry], ProcessingState]]] = {}

    async def __call__(self, entry: SpoolEntry, checkpoint: Checkpoint) -> ProcessingState:
        mid = entry.message.id
        if mid in self.active:
            self.overlap = True
        self.active.add(mid)
        try:
            self.calls.append((mid, entry.state, time.time()))
            self.contents[mid] = entry.message.content
            await checkpoint(replace(entry.state, rule_index=entry.state.rule_index + 1))
            if self.delay:
                await asyncio.sleep(self.delay)
            steps = self.script.get(mid)
            if steps:
                return steps.pop(0)(entry)
            return replace(entry.state, done=True)
        finally:
            self.active.discard(mid)

    def ids(self) -> list[str]:
        return [c[0] for c in self.calls]


async def test_submitted_messages_are_processed_and_finished(
    store: SpoolStore, message_factory: Factory
) -> None:
    proc = Recorder()
    worker = SpoolWorker(store, proc, concurrency=4)
    await worker.start([])
    messages = [message_factory(size=500) for _ in range(30)]
    for m in messages:
        await store.commit(m)
        worker.submit(m.id)
        worker.submit(m.id)  # a duplicate submit must not process twice
    assert await worker.wait_idle(10)
    await worker.stop(1)
    assert sorted(proc.ids()) == sorted(m.id for m in messages)
    assert all(proc.contents[m.id] == m.content for m in messages)
    assert store.pending_ids() == []
    assert not proc.overlap


async def test_recovered_ids_respect_stored_next_attempt_at(
    store: SpoolStore, message_factory: Factory
) -> None:
    now = time.time()
    due, later = message_factory(), message_factory()
    for m in (due, later):
        await store.commit(m)
    await store.checkpoint(later.id, ProcessingState(rule_index=4, next_attempt_at=now + 0.6))
    proc = Recorder()
    worker = SpoolWorker(store, proc)
    await worker.start(store.pending_ids())
    await asyncio.sleep(0.3)
    assert proc.ids() == [due.id]
    assert await worker.wait_idle(5, soon=5)
    await worker.stop(1)
    assert proc.ids() == [due.id, later.id]
    started_later = proc.calls[1][2]
    assert started_later >= now + 0.6
    assert proc.calls[1][1].rule_index == 4  # resumed from the stored state


async def test_unfinished_result_is_checkpointed_and_retried_at_next_attempt(
    store: SpoolStore, message_factory: Factory
) -> None:
    m = message_factory()
    await store.commit(m)
    proc = Recorder()
    retry_at = time.time() + 0.4
    proc.script[m.id] = [lambda e: replace(e.state, attempts=1, next_attempt_at=retry_at)]
    worker = SpoolWorker(store, proc)
    await worker.start([])
    worker.submit(m.id)
    await asyncio.sleep(0.2)
    assert len(proc.calls) == 1
    assert store.peek_state(m.id).attempts == 1  # checkpointed before waiting
    assert await worker.wait_idle(5, soon=5)
    await worker.stop(1)
    assert len(proc.calls) == 2
    assert proc.calls[1][2] >= retry_at
    resumed = proc.calls[1][1]
    assert resumed.attempts == 1 and resumed.next_attempt_at == retry_at
    assert store.pending_ids() == []


async def test_crashing_processor_is_logged_and_retried(
    store: SpoolStore, message_factory: Factory, log_events: LogEvents
) -> None:
    bad, good = message_factory(), message_factory()
    for m in (bad, good):
        await store.commit(m)

    def boom(entry: SpoolEntry) -> ProcessingState:
        raise RuntimeError("processor bug")

    proc = Recorder()
    proc.script[bad.id] = [boom, boom]
    worker = SpoolWorker(store, proc, concurrency=1, crash_backoff=0.05)
    await worker.start([bad.id, good.id])
    assert await worker.wait_idle(5, soon=5)
    await worker.stop(1)
    assert proc.ids().count(bad.id) == 3  # two crashes, then success
    assert good.id in proc.ids()
    errors = log_events.named("spool.processing_crashed")
    assert [e["message_id"] for e in errors] == [bad.id, bad.id]
    assert "processor bug" in errors[0]["error"]
    assert store.pending_ids() == []


async def test_full_queue_never_loses_or_blocks(
    store: SpoolStore, message_factory: Factory
) -> None:
    proc = Recorder(delay=0.01)
    worker = SpoolWorker(store, proc, concurrency=2, queue_size=3, rescan_interval=60)
    await worker.start([])
    messages = [message_factory(size=200) for _ in range(25)]
    for m in messages:
        await store.commit(m)
        worker.submit(m.id)  # returns at once even when the queue is full
    assert await worker.wait_idle(10)
    await worker.stop(1)
    assert sorted(proc.ids()) == sorted(m.id for m in messages)
    assert not proc.overlap
    assert store.pending_ids() == []


async def test_stop_with_grace_leaves_unfinished_work_in_the_spool(
    tmp_path: Path, message_factory: Factory
) -> None:
    directory = tmp_path / "spool"
    store = SpoolStore(directory)
    await store.open()
    messages = [message_factory(size=200) for _ in range(6)]
    for m in messages:
        await store.commit(m)
    proc = Recorder(delay=30)  # each message takes "forever"
    worker = SpoolWorker(store, proc, concurrency=2)
    await worker.start(store.pending_ids())
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    await worker.stop(grace=0.2)
    assert time.monotonic() - t0 < 2
    assert len(proc.calls) == 2  # nothing new started after stop
    await store.close()

    again = SpoolStore(directory)
    try:
        ids = await again.open()
        assert ids == [m.id for m in messages]
        # the checkpoints made before cancellation are durable
        assert again.peek_state(proc.calls[0][0]).rule_index == 1
    finally:
        await again.close()


async def test_stop_waits_for_in_flight_work_within_grace(
    store: SpoolStore, message_factory: Factory
) -> None:
    m = message_factory()
    await store.commit(m)
    proc = Recorder(delay=0.2)
    worker = SpoolWorker(store, proc)
    await worker.start([m.id])
    await asyncio.sleep(0.05)
    await worker.stop(grace=5)
    assert store.pending_ids() == []
