"""Concurrent puts are stored in batches: every one durable, indexed once, and each answered."""

from __future__ import annotations

import asyncio

from archive_samples import PLAIN, MakeItem

from mailmgr.archive import LocalArchive


async def test_concurrent_puts_are_all_stored_and_indexed(
    archive: LocalArchive, make_item: MakeItem
) -> None:
    items = [make_item(PLAIN + f"n{i}\r\n".encode()) for i in range(150)]
    ids = await asyncio.wait_for(asyncio.gather(*(archive.put(i) for i in items)), 30)
    assert len(set(ids)) == 150
    for item, archived_id in zip(items, ids, strict=True):
        assert await archive.get(archived_id) == item.content
    assert len(await archive.search(limit=1000)) == 150


async def test_duplicate_puts_in_one_batch_store_one_row(
    archive: LocalArchive, make_item: MakeItem
) -> None:
    item = make_item()
    first, second, third = await asyncio.wait_for(
        asyncio.gather(archive.put(item), archive.put(item), archive.put(item)), 30
    )
    assert first == second == third
    assert [r.archived_message_id for r in await archive.search()] == [first]
    assert await archive.put(item) == first  # and later ones too


async def test_a_cancelled_put_is_still_stored(archive: LocalArchive, make_item: MakeItem) -> None:
    item = make_item()
    task = asyncio.ensure_future(archive.put(item))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await archive.close()  # waits for puts already queued
    reopened = LocalArchive(archive.archive, archive.directory)
    await reopened.open()
    try:
        rows = await reopened.search()
        assert [r.message_id for r in rows] == [item.message.id]
    finally:
        await reopened.close()
