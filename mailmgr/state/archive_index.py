"""`PgArchiveIndex`: the archive index in PostgreSQL (`Server.SharedState`), one table for every
archive of every replica, with the search fields and matching rules of the SQLite index.

Inserts are idempotent (ON CONFLICT DO NOTHING on archived_message_id). Any database failure
raises SharedStateError, which the Archive action turns into a temporary failure (the spool
retries), so an outage never blocks ingest. Schema: migration 1 in mailmgr.state.postgres.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import astuple
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from mailmgr.archive.index import ArchiveRow, SearchQuery, where_terms
from mailmgr.state.archive_schema import TABLE
from mailmgr.state.postgres import SharedStateError

CALL_TIMEOUT = 5.0  # seconds to wait for a pooled connection before failing the call
# Whole-call bound: a database that stops answering (a dropped network path, not a refused
# connection) must not hold a spool worker; the cancelled connection is discarded by the pool.
QUERY_TIMEOUT = 30.0

_COLUMNS = (
    "archived_message_id, message_id, rule_index, action_index, received_timestamp, date, "
    "to_header, from_header, cc_header, subject, message_id_header, has_attachments, "
    "received_headers, in_reply_to, x_mailer, x_original_mailer, x_priority, ingress_point_id, "
    "sender_hostname, sender_ip_address, envelope_helo, envelope_from, envelope_to, "
    "rule_set_id, source_arn, path, size"
)
_SELECT = f"SELECT {_COLUMNS} FROM {TABLE}"
_INSERT = (
    f"INSERT INTO {TABLE} (archive_id, location, {_COLUMNS}) VALUES "
    f"({', '.join(['%s'] * (_COLUMNS.count(',') + 3))})"
    " ON CONFLICT (archived_message_id) DO NOTHING"
)
# strpos on lower(): a case-insensitive substring test where % and _ are plain characters
# (the SQLite index uses Python casefold; both fold ASCII and the common accented letters).
_CONTAINS = "strpos(lower({column}), lower(%s)) > 0"


def _values(row: ArchiveRow) -> list[Any]:
    values = list(astuple(row))
    values[12] = json.dumps(list(row.received_headers), ensure_ascii=False)
    values[22] = json.dumps(list(row.envelope_to), ensure_ascii=False)
    return values


def _to_row(values: Sequence[Any]) -> ArchiveRow:
    v = list(values)
    v[11] = bool(v[11])
    v[12] = tuple(json.loads(v[12]))
    v[22] = tuple(json.loads(v[22]))
    return ArchiveRow(*v)


def _failed(exc: Exception) -> SharedStateError:
    # psycopg messages name the server, not the DSN's password; keep them short anyway.
    return SharedStateError(f"archive index: PostgreSQL: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": "))


class PgArchiveIndex:
    """The rows of archive `archive_id` in the shared table. `location` is recorded with each
    row inserted here (where its body is: `s3:<bucket>` or `local:<host>:<directory>`)."""

    def __init__(self, pool: AsyncConnectionPool, archive_id: str, location: str,
                 *, timeout: float = CALL_TIMEOUT) -> None:
        self._pool = pool
        self.archive_id = archive_id
        self.location = location
        self._timeout = timeout

    async def open(self) -> None:
        return None  # the pool is the app's; migrations ran when it opened

    async def close(self) -> None:
        return None

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            async with (asyncio.timeout(self._timeout + QUERY_TIMEOUT),
                        self._pool.connection(timeout=self._timeout) as conn):
                cursor = await conn.execute(sql, params)  # type: ignore[arg-type]  # constant SQL
                return await cursor.fetchall()
        except (psycopg.Error, PoolTimeout, OSError, TimeoutError) as exc:
            raise _failed(exc) from exc

    async def existing(self, archived_ids: Sequence[str]) -> set[str]:
        if not archived_ids:
            return set()
        rows = await self._fetch(
            f"SELECT archived_message_id FROM {TABLE} WHERE archived_message_id = ANY(%s)",
            [list(archived_ids)])
        return {str(r[0]) for r in rows}

    async def insert_many(self, rows: Sequence[ArchiveRow]) -> None:
        if not rows:
            return
        params = [[self.archive_id, self.location, *_values(r)] for r in rows]
        try:
            async with (asyncio.timeout(self._timeout + QUERY_TIMEOUT),
                        self._pool.connection(timeout=self._timeout) as conn,
                        conn.transaction(), conn.cursor() as cursor):
                await cursor.executemany(_INSERT, params)  # type: ignore[arg-type]
        except (psycopg.Error, PoolTimeout, OSError, TimeoutError) as exc:
            raise _failed(exc) from exc

    async def search(self, query: SearchQuery) -> list[ArchiveRow]:
        """Rows of this archive matching every filter, newest first (index.search's rules)."""
        terms, values = where_terms(query, lambda column: _CONTAINS.format(column=column), "%s")
        where, params = ["archive_id = %s", *terms], [self.archive_id, *values]
        sql = (f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY received_timestamp DESC, "
               "archived_message_id DESC LIMIT %s")
        return [_to_row(r) for r in await self._fetch(sql, [*params, max(0, query.limit)])]

    async def lookup(self, archived_id: str) -> ArchiveRow | None:
        found = await self.lookup_with_location(archived_id)
        return found[0] if found else None

    async def lookup_with_location(self, archived_id: str) -> tuple[ArchiveRow, str] | None:
        """The row and where its body is, or None when this archive has no such row."""
        rows = await self._fetch(
            f"SELECT {_COLUMNS}, location FROM {TABLE} WHERE archive_id = %s"
            " AND archived_message_id = %s", [self.archive_id, archived_id])
        return (_to_row(rows[0][:-1]), str(rows[0][-1])) if rows else None

    async def expired(self, cutoff: float, limit: int, location: str) -> list[tuple[str, str]]:
        rows = await self._fetch(
            f"SELECT archived_message_id, path FROM {TABLE} WHERE archive_id = %s AND "
            "location = %s AND received_timestamp < %s ORDER BY received_timestamp LIMIT %s",
            [self.archive_id, location, cutoff, limit])
        return [(str(a), str(p)) for a, p in rows]

    async def delete(self, archived_ids: Sequence[str]) -> None:
        if archived_ids:
            await self._fetch(
                f"DELETE FROM {TABLE} WHERE archive_id = %s AND archived_message_id = ANY(%s)"
                " RETURNING archived_message_id", [self.archive_id, list(archived_ids)])
