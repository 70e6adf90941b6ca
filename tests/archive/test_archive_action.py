"""The Archive action: details on success, error mapping on failure."""

from __future__ import annotations

from pathlib import Path

import pytest
from archive_samples import DEFAULT, MakeItem, make_config

from mailmgr.actions.archive import build
from mailmgr.actions.base import Resources
from mailmgr.archive import LocalArchive
from mailmgr.config.models import ArchiveAction, Config
from mailmgr.errors import PermanentActionError, TemporaryActionError


async def test_archive_action_stores_and_reports(
    config: Config, archive: LocalArchive, make_item: MakeItem
) -> None:
    action = build(ArchiveAction(archive_id=DEFAULT.id), Resources(config, {DEFAULT.id: archive}))
    assert action.name == "Archive"
    item = make_item()
    result = await action.run(item)
    archived_id = result.details["archived_message_id"]
    assert result.details["archive_id"] == DEFAULT.id
    assert await archive.get(archived_id) == item.content
    assert result.drop is False and result.replace_with is None
    # A re-run (crash before the spool checkpoint) reports the same archived message.
    assert (await action.run(item)).details["archived_message_id"] == archived_id


async def test_unknown_archive_is_permanent(config: Config, make_item: MakeItem) -> None:
    action = build(ArchiveAction(archive_id="a-missing"), Resources(config, {}))
    with pytest.raises(PermanentActionError):
        await action.run(make_item())


async def test_unwritable_archive_directory_is_temporary(
    tmp_path: Path, make_item: MakeItem
) -> None:
    # DataDirectory is a regular file, so creating archives/<id> under it fails even for root.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    config = make_config(blocker, DEFAULT)
    store = LocalArchive.from_config(config, DEFAULT)
    action = build(ArchiveAction(archive_id=DEFAULT.id), Resources(config, {DEFAULT.id: store}))
    with pytest.raises(TemporaryActionError) as failure:
        await action.run(make_item())
    assert failure.value.code == "NotADirectoryError"
    await store.close()


async def test_message_write_failure_is_temporary_and_retry_succeeds(
    config: Config, archive: LocalArchive, make_item: MakeItem
) -> None:
    action = build(ArchiveAction(archive_id=DEFAULT.id), Resources(config, {DEFAULT.id: archive}))
    messages = archive.directory / "messages"
    messages.write_text("in the way")  # the index opens fine; the message file cannot be written
    item = make_item()
    with pytest.raises(TemporaryActionError):
        await action.run(item)
    assert await archive.search() == []  # no row without its file

    messages.unlink()
    result = await action.run(item)  # the spool's retry
    assert await archive.get(result.details["archived_message_id"]) == item.content


async def test_closed_archive_is_temporary(
    config: Config, archive: LocalArchive, make_item: MakeItem
) -> None:
    action = build(ArchiveAction(archive_id=DEFAULT.id), Resources(config, {DEFAULT.id: archive}))
    await archive.close()
    with pytest.raises(TemporaryActionError):
        await action.run(make_item())
