"""The shared configuration as a config source: the local file plus the fleet's active document
in PostgreSQL, watched with LISTEN/NOTIFY and polling (interface.md, "Shared configuration").
Imported only when `Server.SharedState` is set, so the embedded default never loads the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

from mailmgr import logs
from mailmgr.config import load
from mailmgr.config.loader import load_shared
from mailmgr.config.models import Config, SharedStateSettings
from mailmgr.state import config_store
from mailmgr.state.config_store import StoredConfig
from mailmgr.state.postgres import SharedStateError, migrate, open_pool

POLL_INTERVAL = 5.0  # seconds between version checks: a lost NOTIFY costs at most this
OUTAGE_LOG_INTERVAL = 60.0  # seconds between `config.shared_unavailable` lines
BACKOFF_MAX = 30.0  # seconds between LISTEN reconnection attempts, at most
CONNECT_TIMEOUT = 5  # seconds to reach PostgreSQL (pool at start-up, LISTEN connection)


class _OutageLog:
    """`config.shared_unavailable` at most once per OUTAGE_LOG_INTERVAL while PostgreSQL
    fails, `config.shared_available` once it answers again. Never logs the DSN."""

    def __init__(self) -> None:
        self._last = -OUTAGE_LOG_INTERVAL
        self._down = False

    def failed(self, error: str) -> None:
        now = time.monotonic()
        if now - self._last >= OUTAGE_LOG_INTERVAL:
            self._last = now
            logs.warning("config.shared_unavailable", error=error,
                         note="the running configuration stays; changes apply once "
                              "PostgreSQL answers again")
        self._down = True

    def recovered(self) -> None:
        if self._down:
            self._down = False
            self._last = -OUTAGE_LOG_INTERVAL
            logs.event("config.shared_available")


class SharedSource:
    """The local file `path` plus the active shared document (loader.load_shared); the local
    file alone while nothing was pushed. When PostgreSQL cannot be reached during a reload, the
    last document fetched is used again (logged), so SIGHUP still applies local changes."""

    def __init__(self, path: Path, settings: SharedStateSettings, pool: AsyncConnectionPool,
                 poll_interval: float = POLL_INTERVAL) -> None:
        self.path = path
        self._settings = settings
        self._pool = pool
        self._poll_interval = poll_interval
        self._stored: StoredConfig | None = None
        self._fetched = False
        self.version = 0  # of the last document fetched (0: none pushed), applied or not
        self._requested = 0  # the version the last on_change call was for
        self._outage = _OutageLog()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def open(cls, path: Path, settings: SharedStateSettings) -> SharedSource:
        """Connect, migrate and fetch the active document. Raises SharedStateError."""
        # The driver's own warnings (every failed reconnection, as plain text on stderr) would
        # flood the log during an outage: _OutageLog reports it once a minute instead.
        logging.getLogger("psycopg").setLevel(logging.CRITICAL)
        # One connection: fetches run one at a time (the reload lock), polls are tiny.
        pool = await open_pool(replace(settings, pool_size=1), name="mailmgr-config",
                               connect_wait=CONNECT_TIMEOUT)
        try:
            await migrate(pool)
            source = cls(path, settings, pool)
            await source._fetch()
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, psycopg.Error):
                raise SharedStateError(f"PostgreSQL: {type(exc).__name__}") from None
            raise
        return source

    async def _fetch(self) -> None:
        stored = await config_store.active(self._pool)
        self._outage.recovered()
        if stored is None:
            if not self._fetched:
                logs.warning("config.shared_none", source=str(self.path),
                             note="nothing pushed yet: resources come from the local file")
        elif self._stored is None or stored.version != self._stored.version:
            logs.event("config.shared_fetched", version=stored.version,
                       sha256=stored.sha256[:16], pushed_by=stored.pushed_by)
        self._stored, self._fetched = stored, True
        self.version = 0 if stored is None else stored.version

    async def load(self) -> Config:
        try:
            await self._fetch()
        except SharedStateError as exc:
            self._outage.failed(str(exc))
            self._requested = self.version  # the next poll asks again for what was missed
            logs.warning("config.shared_cached", version=self.version,
                         note="PostgreSQL did not answer: the last document fetched is used")
        stored = self._stored
        loop = asyncio.get_running_loop()
        if stored is None:
            return await loop.run_in_executor(None, load, self.path)
        label = f"shared config v{stored.version}"
        return await loop.run_in_executor(None, load_shared, self.path, stored.document, label)

    def watch(self, on_change: Callable[[], None]) -> None:
        """LISTEN on a dedicated connection (reconnected with backoff) and poll every
        poll_interval seconds; `on_change` runs once per new version seen."""
        self._tasks = [asyncio.create_task(self._listen(on_change)),
                       asyncio.create_task(self._poll(on_change))]

    def _seen(self, version: int, on_change: Callable[[], None]) -> None:
        if version != self.version and version != self._requested:
            self._requested = version
            on_change()

    async def _poll(self, on_change: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                version = await config_store.active_version(self._pool)
            except SharedStateError as exc:
                self._outage.failed(str(exc))
                continue
            self._outage.recovered()
            self._seen(version, on_change)

    async def _listen(self, on_change: Callable[[], None]) -> None:
        delay = 1.0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._settings.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                    application_name="mailmgr-config-listen")
                async with conn:
                    await conn.execute(f"LISTEN {config_store.CHANNEL}")
                    delay = 1.0
                    # A push made while this connection was down was not heard: look now.
                    cursor = await conn.execute(
                        "SELECT coalesce(max(version), 0) FROM mailmgr_config_documents")
                    row = await cursor.fetchone()
                    self._seen(int(row[0]) if row else 0, on_change)
                    async for notify in conn.notifies():
                        if notify.payload.isdigit():
                            self._seen(int(notify.payload), on_change)
            except (psycopg.Error, OSError) as exc:
                self._outage.failed(f"LISTEN connection: {type(exc).__name__}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._pool.close()
