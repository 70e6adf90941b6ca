"""The async half of `mailmgr archive search/get`: the shared PostgreSQL index and S3 bodies.

Each function opens what it needs (a small pool, AWS clients) for one command and closes it;
failures arrive as SharedStateError (the index) or ActionError (S3), which the commands print.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg_pool import AsyncConnectionPool

from mailmgr.archive.index import ArchiveRow, SearchQuery
from mailmgr.archive.s3_store import S3Store
from mailmgr.aws.clients import AwsClients, AwsSettings
from mailmgr.config.models import Archive, Config, S3Storage, SharedStateSettings
from mailmgr.state.archive_index import PgArchiveIndex
from mailmgr.state.postgres import open_pool

CLI_TIMEOUT = 10.0


async def _pool(settings: SharedStateSettings) -> AsyncConnectionPool:
    return await open_pool(settings, name="mailmgr-cli", connect_wait=CLI_TIMEOUT)


async def search(config: Config, archives: Sequence[Archive], query: SearchQuery
                 ) -> list[tuple[Archive, ArchiveRow]]:
    """Every matching row of these archives in the shared index (each archive's newest
    `query.limit`). Raises SharedStateError."""
    assert config.server.shared_state is not None
    pool = await _pool(config.server.shared_state)
    try:
        found: list[tuple[Archive, ArchiveRow]] = []
        for archive in archives:
            index = PgArchiveIndex(pool, archive.id, "", timeout=CLI_TIMEOUT)
            found += [(archive, row) for row in await index.search(query)]
        return found
    finally:
        await pool.close()


async def lookup(config: Config, archives: Sequence[Archive], archived_id: str
                 ) -> tuple[Archive, ArchiveRow, str] | None:
    """The first of these archives whose shared index has `archived_id`: (archive, row,
    location of its body). Raises SharedStateError."""
    assert config.server.shared_state is not None
    pool = await _pool(config.server.shared_state)
    try:
        for archive in archives:
            index = PgArchiveIndex(pool, archive.id, "", timeout=CLI_TIMEOUT)
            found = await index.lookup_with_location(archived_id)
            if found is not None:
                return archive, found[0], found[1]
        return None
    finally:
        await pool.close()


async def read_s3(config: Config, archive: Archive, key: str) -> bytes | None:
    """The body at `key` of an S3-stored archive, None when the object is gone. Raises
    ActionError (classified S3 failure)."""
    assert isinstance(archive.storage, S3Storage)
    clients = AwsClients(AwsSettings.from_server(config.server))
    try:
        store = S3Store(archive, archive.storage, clients)
        return await store.read(key)
    finally:
        await clients.close()



