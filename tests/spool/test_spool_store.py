"""SpoolStore: durable round trips, DONE, group commit, cancellation, failed writes, segments."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from mailmgr.errors import SpoolError
from mailmgr.message import InboundMessage, ProcessingState, Verdict, Verdicts
from mailmgr.spool.record import Damage, scan
from mailmgr.spool.store import SpoolStore

Factory = Callable[..., InboundMessage]


def segment_files(directory: Path) -> list[Path]:
    return sorted((directory / "segments").glob("*.seg"))


def assert_clean(directory: Path) -> None:
    for path in segment_files(directory):
        damage = [d for d in scan(path.read_bytes()) if isinstance(d, Damage)]
        assert damage == [], f"{path} holds damaged bytes {damage}"


async def reopen(directory: Path, **kwargs: object) -> tuple[SpoolStore, list[str]]:
    store = SpoolStore(directory, **kwargs)  # type: ignore[arg-type]
    return store, await store.open()


async def test_commit_and_reopen_returns_identical_message_and_latest_state(
    tmp_path: Path, message_factory: Factory
) -> None:
    directory = tmp_path / "spool"
    store = SpoolStore(directory)
    assert await store.open() == []
    messages = [message_factory(size=s) for s in (0, 1, 10 * 1024, 300 * 1024)]
    for m in messages:
        await store.commit(m)
    state1 = ProcessingState(rule_index=1, live=("b@example.org",), attempts=1)
    state2 = ProcessingState(
        verdicts=Verdicts(spf=Verdict.PASS, dkim=Verdict.FAIL, dmarc=Verdict.GRAY),
        rule_index=2,
        action_index=3,
        live=("b@example.org",),
        matched=("b@example.org",),
        added_headers=(("X-A", "ü"),),
        action_data=(("0.1", '{"ok":["b@example.org"]}'),),
        next_attempt_at=1234.5,
    )
    await store.checkpoint(messages[1].id, state1)
    await store.checkpoint(messages[1].id, state2)
    await store.close()

    again, ids = await reopen(directory)
    try:
        assert ids == [m.id for m in messages]
        for m in messages:
            entry = await again.load(m.id)
            assert entry.message == m
            assert entry.message.content == m.content
        assert (await again.load(messages[1].id)).state == state2
        assert (await again.load(messages[0].id)).state == ProcessingState()
        assert again.peek_state(messages[1].id) == state2
    finally:
        await again.close()


async def test_done_messages_do_not_come_back(tmp_path: Path, message_factory: Factory) -> None:
    directory = tmp_path / "spool"
    store = SpoolStore(directory)
    await store.open()
    a, b, c = (message_factory() for _ in range(3))
    for m in (a, b, c):
        await store.commit(m)
    await store.checkpoint(b.id, ProcessingState(rule_index=1))
    await store.finish(b.id)
    await store.finish(b.id)  # idempotent
    assert store.pending_ids() == [a.id, c.id]
    with pytest.raises(KeyError):
        await store.load(b.id)
    with pytest.raises(KeyError):
        await store.checkpoint(b.id, ProcessingState())
    await store.close()

    again, ids = await reopen(directory)
    try:
        assert ids == [a.id, c.id]
        assert again.pending_ids() == [a.id, c.id]
    finally:
        await again.close()


async def test_group_commit_shares_fdatasyncs(store: SpoolStore, message_factory: Factory) -> None:
    messages = [message_factory() for _ in range(200)]
    before = store.stats
    await asyncio.gather(*(store.commit(m) for m in messages))
    after = store.stats
    assert after.records - before.records == 200
    fsyncs = after.fsyncs - before.fsyncs
    assert 1 <= fsyncs <= 20, fsyncs
    assert sorted(store.pending_ids()) == sorted(m.id for m in messages)


async def test_sequential_commits_each_fdatasync(
    store: SpoolStore, message_factory: Factory
) -> None:
    before = store.stats.fsyncs
    for _ in range(5):
        await store.commit(message_factory(size=100))
    assert store.stats.fsyncs - before == 5


async def test_cancelled_caller_still_makes_record_durable(
    tmp_path: Path, message_factory: Factory
) -> None:
    directory = tmp_path / "spool"
    store = SpoolStore(directory)
    await store.open()
    victim, neighbour = message_factory(), message_factory()
    task = asyncio.create_task(store.commit(victim))
    other = asyncio.create_task(store.commit(neighbour))
    await asyncio.sleep(0)  # both are queued for the same batch
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await other
    for _ in range(100):
        if victim.id in store.pending_ids():
            break
        await asyncio.sleep(0.01)
    assert victim.id in store.pending_ids()
    await store.close()

    again, ids = await reopen(directory)
    try:
        assert set(ids) == {victim.id, neighbour.id}
        assert (await again.load(victim.id)).message.content == victim.content
    finally:
        await again.close()


async def test_failed_write_raises_and_leaves_nothing_half_written(
    tmp_path: Path, message_factory: Factory
) -> None:
    directory = tmp_path / "spool"
    store = SpoolStore(directory)
    await store.open()
    good = message_factory()
    await store.commit(good)
    store.fail_next_write()
    doomed = [message_factory() for _ in range(5)]
    results = await asyncio.gather(*(store.commit(m) for m in doomed), return_exceptions=True)
    failed = {m.id for m, r in zip(doomed, results, strict=True) if isinstance(r, SpoolError)}
    assert failed, results
    assert store.stats.failed_batches == 1
    after = message_factory()
    await store.commit(after)  # the spool keeps working after a failed batch
    assert_clean(directory)
    await store.close()

    assert_clean(directory)
    again, ids = await reopen(directory)
    try:
        assert good.id in ids and after.id in ids
        assert failed.isdisjoint(ids)
        assert (await again.load(after.id)).message == after
    finally:
        await again.close()


async def test_commit_after_close_raises(tmp_path: Path, message_factory: Factory) -> None:
    store = SpoolStore(tmp_path / "spool")
    await store.open()
    await store.close()
    with pytest.raises(SpoolError):
        await store.commit(message_factory())


async def test_finished_segments_are_deleted(tmp_path: Path, message_factory: Factory) -> None:
    directory = tmp_path / "spool"
    store = SpoolStore(directory, segment_size=64 * 1024)
    await store.open()
    messages = [message_factory(size=20 * 1024) for _ in range(20)]
    for m in messages:
        await store.commit(m)
    assert len(segment_files(directory)) >= 5
    for m in messages[:-1]:
        await store.checkpoint(m.id, ProcessingState(rule_index=1))
        await store.finish(m.id)
    for _ in range(100):
        if len(segment_files(directory)) <= 2:
            break
        await asyncio.sleep(0.01)
    # Only the segment holding the last message (and the active one) remain.
    assert len(segment_files(directory)) <= 2
    assert store.stats.segments_deleted >= 3
    await store.close()

    again, ids = await reopen(directory, segment_size=64 * 1024)
    try:
        assert ids == [messages[-1].id]
    finally:
        await again.close()


async def test_compaction_frees_segment_pinned_by_retrying_message(
    tmp_path: Path, message_factory: Factory
) -> None:
    directory = tmp_path / "spool"
    store = SpoolStore(directory, segment_size=64 * 1024)
    await store.open()
    retrying = message_factory(size=5000)
    await store.commit(retrying)
    state = ProcessingState(rule_index=1, attempts=3, next_attempt_at=99.0)
    await store.checkpoint(retrying.id, state)
    first = segment_files(directory)[0]
    others = [message_factory(size=20 * 1024) for _ in range(8)]
    for m in others:
        await store.commit(m)
        await store.finish(m.id)
    assert first.exists()
    moved = await store.compact(min_age=0.0)
    assert moved == 1
    for _ in range(100):
        if not first.exists():
            break
        await asyncio.sleep(0.01)
    assert not first.exists()
    entry = await store.load(retrying.id)
    assert entry.message == retrying and entry.state == state
    await store.close()

    again, ids = await reopen(directory, segment_size=64 * 1024)
    try:
        assert ids == [retrying.id]
        entry = await again.load(retrying.id)
        assert entry.message == retrying and entry.state == state
    finally:
        await again.close()


async def test_load_unknown_raises_key_error(store: SpoolStore) -> None:
    with pytest.raises(KeyError):
        await store.load("unknownid1234")
