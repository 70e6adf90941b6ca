"""The PostgreSQL connection pool (psycopg 3, bounded) and the versioned schema migrations every
process applies at start-up. The only module that opens PostgreSQL connections.

Migrations are a numbered list of SQL scripts, applied in order inside one transaction each under
an advisory lock, so replicas starting together apply each one exactly once; the applied version
is in `mailmgr_schema`. A migration, once released, is never edited: a change is a new entry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from mailmgr import logs
from mailmgr.config.models import SharedStateSettings
from mailmgr.errors import MailmgrError
from mailmgr.state.archive_schema import SCHEMA as ARCHIVE_INDEX_SCHEMA

# pg_advisory_xact_lock key: "mailmgr" as a number, so other applications' locks do not collide.
_MIGRATION_LOCK = 0x6D61696C6D6772
CONNECT_TIMEOUT = 10.0  # seconds to wait for a pooled connection


class SharedStateError(MailmgrError):
    """PostgreSQL cannot be reached or refused an operation (a temporary failure for callers
    on the message path: the spool retries)."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


# The whole history, in order (the table `mailmgr_schema` itself is made by migrate()).
# Version 1: the archive index; version 2: the configuration documents.
MIGRATIONS: list[Migration] = [
    # --- version 1: the archive index (mailmgr/state/archive_index.py) ---
    Migration(1, "archive index", ARCHIVE_INDEX_SCHEMA),
    # --- version 2: the configuration documents (mailmgr/state/config_store.py) ---
    Migration(2, "shared configuration documents", """
        CREATE TABLE mailmgr_config_documents (
            version bigint PRIMARY KEY,
            sha256 text NOT NULL,
            document text NOT NULL,
            pushed_by text NOT NULL,
            pushed_at timestamptz NOT NULL DEFAULT now()
        )"""),
    # --- version 3: the Mail Manager API's metadata (mailmgr/state/api_store.py) ---
    Migration(3, "Mail Manager API metadata", """
        CREATE TABLE mailmgr_api_meta (
            name text PRIMARY KEY,
            value text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )"""),
]


async def open_pool(settings: SharedStateSettings, *, name: str = "mailmgr",
                    connect_wait: float = CONNECT_TIMEOUT) -> AsyncConnectionPool:
    """A bounded pool (`settings.pool_size` connections), opened and checked within `connect_wait`
    seconds; raises SharedStateError (without the DSN, which may hold a password) when it
    cannot connect."""
    # The driver's own warnings (every failed connection attempt, as plain text on stderr) would
    # reach a terminal or the log unformatted, and libpq may quote part of the DSN in them.
    logging.getLogger("psycopg").setLevel(logging.CRITICAL)
    pool = AsyncConnectionPool(
        settings.dsn, min_size=1, max_size=settings.pool_size, open=False, name=name,
        timeout=connect_wait, kwargs={"autocommit": True, "application_name": "mailmgr"},
    )
    try:
        await pool.open(wait=True, timeout=connect_wait)
    except Exception as exc:
        await pool.close()
        reason = await _connect_failure(settings.dsn, connect_wait) or type(exc).__name__
        raise SharedStateError(f"cannot connect to PostgreSQL: {reason}") from None
    return pool


async def _connect_failure(dsn: str, wait: float) -> str | None:
    """Why one direct connection fails (the pool only says PoolTimeout), with every secret of
    the DSN removed: libpq's messages name host and port, but a parse error quotes a token of
    the string, which may be the password."""
    try:
        secrets = [v for k, v in conninfo_to_dict(dsn).items() if k == "password" and v]
    except Exception:
        return "the connection string cannot be parsed"
    try:
        async with asyncio.timeout(wait):
            conn = await AsyncConnection.connect(dsn, connect_timeout=max(1, int(wait)))
        await conn.close()
    except Exception as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        text = "; ".join(lines) or type(exc).__name__
        for secret in [dsn, *secrets]:
            text = text.replace(str(secret), "<redacted>")
        return text[:300]
    return None


async def migrate(pool: AsyncConnectionPool, migrations: Sequence[Migration] | None = None
                  ) -> int:
    """Apply the migrations not yet applied; returns the schema version. Safe to run from many
    processes at once (advisory lock)."""
    wanted = list(MIGRATIONS if migrations is None else migrations)
    versions = [m.version for m in wanted]
    if versions != sorted(set(versions)):
        raise ValueError(f"migration versions must ascend without repeats: {versions}")
    async with pool.connection() as conn:
        return await _migrate(conn, wanted)


async def _migrate(conn: AsyncConnection, migrations: list[Migration]) -> int:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS mailmgr_schema (version integer PRIMARY KEY, "
            "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM mailmgr_schema")
        row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        for migration in migrations:
            if migration.version <= current:
                continue
            await conn.execute(migration.sql)  # type: ignore[arg-type]  # our constant SQL
            await conn.execute(
                "INSERT INTO mailmgr_schema (version, description) VALUES (%s, %s)",
                (migration.version, migration.description))
            logs.event("state.migrated", version=migration.version,
                       description=migration.description)
            current = migration.version
        return current
