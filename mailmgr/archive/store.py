"""LocalArchive: the local ArchiveSink — durable .eml files plus an SQLite search index.

Owns the on-disk layout under `<DataDirectory>/archives/<archive id>/` and retention. Never
blocks the loop: puts are grouped and stored by one thread per archive (which also runs every
SQLite call); retention's file I/O runs in the default executor, a heavy message's field
extraction in mailmgr.heavy's parse pool. Knows nothing of actions beyond ActionInput.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from mailmgr import heavy, logs
from mailmgr.actions.base import ActionInput
from mailmgr.archive import index
from mailmgr.archive.fields import HeaderFields, extract
from mailmgr.archive.index import ArchiveRow, SearchQuery
from mailmgr.config.models import Archive, Config, LocalStorage
from mailmgr.message import is_message_id

T = TypeVar("T")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_PURGE_BATCH = 500
_PUT_BATCH = 64  # puts stored together: one SQLite commit and one fsync per directory
INDEX_NAME = "index.sqlite3"


class ArchiveClosedError(Exception):
    """put/search/get/purge on an archive that close() has shut down."""


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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durable(path: Path) -> None:
    """mkdir -p, fsyncing the parent of every directory created so the new entries survive."""
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
        _fsync_dir(directory.parent)


@dataclass
class _Put:
    item: ActionInput
    archived_id: str
    relative: str
    future: asyncio.Future[str]
    fields: HeaderFields | None = None  # extracted already (heavy messages), else in the batch


def _consume(fut: asyncio.Future[str]) -> None:
    # A cancelled caller no longer awaits its shielded future: read the outcome so asyncio does
    # not report "exception never retrieved".
    if not fut.cancelled():
        fut.exception()


def _open_for_write(path: Path) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:  # first message of the day, or retention removed the directory
        _makedirs_durable(path.parent)
        return os.open(path, flags, 0o600)


def _write_file(path: Path, data: bytes) -> int:
    """Write `data` in place (no row names the file until it is durable, so no reader sees a
    partial one) and start its writeback; returns the descriptor, still to be fdatasync'd."""
    fd = _open_for_write(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        # Starting writeback of every file of a batch before the first fdatasync lets them
        # share journal commits; it also keeps archived bytes out of the page cache.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except BaseException:
        os.close(fd)
        raise
    return fd


class LocalArchive:
    """One archive with Local storage. `open()` before use (put opens lazily too); `close()`
    at shutdown. Implements mailmgr.actions.base.ArchiveSink."""

    def __init__(
        self, archive: Archive, directory: Path, *, rule_set_arns: Mapping[str, str] | None = None
    ) -> None:
        self.archive = archive
        self.directory = directory
        self.index_path = directory / INDEX_NAME
        self._rule_set_arns = dict(rule_set_arns or {})
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._puts: list[_Put] = []
        self._flusher: asyncio.Task[None] | None = None

    def reconfigure(self, config: Config) -> None:
        """A config reload: the archive's settings (retention) and the rule-set ARNs recorded
        as each row's SourceArn follow the new config; storage stays where it is."""
        self.archive = config.archive(self.archive.id)
        self._rule_set_arns = {rs.id: rs.arn for rs in config.rule_sets}

    @classmethod
    def from_config(cls, config: Config, archive: Archive) -> LocalArchive:
        return cls(
            archive,
            config.server.archive_directory / archive.id,
            rule_set_arns={rs.id: rs.arn for rs in config.rule_sets},
        )

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Create the directory and index (idempotent). Raises OSError / sqlite3.Error."""
        async with self._lock:
            if self._closed:
                raise ArchiveClosedError(self.archive.id)
            if self._conn is not None:
                return
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, _makedirs_durable, self.directory)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix=f"archive-{self.archive.id}"
                )
            self._conn = await loop.run_in_executor(self._executor, index.connect, self.index_path)
            logs.event("archive_opened", archive_id=self.archive.id, path=str(self.directory))

    async def close(self) -> None:
        self._closed = True
        if self._flusher is not None:  # puts already queued still complete
            await asyncio.wait([self._flusher])
        async with self._lock:
            executor, conn = self._executor, self._conn
            self._executor = self._conn = None
            if executor is None:
                return
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(executor, conn.close)
            executor.shutdown(wait=False)

    async def _db(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(connection, *args)` in this archive's database thread."""
        if self._conn is None:
            await self.open()
        executor, conn = self._executor, self._conn
        if executor is None or conn is None:
            raise ArchiveClosedError(self.archive.id)
        return await asyncio.get_running_loop().run_in_executor(executor, fn, conn, *args)

    # ------------------------------------------------------------------ ArchiveSink

    async def put(self, item: ActionInput) -> str:
        """Store `item.content` and index it; return its archived message ID (idempotent).

        Durable when this returns: file fdatasync'd, its directory fsync'd, row committed with
        synchronous=FULL. Concurrent puts are stored as one batch. The file is durable before
        the row is written, so after a crash the row either exists (nothing to do) or not (the
        file is rewritten in place and the row inserted). Cancelling the caller does not stop
        the write."""
        if self._closed:
            raise ArchiveClosedError(self.archive.id)
        if self._conn is None:
            await self.open()
        msg = item.message
        archived_id = archived_message_id(msg.id, item.rule_index, item.action_index)
        day = datetime.fromtimestamp(msg.received_at, UTC)
        relative = f"messages/{day:%Y/%m/%d}/{archived_id}.eml"
        # A heavy message's fields are extracted in the parse pool before it joins a batch: the
        # archive's one database thread then does only I/O, and a batch's light messages never
        # wait behind a heavy one's parsing.
        fields = None
        if heavy.is_heavy(len(item.content)):
            fields = await heavy.run(len(item.content), extract, item.content)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        future.add_done_callback(_consume)
        self._puts.append(_Put(item, archived_id, relative, future, fields))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush(), name=f"archive-{self.archive.id}")
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        try:
            while self._puts:
                batch, self._puts = self._puts[:_PUT_BATCH], self._puts[_PUT_BATCH:]
                try:
                    outcomes = await self._db(self._store_batch, batch)
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

    def _store_batch(
        self, conn: sqlite3.Connection, batch: list[_Put]
    ) -> list[ArchiveRow | Exception | None]:
        """In the database thread: write the new files, fdatasync each, fsync each directory
        once, then insert every row in one transaction. Per put: its new row, None when it
        was already archived, or the error that stopped it."""
        known = index.existing(conn, [p.archived_id for p in batch])
        outcomes: list[ArchiveRow | Exception | None] = []
        unsynced: dict[int, int] = {}  # batch position → descriptor awaiting its fdatasync
        for i, put in enumerate(batch):
            if put.archived_id in known:
                outcomes.append(None)
                continue
            known.add(put.archived_id)  # a duplicate later in this batch is then a no-op
            try:
                row = self._row(put.item, put.archived_id, put.relative, put.fields)
                unsynced[i] = _write_file(self.directory / put.relative, put.item.content)
            except Exception as exc:
                outcomes.append(exc)
                continue
            outcomes.append(row)
        dirs: dict[Path, list[int]] = {}
        for i, fd in unsynced.items():
            try:
                os.fdatasync(fd)
                dirs.setdefault((self.directory / batch[i].relative).parent, []).append(i)
            except OSError as exc:
                outcomes[i] = exc
            finally:
                os.close(fd)
        for directory, members in dirs.items():
            try:
                _fsync_dir(directory)
            except OSError as exc:
                for i in members:
                    outcomes[i] = exc
        index.insert_many(conn, [o for o in outcomes if isinstance(o, ArchiveRow)])
        return outcomes

    def _row(self, item: ActionInput, archived_id: str, relative: str,
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
            path=relative,
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
        return await self._db(index.search, query)

    async def row(self, archived_id: str) -> ArchiveRow | None:
        return await self._db(index.lookup, archived_id)

    async def get(self, archived_id: str) -> bytes | None:
        """The archived bytes, or None when the ID is unknown (or its file is gone)."""
        found = await self._db(index.lookup, archived_id)
        if found is None:
            return None
        return await asyncio.get_running_loop().run_in_executor(
            None, read_message, self.directory, found
        )

    # ------------------------------------------------------------------ retention

    async def purge_expired(self, now: float | None = None) -> int:
        """Delete files, then rows, of messages received more than retention_days before
        `now` (epoch seconds, default: the clock). Returns how many were purged. Files go
        first so a crash leaves at worst a row whose file is gone (purged again next run)."""
        days = self.archive.retention_days
        if days is None:
            return 0
        cutoff = (time.time() if now is None else now) - days * 86400
        loop = asyncio.get_running_loop()
        purged = 0
        while batch := await self._db(index.expired, cutoff, _PURGE_BATCH):
            paths = [self.directory / p for _, p in batch]
            await loop.run_in_executor(None, _unlink_all, self.directory, paths)
            await self._db(index.delete, [a for a, _ in batch])
            purged += len(batch)
        if purged:
            logs.event("archive_purged", archive_id=self.archive.id, count=purged)
        return purged


def read_message(directory: Path, row: ArchiveRow) -> bytes | None:
    try:
        return (directory / row.path).read_bytes()
    except FileNotFoundError:
        return None


def _unlink_all(root: Path, paths: Sequence[Path]) -> None:
    parents: set[Path] = set()
    for path in paths:
        path.unlink(missing_ok=True)
        parents.add(path.parent)
    # Empty day/month/year directories go too; a non-empty one makes rmdir fail, which is fine.
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        directory = parent
        while directory != root and root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                break
            directory = directory.parent


def _epoch(when: datetime | None) -> float | None:
    if when is None:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def local_archives(config: Config) -> dict[str, LocalArchive]:
    """A LocalArchive per configured archive with Local storage, by archive ID (not opened)."""
    return {
        a.id: LocalArchive.from_config(config, a)
        for a in config.archives
        if isinstance(a.storage, LocalStorage)
    }


async def run_retention(archives: Sequence[LocalArchive], interval: float = 3600.0) -> None:
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
