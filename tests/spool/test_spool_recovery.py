"""Recovery: torn tails are cut, corrupt records are quarantined, the rest always comes back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailmgr.message import InboundMessage, ProcessingState
from mailmgr.spool.record import Record, encode_message, scan
from mailmgr.spool.store import SpoolStore

LogEvents = Any  # the log_events fixture (tests/spool/conftest.py)

Factory = Callable[..., InboundMessage]


def segment_files(directory: Path) -> list[Path]:
    return sorted((directory / "segments").glob("*.seg"))


def records_of(path: Path) -> list[Record]:
    return [r for r in scan(path.read_bytes()) if isinstance(r, Record)]


async def spool_with(directory: Path, messages: list[InboundMessage], **kw: int) -> None:
    store = SpoolStore(directory, **kw)  # type: ignore[arg-type]
    await store.open()
    for m in messages:
        await store.commit(m)
    await store.close()


TAILS: dict[str, Callable[[bytes], bytes]] = {
    "partial-header": lambda r: r[:11],
    "header-only": lambda r: r[:30],
    "half": lambda r: r[: len(r) // 2],
    "all-but-one-byte": lambda r: r[:-1],
    "full-length-but-zero-pages": lambda r: r[:4096] + b"\x00" * (len(r) - 4096),
}


@pytest.mark.parametrize("tail", TAILS)
async def test_torn_tail_is_truncated_and_earlier_records_survive(
    tmp_path: Path, message_factory: Factory, log_events: LogEvents, tail: str
) -> None:
    directory = tmp_path / "spool"
    messages = [message_factory() for _ in range(4)]
    await spool_with(directory, messages[:3])
    (last,) = segment_files(directory)
    intact = last.stat().st_size
    # A crash while the 4th record was being written: only part of it reached the disk.
    record = encode_message(messages[3])
    with last.open("ab") as f:
        f.write(TAILS[tail](record))

    store = SpoolStore(directory)
    ids = await store.open()
    try:
        assert ids == [m.id for m in messages[:3]]
        for m in messages[:3]:
            assert (await store.load(m.id)).message == m
        torn = log_events.named("spool.torn_tail_truncated")
        assert len(torn) == 1 and torn[0]["file"] == str(last)
        assert not list((directory / "quarantine").iterdir())
        assert last.stat().st_size == torn[0]["offset"] == intact
        # and the spool keeps working after the cut
        extra = message_factory()
        await store.commit(extra)
    finally:
        await store.close()
    again = SpoolStore(directory)
    try:
        assert await again.open() == [*(m.id for m in messages[:3]), extra.id]
    finally:
        await again.close()


async def test_corrupt_middle_record_is_quarantined_and_rest_recovered(
    tmp_path: Path, message_factory: Factory, log_events: LogEvents
) -> None:
    directory = tmp_path / "spool"
    messages = [message_factory() for _ in range(5)]
    await spool_with(directory, messages)
    (segment,) = segment_files(directory)
    recs = records_of(segment)
    victim = recs[2]
    data = bytearray(segment.read_bytes())
    data[victim.offset + victim.length - 100] ^= 0xFF  # flip a content byte of record 3
    segment.write_bytes(bytes(data))

    store = SpoolStore(directory)
    ids = await store.open()
    try:
        expected = [m.id for i, m in enumerate(messages) if i != 2]
        assert ids == expected
        for i in (0, 1, 3, 4):
            assert (await store.load(messages[i].id)).message == messages[i]
        copies = list((directory / "quarantine").iterdir())
        assert len(copies) == 1 and copies[0].name.startswith(segment.name)
        assert copies[0].read_bytes() == bytes(data)
        warnings = log_events.named("spool.corrupt_record")
        assert warnings and warnings[0]["file"] == str(segment)
        assert warnings[0]["offset"] == victim.offset
        assert log_events.named("spool.segment_quarantined")
    finally:
        await store.close()


async def test_garbage_header_resynchronises_on_magic(
    tmp_path: Path, message_factory: Factory, log_events: LogEvents
) -> None:
    directory = tmp_path / "spool"
    messages = [message_factory(size=2000) for _ in range(4)]
    await spool_with(directory, messages)
    (segment,) = segment_files(directory)
    recs = records_of(segment)
    data = bytearray(segment.read_bytes())
    data[recs[1].offset : recs[1].offset + 8] = b"\x00" * 8  # wipe magic and length fields
    segment.write_bytes(bytes(data))

    store = SpoolStore(directory)
    try:
        ids = await store.open()
        assert ids == [messages[0].id, messages[2].id, messages[3].id]
        assert len(list((directory / "quarantine").iterdir())) == 1
    finally:
        await store.close()


async def test_damage_at_end_of_older_segment_is_quarantined_not_cut(
    tmp_path: Path, message_factory: Factory, log_events: LogEvents
) -> None:
    directory = tmp_path / "spool"
    first = [message_factory() for _ in range(2)]
    await spool_with(directory, first)
    later = message_factory()
    await spool_with(directory, [later])  # a new run starts a new segment
    old, _new = segment_files(directory)
    with old.open("ab") as f:
        f.write(b"MMS1" + b"\x07" * 30)

    store = SpoolStore(directory)
    try:
        assert await store.open() == [*(m.id for m in first), later.id]
        assert not log_events.named("spool.torn_tail_truncated")
        assert len(list((directory / "quarantine").iterdir())) == 1
    finally:
        await store.close()


async def test_quarantined_segment_is_evacuated(
    tmp_path: Path, message_factory: Factory, log_events: LogEvents
) -> None:
    directory = tmp_path / "spool"
    messages = [message_factory() for _ in range(3)]
    store = SpoolStore(directory)
    await store.open()
    for m in messages:
        await store.commit(m)
    state = ProcessingState(rule_index=2, attempts=1)
    await store.checkpoint(messages[0].id, state)
    await store.close()
    (segment,) = segment_files(directory)
    victim = records_of(segment)[1]
    data = bytearray(segment.read_bytes())
    data[victim.offset + victim.length - 1] ^= 0x01
    segment.write_bytes(bytes(data))

    store = SpoolStore(directory)
    try:
        assert await store.open() == [messages[0].id, messages[2].id]
        await store.compact()  # quarantined segments move regardless of age
        assert store.stats.messages_compacted == 2
        for _ in range(100):
            if not segment.exists():
                break
            await asyncio.sleep(0.01)
        assert not segment.exists()
    finally:
        await store.close()
    # Once evacuated, the next start finds no damage and quarantines nothing more.
    store = SpoolStore(directory)
    try:
        assert await store.open() == [messages[0].id, messages[2].id]
        assert (await store.load(messages[0].id)).state == state
        assert len(list((directory / "quarantine").iterdir())) == 1
        assert not segment.exists()
    finally:
        await store.close()


async def test_junk_files_and_empty_segments_do_not_break_recovery(
    tmp_path: Path, message_factory: Factory, log_events: LogEvents
) -> None:
    directory = tmp_path / "spool"
    m = message_factory()
    await spool_with(directory, [m])
    (directory / "segments" / "notes.txt").write_text("hello")
    (directory / "segments" / "000000000099.seg").write_bytes(b"")
    (directory / "segments" / "000000000050.seg").write_bytes(b"\x00" * 4096)
    store = SpoolStore(directory)
    try:
        assert await store.open() == [m.id]
        assert log_events.named("spool.unknown_file_ignored")
        await store.commit(message_factory())
    finally:
        await store.close()
