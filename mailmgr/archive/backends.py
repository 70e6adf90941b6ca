"""The two seams of an archive: `ArchiveStore` (where bodies live: local files | S3) and
`ArchiveIndex` (where search rows live: SQLite | PostgreSQL), both chosen by config.

A backend is its own module implementing one of these protocols plus one line in
mailmgr.archive.registry; the archive (mailmgr.archive.store) composes one of each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mailmgr.archive.index import ArchiveRow, SearchQuery


@dataclass(frozen=True)
class Body:
    """One message body to store: `key` is what the index row's `path` records (a path
    relative to the archive directory, or an S3 object key)."""

    key: str
    content: bytes


class ArchiveStore(Protocol):
    """Where archived bytes live. Writes are idempotent per key (a retry re-writes the same
    key) and durable when `write_many` returns without an error for that body."""

    location: str  # e.g. "local:<host>:<directory>" or "s3:<bucket>", recorded in shared indexes

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def key_for(self, archived_id: str, received_at: float) -> str:
        """The key a new body gets (epoch seconds `received_at`)."""
        ...

    async def write_many(self, bodies: Sequence[Body]) -> list[Exception | None]:
        """Store every body; per body None (durable) or the error that stopped it (an
        ActionError, OSError…), never raising for one body's failure."""
        ...

    async def read(self, key: str) -> bytes | None:
        """The body, or None when it is gone. Raises OSError / ActionError when unreadable."""
        ...

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Delete these bodies; an already-missing one is not an error."""
        ...


class ArchiveIndex(Protocol):
    """The search rows of one archive. Inserts are idempotent on ArchivedMessageId."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def existing(self, archived_ids: Sequence[str]) -> set[str]: ...

    async def insert_many(self, rows: Sequence[ArchiveRow]) -> None:
        """Insert every row not yet indexed, all or none (one transaction)."""
        ...

    async def search(self, query: SearchQuery) -> list[ArchiveRow]:
        """Newest first; matching rules of mailmgr.archive.index.search."""
        ...

    async def lookup(self, archived_id: str) -> ArchiveRow | None: ...

    async def expired(self, cutoff: float, limit: int, location: str) -> list[tuple[str, str]]:
        """Up to `limit` (archived ID, key) pairs received before `cutoff` whose body is at
        `location` (a shared index holds other replicas' local bodies too), oldest first."""
        ...

    async def delete(self, archived_ids: Sequence[str]) -> None: ...
