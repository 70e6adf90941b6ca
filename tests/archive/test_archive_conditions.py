"""AWS archive filter conditions (Include / Unless, CONTAINS any value, HAS_ATTACHMENTS) and
keyset paging in the archive index: the SQLite index, and the PostgreSQL one answering alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from archive_samples import (
    DEFAULT,
    PLAIN,
    MakeItem,
    make_config,
    multipart_alternative,
    with_attachment,
)
from psycopg_pool import AsyncConnectionPool

from mailmgr.archive import MessageArchive
from mailmgr.archive.index import Condition, SearchQuery
from mailmgr.config.models import SharedStateSettings
from mailmgr.state.postgres import migrate, open_pool
from tests.state.postgres_support import PostgresInstance

T0 = 1_795_000_000.0
NO_SUBJECT = b"From: nobody@sender.test\r\nTo: grace@example.test\r\n\r\nno subject\r\n"


async def fill(store: MessageArchive, make_item: MakeItem) -> dict[str, str]:
    """report (PLAIN), invoice (attachment), alt (multipart/alternative), bare (no Subject)."""
    return {v: k for k, v in {
        "report": await store.put(make_item(PLAIN, received_at=T0)),
        "invoice": await store.put(make_item(with_attachment(), received_at=T0 + 60,
                                             mail_from="billing@vendor.test",
                                             rcpt_to=("ap@example.test",))),
        "alt": await store.put(make_item(multipart_alternative(), received_at=T0 + 120)),
        "bare": await store.put(make_item(NO_SUBJECT, received_at=T0 + 120)),
    }.items()}


def subject(*values: str) -> Condition:
    return Condition("SUBJECT", values=values)


QUERIES: list[tuple[SearchQuery, set[str]]] = [
    (SearchQuery(include=(subject("invoice", "RÉPORT"),)), {"invoice", "report"}),  # any value
    (SearchQuery(include=(subject("invoice"), Condition("TO", values=("dave@",)))), {"invoice"}),
    (SearchQuery(include=(subject("invoice"), Condition("TO", values=("alice",)))), set()),
    (SearchQuery(include=(Condition("CC", values=("bob@",)),)), {"report"}),
    (SearchQuery(include=(Condition("FROM", values=("jörg",)),)), {"report"}),
    (SearchQuery(include=(Condition("ENVELOPE_FROM", values=("billing@",)),)), {"invoice"}),
    (SearchQuery(include=(Condition("ENVELOPE_TO", values=("hidden@",)),)),
     {"report", "alt", "bare"}),
    (SearchQuery(include=(Condition("HAS_ATTACHMENTS", flag=True),)), {"invoice"}),
    (SearchQuery(include=(Condition("HAS_ATTACHMENTS", flag=False),)),
     {"report", "alt", "bare"}),
    # Unless: any condition excludes; an absent header (bare has no Subject) never matches,
    # so it is not excluded by a Subject condition.
    (SearchQuery(unless=(subject("invoice"), Condition("CC", values=("bob",)))), {"alt", "bare"}),
    (SearchQuery(unless=(subject("e"),)), {"bare"}),
    (SearchQuery(include=(Condition("HAS_ATTACHMENTS", flag=False),),
                 unless=(subject("plain", "attach", "no attach"),), since=T0 + 1), {"bare"}),
]


def test_a_condition_must_name_a_known_attribute() -> None:
    with pytest.raises(ValueError):
        Condition("BODY", values=("x",))
    with pytest.raises(ValueError):
        Condition("SUBJECT", flag=True)
    with pytest.raises(ValueError):
        Condition("HAS_ATTACHMENTS", values=("x",))


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[MessageArchive]:
    store = MessageArchive.from_config(make_config(tmp_path / "embedded", DEFAULT), DEFAULT)
    yield store
    await store.close()


@pytest.mark.parametrize(("query", "expected"), QUERIES, ids=[str(i) for i in range(len(QUERIES))])
async def test_conditions_in_the_sqlite_index(local: MessageArchive, make_item: MakeItem,
                                              query: SearchQuery, expected: set[str]) -> None:
    names = await fill(local, make_item)
    assert {names[r.archived_message_id] for r in await local.query(query)} == expected


async def pages(store: MessageArchive, query: SearchQuery) -> list[list[str]]:
    """Every page of `query`, following the keyset cursor."""
    out: list[list[str]] = []
    cursor = None
    while rows := await store.query(replace(query, before=cursor)):
        out.append([r.archived_message_id for r in rows])
        cursor = (rows[-1].received_timestamp, rows[-1].archived_message_id)
    return out


async def test_keyset_pages_cover_every_row_once_even_with_equal_times(
        local: MessageArchive, make_item: MakeItem) -> None:
    names = await fill(local, make_item)  # alt and bare share one received time
    got = await pages(local, SearchQuery(limit=1))
    assert [len(p) for p in got] == [1, 1, 1, 1]
    flat = [names[i] for p in got for i in p]
    assert flat[2:] == ["invoice", "report"] and set(flat[:2]) == {"alt", "bare"}
    assert [r.archived_message_id for r in await local.query(SearchQuery())] == \
        [i for p in got for i in p]


@pytest.fixture
async def shared(tmp_path: Path, postgres: PostgresInstance
                 ) -> AsyncIterator[MessageArchive]:
    settings = SharedStateSettings(dsn=postgres.fresh_database(), pool_size=2)
    pool: AsyncConnectionPool = await open_pool(settings)
    await migrate(pool)
    config = make_config(tmp_path / "replica", DEFAULT)
    config = replace(config, server=replace(config.server, shared_state=settings))
    store = MessageArchive.from_config(config, DEFAULT, pool=pool)
    yield store
    await store.close()
    await pool.close()


async def test_postgresql_index_answers_every_condition_alike(
        shared: MessageArchive, local: MessageArchive, make_item: MakeItem) -> None:
    pg_names, sqlite_names = await fill(shared, make_item), await fill(local, make_item)
    for query, expected in QUERIES:
        in_pg = [pg_names[r.archived_message_id] for r in await shared.query(query)]
        in_sqlite = [sqlite_names[r.archived_message_id] for r in await local.query(query)]
        assert set(in_pg) == expected, query
        assert len(in_pg) == len(in_sqlite)
    got = await pages(shared, SearchQuery(limit=3))
    assert [len(p) for p in got] == [3, 1]
