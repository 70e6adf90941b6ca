"""Which `ArchiveStore` and `ArchiveIndex` an archive gets: one line per backend.

Stores are chosen by the archive's `Storage` (Local | S3); the index is PostgreSQL when
`Server.SharedState` is set (the app passes its pool), else the archive's own SQLite file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from mailmgr.archive.backends import ArchiveIndex, ArchiveStore
from mailmgr.archive.local import INDEX_NAME, ArchiveThread, LocalFileStore, SqliteIndex
from mailmgr.archive.s3_store import S3Store
from mailmgr.aws.clients import AwsClients
from mailmgr.config.models import Archive, LocalStorage, S3Storage


@dataclass(frozen=True)
class Backing:
    """What a backend may need: the archive, its local directory (index file, local bodies),
    its I/O thread, the shared AWS clients and the shared-state pool (None when embedded)."""

    archive: Archive
    directory: Path
    thread: ArchiveThread
    aws: AwsClients | None = None
    pool: AsyncConnectionPool | None = None


def _s3(b: Backing) -> ArchiveStore:
    assert isinstance(b.archive.storage, S3Storage)
    return S3Store(b.archive, b.archive.storage, b.aws)


STORES: dict[type, Callable[[Backing], ArchiveStore]] = {
    LocalStorage: lambda b: LocalFileStore(b.directory, b.thread),
    S3Storage: _s3,
}


def build_store(b: Backing) -> ArchiveStore:
    return STORES[type(b.archive.storage)](b)


def build_index(b: Backing, store: ArchiveStore) -> ArchiveIndex:
    if b.pool is not None:
        from mailmgr.state.archive_index import PgArchiveIndex

        return PgArchiveIndex(b.pool, b.archive.id, store.location)
    return SqliteIndex(b.directory / INDEX_NAME, b.thread)
