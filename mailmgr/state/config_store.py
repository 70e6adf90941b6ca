"""The shared configuration documents in PostgreSQL: `push` stores a new version (and NOTIFYs
the replicas), `active` reads the latest. Table `mailmgr_config_documents` (migration 2).

A document is stored as its JSON text (key order kept, for `config show`) with the SHA-256 of
its canonical form; the highest version is the active one. Versions are never rewritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from mailmgr.config.shared import document_hash
from mailmgr.state.postgres import SharedStateError

CHANNEL = "mailmgr_config"  # NOTIFY payload: the new version number
QUERY_TIMEOUT = 5.0  # seconds to wait for a pooled connection


@dataclass(frozen=True)
class StoredConfig:
    """One stored document. `pushed_at` is timezone-aware; `pushed_by` is `user@host`."""

    version: int
    sha256: str
    pushed_at: datetime
    pushed_by: str
    document: dict[str, Any]


@dataclass(frozen=True)
class PushResult:
    """`created` is False when the active document already had the same hash (nothing
    stored); `stored` is then that active document."""

    stored: StoredConfig
    created: bool


def _row(row: tuple[Any, ...]) -> StoredConfig:
    version, sha256, document, pushed_by, pushed_at = row
    return StoredConfig(int(version), str(sha256), pushed_at, str(pushed_by), json.loads(document))


_SELECT = ("SELECT version, sha256, document, pushed_by, pushed_at "
           "FROM mailmgr_config_documents ORDER BY version DESC LIMIT 1")


async def push(pool: AsyncConnectionPool, document: dict[str, Any], pushed_by: str
               ) -> PushResult:
    """Store `document` as the next version unless it equals the active one, and NOTIFY
    CHANNEL (delivered at commit). Concurrent pushes are serialised by a table lock. Raises
    SharedStateError when PostgreSQL fails."""
    digest = document_hash(document)
    text = json.dumps(document, ensure_ascii=False, default=str)
    try:
        async with pool.connection(timeout=QUERY_TIMEOUT) as conn, conn.transaction():
            await conn.execute(
                "LOCK TABLE mailmgr_config_documents IN SHARE ROW EXCLUSIVE MODE")
            cursor = await conn.execute(_SELECT)
            current = await cursor.fetchone()
            if current is not None and current[1] == digest:
                return PushResult(_row(current), created=False)
            version = 1 if current is None else int(current[0]) + 1
            cursor = await conn.execute(
                "INSERT INTO mailmgr_config_documents (version, sha256, document, pushed_by) "
                "VALUES (%s, %s, %s, %s) RETURNING version, sha256, document, pushed_by, "
                "pushed_at", (version, digest, text, pushed_by))
            row = await cursor.fetchone()
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(version)))
    except (psycopg.Error, OSError) as exc:
        raise SharedStateError(f"PostgreSQL: {type(exc).__name__}") from None
    assert row is not None
    return PushResult(_row(row), created=True)


async def active(pool: AsyncConnectionPool) -> StoredConfig | None:
    """The latest document, None when nothing was pushed. Raises SharedStateError."""
    try:
        async with pool.connection(timeout=QUERY_TIMEOUT) as conn:
            cursor = await conn.execute(_SELECT)
            row = await cursor.fetchone()
    except (psycopg.Error, OSError) as exc:
        raise SharedStateError(f"PostgreSQL: {type(exc).__name__}") from None
    return None if row is None else _row(row)


async def active_version(pool: AsyncConnectionPool) -> int:
    """The latest version number, 0 when nothing was pushed. Raises SharedStateError."""
    try:
        async with pool.connection(timeout=QUERY_TIMEOUT) as conn:
            cursor = await conn.execute(
                "SELECT coalesce(max(version), 0) FROM mailmgr_config_documents")
            row = await cursor.fetchone()
    except (psycopg.Error, OSError) as exc:
        raise SharedStateError(f"PostgreSQL: {type(exc).__name__}") from None
    return int(row[0]) if row else 0
