"""Hostile 06, scheduling side: heavy messages (mailmgr.heavy) never hold more than half the
spool workers, and a heavy message that keeps stopping the process is not restarted forever."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from mailmgr.heavy import HEAVY_BYTES
from mailmgr.message import Envelope, InboundMessage, ProcessingState, SessionFacts, new_message_id
from mailmgr.spool.store import SpoolEntry, SpoolStore
from mailmgr.spool.worker import GIVE_UP_STARTS, MAX_STARTS, Checkpoint, SpoolWorker

SESSION = SessionFacts("inp-1", "main", "192.0.2.7", 40000, "client.example")


def make(size: int) -> InboundMessage:
    head = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: t\r\n\r\n"
    return InboundMessage(new_message_id(), time.time(),
                          Envelope("a@example.com", ("b@example.org",)), SESSION,
                          head + b"x" * max(0, size - len(head)))


async def open_store(path: Path) -> SpoolStore:
    store = SpoolStore(path, fsync=False)
    await store.open()
    return store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SpoolStore]:
    s = await open_store(tmp_path / "spool")
    try:
        yield s
    finally:
        await s.close()


class Gate:
    """Heavy messages block until released; light ones finish at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.heavy_active = 0
        self.max_heavy_active = 0
        self.light_done: dict[str, float] = {}
        self.light_expected = 0
        self.all_light_done = asyncio.Event()

    async def __call__(self, entry: SpoolEntry, checkpoint: Checkpoint) -> ProcessingState:
        if len(entry.message.content) >= HEAVY_BYTES:
            self.heavy_active += 1
            self.max_heavy_active = max(self.max_heavy_active, self.heavy_active)
            try:
                await self.release.wait()
            finally:
                self.heavy_active -= 1
        else:
            self.light_done[entry.message.id] = time.monotonic()
            if len(self.light_done) >= self.light_expected:
                self.all_light_done.set()
        return replace(entry.state, done=True)


async def test_heavy_messages_cannot_fill_the_worker_pool(store: SpoolStore) -> None:
    gate = Gate()
    worker = SpoolWorker(store, gate, concurrency=8, busy_rate=1e9)
    await worker.start([])
    heavy = [make(HEAVY_BYTES + 10) for _ in range(12)]
    for m in heavy:
        await store.commit(m)
        worker.submit(m.id)
    await asyncio.sleep(0.3)  # every worker has had the chance to take a heavy message
    light = [make(2_000) for _ in range(20)]
    gate.light_expected = len(light)
    sent = time.monotonic()
    for m in light:
        await store.commit(m)
        worker.submit(m.id)
    await asyncio.wait_for(gate.all_light_done.wait(), 5)
    assert len(gate.light_done) == len(light)  # while all 12 heavy ones are still blocked
    assert max(gate.light_done.values()) - sent < 2.0
    assert gate.max_heavy_active == 4 and gate.heavy_active == 4
    gate.release.set()
    assert await worker.wait_idle(10)
    await worker.stop(1)
    assert store.pending_ids() == []
    assert gate.max_heavy_active == 4


class Dies:
    """Stands for a process that is killed while it processes a heavy message: the run never
    returns, and the test then drops the worker as a SIGKILL would."""

    def __init__(self) -> None:
        self.starts = 0
        self.started = asyncio.Event()

    async def __call__(self, entry: SpoolEntry, checkpoint: Checkpoint) -> ProcessingState:
        self.starts += 1
        await checkpoint(replace(entry.state, rule_index=1))  # as the pipeline's verdicts step
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.mark.parametrize("size", [HEAVY_BYTES + 10, 5_000])
async def test_a_message_that_keeps_killing_the_process_backs_off_then_is_set_aside(
    tmp_path: Path, size: int
) -> None:
    path = tmp_path / "spool"
    poison = make(size)
    store = await open_store(path)
    await store.commit(poison)
    await store.close()
    now = [time.time()]
    runs = 0
    delayed_runs = 0
    for _ in range(2 * GIVE_UP_STARTS + 2):
        store = await open_store(path)
        pending = store.pending_ids()
        if not pending:
            await store.close()
            break
        processor = Dies()
        worker = SpoolWorker(store, processor, concurrency=2, clock=lambda: now[0])
        await worker.start(pending)
        try:
            await asyncio.wait_for(processor.started.wait(), 1.0)
        except TimeoutError:
            pass
        if processor.starts:
            runs += 1
        else:
            delayed_runs += 1  # held back: not started at once after the restart
        # a SIGKILL: nothing of the worker's shutdown path runs, only the spool survives
        for task in worker._workers + worker._helpers:
            task.cancel()
        await asyncio.gather(*worker._workers, *worker._helpers, return_exceptions=True)
        await store.close()
        now[0] += 3 * 3600  # the next restart comes after any backoff
    assert runs == GIVE_UP_STARTS  # every start counted, then given up
    # each start after MAX_STARTS waited, and one more restart set it aside without a start
    assert delayed_runs == GIVE_UP_STARTS - MAX_STARTS + 1
    store = await open_store(path)
    try:
        assert store.pending_ids() == []  # set aside: finished, not a poison for ever
    finally:
        await store.close()
    # ... and not lost: the accepted bytes and their envelope are in the spool's quarantine
    kept = path / "quarantine" / f"{poison.id}.eml"
    assert kept.read_bytes() == poison.content
    meta = json.loads(kept.with_suffix(".json").read_text())
    assert meta["id"] == poison.id and meta["envelope"]["rcpt_to"] == list(poison.envelope.rcpt_to)
    assert "stopped" in meta["reason"]


class Raises:
    """A processor bug: raises `times` times, then finishes the message."""

    def __init__(self, times: int) -> None:
        self.left = times
        self.calls = 0
        self.done = asyncio.Event()

    async def __call__(self, entry: SpoolEntry, checkpoint: Checkpoint) -> ProcessingState:
        self.calls += 1
        await checkpoint(replace(entry.state, rule_index=1))
        if self.left:
            self.left -= 1
            raise RuntimeError("bug")
        self.done.set()
        return replace(entry.state, done=True)


@pytest.mark.parametrize("size", [HEAVY_BYTES + 10, 5_000])
async def test_exceptions_in_a_living_process_are_not_restart_loop_starts(
    store: SpoolStore, size: int
) -> None:
    processor = Raises(GIVE_UP_STARTS + 2)
    worker = SpoolWorker(store, processor, concurrency=2, crash_backoff=0.001)
    await worker.start([])
    m = make(size)
    await store.commit(m)
    worker.submit(m.id)
    await asyncio.wait_for(processor.done.wait(), 10)
    assert await worker.wait_idle(5)
    await worker.stop(1)
    assert processor.calls == GIVE_UP_STARTS + 3 and store.pending_ids() == []
