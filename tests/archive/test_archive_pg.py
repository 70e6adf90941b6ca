"""The PostgreSQL archive index against a real server: every search field with the SQLite
index's semantics, two replicas sharing one index, an outage mid-way (temporary, then archived
once), idempotent inserts, retention that purges only this replica's local bodies."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from archive_samples import (
    DEFAULT,
    MakeItem,
    make_config,
    multipart_alternative,
    with_attachment,
)
from psycopg_pool import AsyncConnectionPool

from mailmgr.actions.archive import build
from mailmgr.actions.base import Resources
from mailmgr.archive import MessageArchive
from mailmgr.config.models import ArchiveAction, Config, SharedStateSettings
from mailmgr.errors import TemporaryActionError
from mailmgr.state.archive_index import PgArchiveIndex
from mailmgr.state.postgres import migrate, open_pool
from tests.state.postgres_support import BINDIR, PostgresInstance, _run_as, postgres_instance

DAY = 86400.0
T0 = 1_795_000_000.0


def shared_config(data_dir: Path, dsn: str) -> Config:
    config = make_config(data_dir, DEFAULT)
    settings = SharedStateSettings(dsn=dsn, pool_size=2)
    return replace(config, server=replace(config.server, shared_state=settings))


async def pool_for(dsn: str) -> AsyncConnectionPool:
    pool = await open_pool(SharedStateSettings(dsn=dsn, pool_size=2))
    await migrate(pool)
    return pool


@pytest.fixture
async def dsn(postgres: PostgresInstance) -> str:
    return postgres.fresh_database()


@pytest.fixture
async def replicas(tmp_path: Path, dsn: str) -> AsyncIterator[list[MessageArchive]]:
    """Two archives with Local storage in two data directories, one PostgreSQL index."""
    pools = [await pool_for(dsn) for _ in range(2)]
    stores = [MessageArchive.from_config(shared_config(tmp_path / f"r{i}", dsn), DEFAULT,
                                         pool=pool) for i, pool in enumerate(pools)]
    for store in stores:
        await store.open()
    yield stores
    for store in stores:
        await store.close()
    for pool in pools:
        await pool.close()


async def fill(store: MessageArchive, make_item: MakeItem) -> dict[str, str]:
    return {
        "report": await store.put(make_item(received_at=T0)),
        "invoice": await store.put(make_item(with_attachment(), received_at=T0 + 60,
                                             mail_from="billing@vendor.test",
                                             rcpt_to=("ap@example.test",))),
        "alt": await store.put(make_item(multipart_alternative(), received_at=T0 + 120,
                                         rcpt_to=("50%_off@example.test",))),
    }


QUERIES: list[dict[str, object]] = [
    {},
    {"from_": "JÖRG"},                 # From header, case-insensitive beyond ASCII
    {"from_": "billing@vendor"},       # envelope sender
    {"to": "élise"},                   # To header
    {"to": "bob@"},                    # Cc header
    {"to": "hidden@example.test"},     # envelope recipient only
    {"to": "50%_off"},                 # % and _ are plain characters
    {"to": "5_%"},
    {"subject": "invoice"},
    {"subject": "réport IS"},
    {"subject": "nothing like it"},
    {"since": datetime.fromtimestamp(T0 + 60, UTC)},   # inclusive
    {"until": datetime.fromtimestamp(T0 + 60, UTC)},   # exclusive
    {"from_": "sender.test", "since": datetime.fromtimestamp(T0 + 1, UTC)},
    {"limit": 2},
    {"limit": 0},
]


@pytest.mark.parametrize("query", QUERIES, ids=[str(q) for q in QUERIES])
async def test_every_search_field_matches_the_sqlite_index(
    tmp_path: Path, replicas: list[MessageArchive], make_item: MakeItem,
    query: dict[str, object],
) -> None:
    local = MessageArchive.from_config(make_config(tmp_path / "embedded", DEFAULT), DEFAULT)
    try:
        shared_ids, local_ids = await fill(replicas[0], make_item), await fill(local, make_item)
        names = {v: k for ids in (shared_ids, local_ids) for k, v in ids.items()}
        in_pg = [names[r.archived_message_id] for r in await replicas[0].search(**query)]
        in_sqlite = [names[r.archived_message_id] for r in await local.search(**query)]
    finally:
        await local.close()
    assert in_pg == in_sqlite
    if query == {}:
        assert in_pg == ["alt", "invoice", "report"]  # newest first


async def test_rows_round_trip_every_field(
    tmp_path: Path, replicas: list[MessageArchive], make_item: MakeItem
) -> None:
    local = MessageArchive.from_config(make_config(tmp_path / "embedded", DEFAULT), DEFAULT)
    try:
        item = make_item(with_attachment())
        archived_id = await replicas[0].put(item)
        assert await local.put(item) == archived_id
        pg_row, sqlite_row = await replicas[0].row(archived_id), await local.row(archived_id)
    finally:
        await local.close()
    assert pg_row is not None and pg_row == sqlite_row
    assert pg_row.has_attachments and pg_row.envelope_to == item.message.envelope.rcpt_to


async def test_two_replicas_see_each_others_rows(
    dsn: str, replicas: list[MessageArchive], make_item: MakeItem, postgres: PostgresInstance
) -> None:
    first = await replicas[0].put(make_item(received_at=T0))
    second = await replicas[1].put(make_item(received_at=T0 + 1))
    for store in replicas:
        assert [r.archived_message_id for r in await store.search()] == [second, first]
    # Each body stays on the replica that archived it: the other finds the row, not the file.
    assert await replicas[0].get(first) is not None and await replicas[0].get(second) is None
    # A second put of the same message (a retry) inserts nothing.
    item = make_item(received_at=T0 + 2)
    assert await replicas[0].put(item) == await replicas[1].put(item)
    database = dsn.rsplit("/", 1)[1]
    assert postgres.psql("SELECT count(*) FROM archive_messages", database=database) == "3"


async def test_retention_purges_only_this_replicas_local_bodies(
    replicas: list[MessageArchive], make_item: MakeItem
) -> None:
    now = T0 + 400 * DAY
    mine = await replicas[0].put(make_item(received_at=T0))
    theirs = await replicas[1].put(make_item(received_at=T0))
    assert await replicas[0].purge_expired(now) == 1
    assert [r.archived_message_id for r in await replicas[1].search()] == [theirs]
    assert await replicas[0].get(mine) is None and not list(replicas[0].directory.rglob("*.eml"))
    assert await replicas[1].purge_expired(now) == 1
    assert await replicas[1].search() == []


def _restart(instance: PostgresInstance) -> subprocess.Popen[bytes]:
    """Start PostgreSQL again on the same data directory and port (as postgres_instance does)."""
    assert BINDIR is not None
    prefix, _, _ = _run_as()
    with open(instance.directory / "postgres.log", "ab") as log:  # the child keeps its copy
        return subprocess.Popen(
            [*prefix, str(BINDIR / "postgres"), "-D", str(instance.directory / "data"), "-p",
             str(instance.port), "-k", str(instance.directory), "-c",
             "listen_addresses=127.0.0.1", "-c", "fsync=off"], stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(instance: PostgresInstance) -> None:
    """Fast shutdown (SIGINT to the postmaster: open sessions are cut, as in an outage)."""
    pid = int((instance.directory / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while (instance.directory / "data" / "postmaster.pid").exists():
        if time.monotonic() > deadline:
            raise AssertionError("PostgreSQL did not stop")
        time.sleep(0.05)
    instance.proc.wait(15)


def _wait_ready(instance: PostgresInstance) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            instance.psql("SELECT 1")
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def test_database_outage_is_temporary_then_archived_once(
    tmp_path: Path, make_item: MakeItem
) -> None:
    if BINDIR is None:
        pytest.skip("PostgreSQL is not installed")
    with postgres_instance() as instance:
        pool = await pool_for(instance.dsn)
        config = shared_config(tmp_path, instance.dsn)
        store = MessageArchive.from_config(config, DEFAULT, pool=pool)
        # A short wait for a connection, so the test does not sit out the default.
        assert isinstance(store.index, PgArchiveIndex)
        store.index = PgArchiveIndex(pool, DEFAULT.id, store.store.location, timeout=1.0)
        action = build(ArchiveAction(archive_id=DEFAULT.id),
                       Resources(config, {DEFAULT.id: store}))
        restarted: subprocess.Popen[bytes] | None = None
        try:
            before = await action.run(make_item(received_at=T0))
            _stop(instance)
            item = make_item(received_at=T0 + 1)
            with pytest.raises(TemporaryActionError) as info:
                await action.run(item)
            assert info.value.code == "SharedStateError"
            restarted = _restart(instance)
            _wait_ready(instance)
            for _ in range(20):  # the pool replaces its broken connections
                try:
                    result = await action.run(item)
                    break
                except TemporaryActionError:
                    continue
            else:
                raise AssertionError("still failing after PostgreSQL came back")
            ids = [r.archived_message_id for r in await store.search()]
            assert ids == [result.details["archived_message_id"],
                           before.details["archived_message_id"]]
            assert await store.get(ids[0]) == item.content
        finally:
            await store.close()
            await pool.close()
            if restarted is not None:
                restarted.terminate()
                restarted.wait(15)
