"""The PostgreSQL foundation against a real server: pool, migrations applied once even when two
processes' pools race, `Server.SharedState` parsing, an unreachable server."""

from __future__ import annotations

import asyncio

import pytest

from mailmgr.config.models import SharedStateSettings
from mailmgr.state.postgres import Migration, SharedStateError, migrate, open_pool
from tests.state.postgres_support import PostgresInstance

STEPS = [
    Migration(1, "table a", "CREATE TABLE a (id integer)"),
    Migration(2, "table b", "CREATE TABLE b (id integer)"),
]


async def test_migrations_apply_once_under_concurrency(postgres: PostgresInstance) -> None:
    dsn = postgres.fresh_database()
    pools = [await open_pool(SharedStateSettings(dsn=dsn, pool_size=2)) for _ in range(4)]
    try:
        versions = await asyncio.gather(*(migrate(p, STEPS) for p in pools))
        assert versions == [2, 2, 2, 2]
        assert await migrate(pools[0], [*STEPS, Migration(3, "c", "CREATE TABLE c (x int)")]) == 3
    finally:
        for pool in pools:
            await pool.close()
    rows = postgres.psql("SELECT version, description FROM mailmgr_schema ORDER BY version",
                         database=dsn.rsplit("/", 1)[1])
    assert rows.splitlines() == ["1|table a", "2|table b", "3|c"]


async def test_unordered_migrations_are_refused(postgres: PostgresInstance) -> None:
    pool = await open_pool(SharedStateSettings(dsn=postgres.fresh_database()))
    try:
        with pytest.raises(ValueError, match="ascend"):
            await migrate(pool, [STEPS[1], STEPS[0]])
    finally:
        await pool.close()


async def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    settings = SharedStateSettings(dsn="postgresql://u:s3cret@127.0.0.1:1/x?connect_timeout=1")
    with pytest.raises(SharedStateError) as raised:
        await open_pool(settings, connect_wait=1.0)
    assert "s3cret" not in str(raised.value) and "cannot connect" in str(raised.value)
    assert "s3cret" not in repr(settings)
