"""The embedded backends: `LocalFileStore` (durable .eml files under the archive directory) and
`SqliteIndex` (mailmgr.archive.index in a file), sharing one thread per archive.

Both expose blocking `*_blocking` methods besides the async protocol ones, so the archive can
store a whole batch (files, fdatasync, one SQLite commit) in one hop to that thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from mailmgr.archive import index
from mailmgr.archive.backends import Body
from mailmgr.archive.index import ArchiveRow, SearchQuery

T = TypeVar("T")
INDEX_NAME = "index.sqlite3"


class ArchiveClosedError(Exception):
    """put/search/get/purge on an archive that close() has shut down."""


class ArchiveThread:
    """One worker thread per archive: every SQLite call and local file write runs there."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: Path) -> None:
    """mkdir -p, fsyncing the parent of every directory created so the new entries survive."""
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
        fsync_dir(directory.parent)


def _open_for_write(path: Path) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:  # first message of the day, or retention removed the directory
        makedirs_durable(path.parent)
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


def read_message(directory: Path, key: str) -> bytes | None:
    try:
        return (directory / key).read_bytes()
    except FileNotFoundError:
        return None


def _unlink_all(root: Path, keys: Sequence[str]) -> None:
    parents: set[Path] = set()
    for key in keys:
        path = root / key
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


def local_location(directory: Path) -> str:
    """`local:<host name>:<absolute directory>`: which replica holds a local body."""
    return f"local:{socket.gethostname()}:{directory.resolve()}"


class LocalFileStore:
    """Bodies as `messages/YYYY/MM/DD/<archived id>.eml` under `directory`."""

    def __init__(self, directory: Path, thread: ArchiveThread) -> None:
        self.directory = directory
        self.thread = thread
        self.location = local_location(directory)

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, makedirs_durable, self.directory)

    async def close(self) -> None:
        return None

    def key_for(self, archived_id: str, received_at: float) -> str:
        day = datetime.fromtimestamp(received_at, UTC)
        return f"messages/{day:%Y/%m/%d}/{archived_id}.eml"

    def write_many_blocking(self, bodies: Sequence[Body]) -> list[Exception | None]:
        """Write every file, fdatasync each, then fsync each directory once."""
        outcomes: list[Exception | None] = [None] * len(bodies)
        unsynced: dict[int, int] = {}
        for i, body in enumerate(bodies):
            try:
                unsynced[i] = _write_file(self.directory / body.key, body.content)
            except Exception as exc:
                outcomes[i] = exc
        dirs: dict[Path, list[int]] = {}
        for i, fd in unsynced.items():
            try:
                os.fdatasync(fd)
                dirs.setdefault((self.directory / bodies[i].key).parent, []).append(i)
            except OSError as exc:
                outcomes[i] = exc
            finally:
                os.close(fd)
        for directory, members in dirs.items():
            try:
                fsync_dir(directory)
            except OSError as exc:
                for i in members:
                    outcomes[i] = exc
        return outcomes

    async def write_many(self, bodies: Sequence[Body]) -> list[Exception | None]:
        return await self.thread.run(self.write_many_blocking, bodies)

    async def read(self, key: str) -> bytes | None:
        return await asyncio.get_running_loop().run_in_executor(
            None, read_message, self.directory, key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, _unlink_all, self.directory, list(keys))


class SqliteIndex:
    """The embedded index: `<archive directory>/index.sqlite3`, used from the archive thread."""

    def __init__(self, path: Path, thread: ArchiveThread) -> None:
        self.path = path
        self.thread = thread
        self.conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self.conn is None:
            await asyncio.get_running_loop().run_in_executor(
                None, makedirs_durable, self.path.parent)
            self.conn = await self.thread.run(index.connect, self.path)

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            await self.thread.run(conn.close)

    def _c(self) -> sqlite3.Connection:
        if self.conn is None:
            raise ArchiveClosedError(str(self.path))
        return self.conn

    def existing_blocking(self, archived_ids: Sequence[str]) -> set[str]:
        return index.existing(self._c(), archived_ids)

    def insert_many_blocking(self, rows: Sequence[ArchiveRow]) -> None:
        index.insert_many(self._c(), rows)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await self.thread.run(fn, self._c(), *args)

    async def existing(self, archived_ids: Sequence[str]) -> set[str]:
        return await self._run(index.existing, archived_ids)

    async def insert_many(self, rows: Sequence[ArchiveRow]) -> None:
        await self._run(index.insert_many, rows)

    async def search(self, query: SearchQuery) -> list[ArchiveRow]:
        return await self._run(index.search, query)

    async def lookup(self, archived_id: str) -> ArchiveRow | None:
        return await self._run(index.lookup, archived_id)

    async def expired(self, cutoff: float, limit: int, location: str) -> list[tuple[str, str]]:
        return await self._run(index.expired, cutoff, limit)  # one location: all are ours

    async def delete(self, archived_ids: Sequence[str]) -> None:
        await self._run(index.delete, archived_ids)
