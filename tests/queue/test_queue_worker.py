"""The worker's operator commands on a real spool: retry_now moves a scheduled message to now,
delete refuses a message in flight, and a deleted message (scheduled or queued) never runs and
never comes back after recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from mailmgr.message import Envelope, InboundMessage, ProcessingState, SessionFacts, new_message_id
from mailmgr.queue.service import QueueService, UnknownMessage
from mailmgr.spool.store import SpoolEntry, SpoolStore
from mailmgr.spool.worker import Checkpoint, InFlight, SpoolWorker

SESSION = SessionFacts(ingress_point_id="inp-1", ingress_point_name="main", peer_ip="192.0.2.7")


def _message() -> InboundMessage:
    return InboundMessage(new_message_id(), time.time(),
                          Envelope("a@example.com", ("b@example.org",)), SESSION,
                          b"Subject: t\r\n\r\nhello\r\n")


class Processor:
    """Fails every run temporarily (next attempt in 60 s) after `hold` seconds, unless told
    to succeed; records each run."""

    def __init__(self, hold: float = 0.0) -> None:
        self.runs: list[str] = []
        self.hold = hold
        self.succeed = False
        self.started = asyncio.Event()

    async def __call__(self, entry: SpoolEntry, checkpoint: Checkpoint) -> ProcessingState:
        self.runs.append(entry.message.id)
        self.started.set()
        if self.hold:
            await asyncio.sleep(self.hold)
        if self.succeed:
            return replace(entry.state, done=True)
        return replace(entry.state, attempts=entry.state.attempts + 1,
                       next_attempt_at=time.time() + 60, last_error="451 4.4.1 later")


async def _until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_retry_now_and_delete_of_a_scheduled_message(tmp_path: Path) -> None:
    store = SpoolStore(tmp_path / "spool")
    await store.open()
    proc = Processor()
    worker = SpoolWorker(store, proc, concurrency=2)
    await worker.start([])
    service = QueueService(store, worker)
    a, b = _message(), _message()
    for m in (a, b):
        await store.commit(m)
        worker.submit(m.id)
    await _until(lambda: worker.status(a.id)[0] == worker.status(b.id)[0] == "scheduled")
    assert proc.runs.count(a.id) == 1

    assert await service.retry(a.id) == "scheduled"
    await _until(lambda: proc.runs.count(a.id) == 2)
    await _until(lambda: store.peek_state(a.id).attempts == 2)
    assert proc.runs.count(b.id) == 1
    [row] = [r for r in await service.list("retrying") if r.id == a.id]
    assert row.attempts == 2 and row.last_error == "451 4.4.1 later"
    assert row.status == "scheduled" and row.next_attempt_at is not None

    await service.delete(b.id)
    assert not store.is_pending(b.id)
    with pytest.raises(UnknownMessage):
        await service.delete(b.id)
    with pytest.raises(UnknownMessage):
        await service.retry(b.id)
    assert await service.retry_all() == 1  # only `a` is left to move
    await _until(lambda: proc.runs.count(a.id) == 3)
    await worker.stop(1)
    await store.close()
    assert proc.runs.count(b.id) == 1  # its first run only: deleted while scheduled

    reopened = SpoolStore(tmp_path / "spool")
    assert await reopened.open() == [a.id]  # the deleted message does not come back
    await reopened.close()


async def test_delete_refuses_in_flight_and_a_queued_message_never_starts(tmp_path: Path
                                                                          ) -> None:
    store = SpoolStore(tmp_path / "spool")
    await store.open()
    proc = Processor(hold=0.5)
    proc.succeed = True
    worker = SpoolWorker(store, proc, concurrency=1)
    await worker.start([])
    service = QueueService(store, worker)
    running, waiting = _message(), _message()
    for m in (running, waiting):
        await store.commit(m)
        worker.submit(m.id)
    await proc.started.wait()
    assert worker.status(running.id)[0] == "in-flight"
    assert worker.status(waiting.id)[0] == "queued"
    with pytest.raises(InFlight):
        await service.delete(running.id)
    await service.delete(waiting.id)  # queued behind the running one: finished unprocessed
    assert await worker.wait_idle(5)
    assert proc.runs == [running.id]
    assert store.pending_ids() == []
    await worker.stop(1)
    await store.close()
