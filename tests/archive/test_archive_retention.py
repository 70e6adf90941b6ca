"""Retention: purge_expired and run_retention delete old files and rows, keep the rest."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time

from archive_samples import MakeItem

from mailmgr.archive import LocalArchive, run_retention

DAY = 86400.0


def ids_in_index(archive: LocalArchive) -> set[str]:
    with sqlite3.connect(archive.index_path) as conn:
        return {r[0] for r in conn.execute("SELECT archived_message_id FROM messages")}


async def test_purge_removes_only_expired(archive: LocalArchive, make_item: MakeItem) -> None:
    now = 1_800_000_000.0
    assert archive.archive.retention_days == 90
    old = make_item(received_at=now - 91 * DAY)
    older = make_item(received_at=now - 400 * DAY)
    recent = make_item(received_at=now - 89 * DAY)
    old_id, older_id, recent_id = [await archive.put(i) for i in (old, older, recent)]
    old_path = (await archive.row(old_id)).path  # type: ignore[union-attr]

    assert await archive.purge_expired(now) == 2

    assert ids_in_index(archive) == {recent_id}
    assert await archive.get(old_id) is None and await archive.get(older_id) is None
    assert await archive.get(recent_id) == recent.content
    remaining = sorted(p.name for p in archive.directory.rglob("*.eml"))
    assert remaining == [f"{recent_id}.eml"]
    # The emptied day directory is removed too; the archive root stays.
    assert not (archive.directory / old_path).parent.exists()
    assert archive.index_path.exists()
    assert await archive.purge_expired(now) == 0


async def test_permanent_retention_keeps_everything(
    forever: LocalArchive, make_item: MakeItem
) -> None:
    archived_id = await forever.put(make_item(received_at=1.0))
    assert forever.archive.retention_days is None
    assert await forever.purge_expired(time.time()) == 0
    assert ids_in_index(forever) == {archived_id}


async def test_purge_survives_a_file_already_gone(
    archive: LocalArchive, make_item: MakeItem
) -> None:
    archived_id = await archive.put(make_item(received_at=1000.0))
    for path in archive.directory.rglob("*.eml"):
        path.unlink()
    assert await archive.purge_expired() == 1
    assert ids_in_index(archive) == set()
    assert await archive.row(archived_id) is None


async def test_run_retention_purges_at_start(
    archive: LocalArchive, forever: LocalArchive, make_item: MakeItem
) -> None:
    gone = await archive.put(make_item(received_at=1000.0))
    kept = await archive.put(make_item(received_at=time.time()))
    permanent = await forever.put(make_item(received_at=1000.0))

    task = asyncio.create_task(run_retention([archive, forever], interval=3600))
    for _ in range(200):
        if gone not in ids_in_index(archive):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert ids_in_index(archive) == {kept}
    assert ids_in_index(forever) == {permanent}
