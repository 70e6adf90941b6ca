"""The archive: an `ArchiveStore` (bodies) and an `ArchiveIndex` (search rows) composed, with
put batching, idempotence and retention. Implements mailmgr.actions.base.ArchiveSink.

Puts are grouped: a batch stores its bodies, then indexes its rows in one transaction, so a
crash leaves at worst a body without a row (re-put on retry). With the embedded backends (local
files + SQLite) a whole batch runs in one hop to the archive's thread, as before the seams.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from mailmgr import heavy, logs
from mailmgr.actions.base import ActionInput
from mailmgr.archive import registry
from mailmgr.archive.backends import ArchiveIndex, ArchiveStore, Body
from mailmgr.archive.fields import HeaderFields, extract
from mailmgr.archive.index import ArchiveRow, SearchQuery
from mailmgr.archive.local import (
    INDEX_NAME,
    ArchiveClosedError,
    ArchiveThread,
    LocalFileStore,
    SqliteIndex,
)
from mailmgr.archive.s3_store import S3Store
from mailmgr.aws.clients import AwsClients
from mailmgr.config.models import Archive, Config
from mailmgr.message import is_message_id

__all__ = ["INDEX_NAME", "ArchiveClosedError", "LocalArchive", "MessageArchive",
           "archived_message_id", "build_archives", "local_archives", "run_retention"]

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_PURGE_BATCH = 500
_PUT_BATCH = 64  # puts stored together: one index commit (and one fsync per local directory)


def archived_message_id(message_id: str, rule_index: int, action_index: int) -> str:
    """The archived message ID: `<message id>r<rule index>a<action index>`, e.g.
    `0k8x2…r2a1`. Stable per (message, rule, action), lower-case alphanumeric, and sorts by
    arrival like message IDs. A message ID that is not lower-case alphanumeric (never produced
    by mailmgr) is replaced by 24 base36 digits of its SHA-256."""
    if not is_message_id(message_id):
        n = int.from_bytes(hashlib.sha256(message_id.encode()).digest()[:16], "big")
        digits = []
        for _ in range(24):
            n, r = divmod(n, 36)
            digits.append(_ALPHABET[r])
        message_id = "".join(digits)
    return f"{message_id}r{rule_index}a{action_index}"


@dataclass
class _Put:
    item: ActionInput
    archived_id: str
    key: str
    future: asyncio.Future[str]
    fields: HeaderFields | None = None  # extracted already (heavy messages), else in the batch


def _consume(fut: asyncio.Future[str]) -> None:
    # A cancelled caller no longer awaits its shielded future: read the outcome so asyncio does
    # not report "exception never retrieved".
    if not fut.cancelled():
        fut.exception()




class MessageArchive:
    """One configured archive: `store` + `index` (chosen by mailmgr.archive.registry). `open()`
    before use (put opens lazily too); `close()` at shutdown. `directory` is the archive's
    local directory (its SQLite index and local bodies)."""

    def __init__(
        self,
        archive: Archive,
        directory: Path,
        *,
        rule_set_arns: Mapping[str, str] | None = None,
        aws: AwsClients | None = None,
        pool: AsyncConnectionPool | None = None,
    ) -> None:
        self.archive = archive
        self.directory = directory
        self.index_path = directory / INDEX_NAME
        self._rule_set_arns = dict(rule_set_arns or {})
        self._thread = ArchiveThread(f"archive-{archive.id}")
        backing = registry.Backing(archive, directory, self._thread, aws, pool)
        self.store: ArchiveStore = registry.build_store(backing)
        self.index: ArchiveIndex = registry.build_index(backing, self.store)
        # Local files + SQLite on one thread: a batch is one hop there (the default hot path).
        self._fused = isinstance(self.store, LocalFileStore) and isinstance(self.index, SqliteIndex)
        self._lock = asyncio.Lock()
        self._opened = False
        self._closed = False
        self._puts: list[_Put] = []
        self._flusher: asyncio.Task[None] | None = None

    def reconfigure(self, config: Config) -> None:
        """A config reload: the archive's settings (retention) and the rule-set ARNs recorded
        as each row's SourceArn follow the new config; storage stays where it is."""
        self.archive = config.archive(self.archive.id)
        self._rule_set_arns = {rs.id: rs.arn for rs in config.rule_sets}

    @classmethod
    def from_config(cls, config: Config, archive: Archive, *, aws: AwsClients | None = None,
                    pool: AsyncConnectionPool | None = None) -> MessageArchive:
        return cls(
            archive,
            config.server.archive_directory / archive.id,
            rule_set_arns={rs.id: rs.arn for rs in config.rule_sets},
            aws=aws,
            pool=pool,
        )

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Open the store and index (idempotent). Raises OSError / sqlite3.Error /
        SharedStateError."""
        async with self._lock:
            if self._closed:
                raise ArchiveClosedError(self.archive.id)
            if self._opened:
                return
            await self.store.open()
            await self.index.open()
            self._opened = True
            logs.event("archive_opened", archive_id=self.archive.id, path=str(self.directory),
                       storage=self.store.location.split(":", 1)[0],
                       index=type(self.index).__name__)

    async def check_retention(self) -> bool | None:
        """For S3 storage: whether a bucket lifecycle rule enforces the retention (logs
        `archive.lifecycle_missing` when not); None for other stores or when unknown."""
        if isinstance(self.store, S3Store):
            return await self.store.check_lifecycle(self.archive.retention_days)
        return None

    async def report_retention(self) -> None:
        """check_retention for start-up and reload tasks: logs, never raises."""
        try:
            await self.check_retention()
        except Exception as exc:  # a report, never a reason to stop
            logs.warning("archive.lifecycle_unchecked", archive_id=self.archive.id,
                         error=str(exc))

    async def close(self) -> None:
        self._closed = True
        if self._flusher is not None:  # puts already queued still complete
            await asyncio.wait([self._flusher])
        async with self._lock:
            if self._opened:
                self._opened = False
                await self.index.close()
                await self.store.close()
            self._thread.shutdown()

    async def _ready(self) -> ArchiveIndex:
        """The index, opening the archive on first use; ArchiveClosedError after close()."""
        if self._closed:
            raise ArchiveClosedError(self.archive.id)
        if not self._opened:
            await self.open()
        return self.index

    # ------------------------------------------------------------------ ArchiveSink

    async def put(self, item: ActionInput) -> str:
        """Store `item.content` and index it; return its archived message ID (idempotent).

        Durable when this returns: the body stored (local: fdatasync'd, directory fsync'd;
        S3: PutObject answered), then the row committed. After a crash the row either exists
        (nothing to do) or not (the body is re-put at the same key and the row inserted).
        Cancelling the caller does not stop the write."""
        if self._closed:
            raise ArchiveClosedError(self.archive.id)
        if not self._opened:
            await self.open()
        msg = item.message
        archived_id = archived_message_id(msg.id, item.rule_index, item.action_index)
        key = self.store.key_for(archived_id, msg.received_at)
        # A heavy message's fields are extracted in the parse pool before it joins a batch: the
        # archive's one thread then does only I/O, and a batch's light messages never wait
        # behind a heavy one's parsing.
        fields = None
        if heavy.is_heavy(len(item.content)):
            fields = await heavy.run(len(item.content), extract, item.content)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        future.add_done_callback(_consume)
        self._puts.append(_Put(item, archived_id, key, future, fields))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush(), name=f"archive-{self.archive.id}")
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        try:
            while self._puts:
                batch, self._puts = self._puts[:_PUT_BATCH], self._puts[_PUT_BATCH:]
                try:
                    if self._fused:
                        outcomes = await self._thread.run(self._store_batch_fused, batch)
                    else:
                        outcomes = await self._store_batch(batch)
                except Exception as exc:  # the index transaction failed: nothing is indexed
                    outcomes = [exc] * len(batch)
                for put, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, Exception):
                        put.future.set_exception(outcome)
                        continue
                    if outcome is not None:
                        logs.event(
                            "archive_stored",
                            archive_id=self.archive.id,
                            archived_message_id=put.archived_id,
                            message_id=put.item.message.id,
                            size=outcome.size,
                        )
                    put.future.set_result(put.archived_id)
        finally:
            self._flusher = None

    def _prepare(self, batch: list[_Put], known: set[str]) -> list[ArchiveRow | Exception | None]:
        """Per put: its new row, None when already archived, or the error building it."""
        outcomes: list[ArchiveRow | Exception | None] = []
        for put in batch:
            if put.archived_id in known:
                outcomes.append(None)
                continue
            known.add(put.archived_id)  # a duplicate later in this batch is then a no-op
            try:
                outcomes.append(self._row(put.item, put.archived_id, put.key, put.fields))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    @staticmethod
    def _bodies(batch: list[_Put], outcomes: list[ArchiveRow | Exception | None]
                ) -> tuple[list[int], list[Body]]:
        todo = [i for i, o in enumerate(outcomes) if isinstance(o, ArchiveRow)]
        return todo, [Body(batch[i].key, batch[i].item.content) for i in todo]

    def _store_batch_fused(self, batch: list[_Put]) -> list[ArchiveRow | Exception | None]:
        """In the archive thread (local files + SQLite): write the new files, fdatasync each,
        fsync each directory once, then insert every row in one transaction."""
        assert isinstance(self.store, LocalFileStore) and isinstance(self.index, SqliteIndex)
        outcomes = self._prepare(batch, self.index.existing_blocking([p.archived_id
                                                                        for p in batch]))
        todo, bodies = self._bodies(batch, outcomes)
        for i, error in zip(todo, self.store.write_many_blocking(bodies), strict=True):
            if error is not None:
                outcomes[i] = error
        self.index.insert_many_blocking([o for o in outcomes if isinstance(o, ArchiveRow)])
        return outcomes

    async def _store_batch(self, batch: list[_Put]) -> list[ArchiveRow | Exception | None]:
        """Any other store/index pair: the same steps, each through its backend."""
        known = await self.index.existing([p.archived_id for p in batch])
        outcomes = await self._thread.run(self._prepare, batch, known)  # header parsing
        todo, bodies = self._bodies(batch, outcomes)
        for i, error in zip(todo, await self.store.write_many(bodies), strict=True):
            if error is not None:
                outcomes[i] = error
        await self.index.insert_many([o for o in outcomes if isinstance(o, ArchiveRow)])
        return outcomes

    def _row(self, item: ActionInput, archived_id: str, key: str,
             fields: HeaderFields | None = None) -> ArchiveRow:
        headers = fields if fields is not None else extract(item.content)
        msg = item.message
        return ArchiveRow(
            archived_message_id=archived_id,
            message_id=msg.id,
            rule_index=item.rule_index,
            action_index=item.action_index,
            received_timestamp=msg.received_at,
            date=headers.date,
            to=headers.to,
            from_=headers.from_,
            cc=headers.cc,
            subject=headers.subject,
            message_id_header=headers.message_id,
            has_attachments=headers.has_attachments,
            received_headers=headers.received,
            in_reply_to=headers.in_reply_to,
            x_mailer=headers.x_mailer,
            x_original_mailer=headers.x_original_mailer,
            x_priority=headers.x_priority,
            ingress_point_id=msg.session.ingress_point_id,
            # No reverse DNS is done: the client's HELO/EHLO name stands in for its host name.
            sender_hostname=msg.session.helo or None,
            sender_ip_address=msg.session.peer_ip,
            envelope_helo=msg.session.helo,
            envelope_from=msg.envelope.mail_from,
            envelope_to=msg.envelope.rcpt_to,
            rule_set_id=item.rule_set_id,
            source_arn=self._rule_set_arns.get(item.rule_set_id),
            path=key,
            size=len(item.content),
        )

    # ------------------------------------------------------------------ search

    async def search(
        self,
        from_: str | None = None,
        to: str | None = None,
        subject: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[ArchiveRow]:
        """Newest first; see index.search for the matching rules. Naive datetimes are UTC."""
        query = SearchQuery(
            from_=from_,
            to=to,
            subject=subject,
            since=_epoch(since),
            until=_epoch(until),
            limit=limit,
        )
        return await (await self._ready()).search(query)

    async def query(self, query: SearchQuery) -> list[ArchiveRow]:
        """Rows matching `query` (AWS filter conditions, keyset paging), newest first."""
        return await (await self._ready()).search(query)

    async def row(self, archived_id: str) -> ArchiveRow | None:
        return await (await self._ready()).lookup(archived_id)

    async def get(self, archived_id: str) -> bytes | None:
        """The archived bytes, or None when the ID is unknown (or its body is gone, or is a
        local body another replica holds)."""
        found = await (await self._ready()).lookup(archived_id)
        if found is None:
            return None
        return await self.store.read(found.path)

    # ------------------------------------------------------------------ retention

    async def purge_expired(self, now: float | None = None) -> int:
        """Delete bodies, then rows, of messages received more than retention_days before
        `now` (epoch seconds, default: the clock). Returns how many were purged. Bodies go
        first so a crash leaves at worst a row whose body is gone (purged again next run).
        With a shared index, only rows whose body is in this archive's store (S3, or this
        replica's directory) are purged here."""
        days = self.archive.retention_days
        if days is None:
            return 0
        index = await self._ready()
        cutoff = (time.time() if now is None else now) - days * 86400
        purged = 0
        while batch := await index.expired(cutoff, _PURGE_BATCH, self.store.location):
            await self.store.delete_many([key for _, key in batch])
            await index.delete([a for a, _ in batch])
            purged += len(batch)
        if purged:
            logs.event("archive_purged", archive_id=self.archive.id, count=purged)
        return purged


LocalArchive = MessageArchive  # the name before the storage/index seams


def _epoch(when: datetime | None) -> float | None:
    if when is None:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def build_archives(config: Config, *, aws: AwsClients | None = None,
                   pool: AsyncConnectionPool | None = None) -> dict[str, MessageArchive]:
    """An archive per configured archive, by archive ID (not opened). S3 storage needs `aws`;
    `pool` (Server.SharedState) puts every archive's index in PostgreSQL."""
    return {a.id: MessageArchive.from_config(config, a, aws=aws, pool=pool)
            for a in config.archives}


local_archives = build_archives


async def run_retention(archives: Sequence[MessageArchive], interval: float = 3600.0) -> None:
    """Purge every archive now and then every `interval` seconds until cancelled. A failing
    archive is logged and retried next round; it never stops the others."""
    while True:
        for archive in archives:
            try:
                await archive.purge_expired()
            except ArchiveClosedError:
                continue
            except Exception as exc:  # retention must outlive a bad disk day
                logs.error("archive_purge_failed", archive_id=archive.archive.id, error=str(exc))
        await asyncio.sleep(interval)
