"""A bounded pool of SMTP connections to one server: idle reuse with RSET, a concurrency cap.

Owns connection lifetime (idle timeout, health check, close); must not look inside
transactions — a connection whose state is unknown (`broken`) is simply never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from mailmgr.smtpclient.client import SmtpConnection
from mailmgr.smtpclient.wire import SmtpError

MAX_CONNECTIONS = 5  # per relay: what a polite MTA opens to one destination
IDLE_SECONDS = 10.0  # how long an idle connection is kept for the next message
HEALTH_CHECK_TIMEOUT = 15.0  # RSET before reuse: a dead peer must not cost 5 minutes
MAX_REUSE = 100  # transactions per connection, then a fresh one

Opener = Callable[[], Awaitable[SmtpConnection]]


@dataclass
class Lease:
    connection: SmtpConnection
    reused: bool
    uses: int = 0


class ConnectionPool:
    def __init__(
        self,
        opener: Opener,
        *,
        max_connections: int = MAX_CONNECTIONS,
        idle_seconds: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._opener = opener
        self._slots = asyncio.Semaphore(max(1, max_connections))
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._idle: list[tuple[float, Lease]] = []  # most recently used last
        self._reaper: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Lease]:
        """A healthy connection (reused after RSET, or newly opened) for one transaction."""
        async with self._slots:
            lease = await self._take()
            try:
                yield lease
            except BaseException:
                lease.connection.broken = True
                raise
            finally:
                lease.uses += 1
                self._give_back(lease)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    async def close(self) -> None:
        """Close idle connections (in-use ones close when released)."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        idle, self._idle = self._idle, []
        for _, lease in idle:
            self._close_later(lease.connection)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def _take(self) -> Lease:
        now = self._clock()
        while self._idle:
            since, lease = self._idle.pop()
            if now - since > self._idle_seconds:
                self._close_later(lease.connection)
                continue
            try:
                reply = await lease.connection.command("RSET", HEALTH_CHECK_TIMEOUT)
            except (OSError, TimeoutError, SmtpError):
                reply = None
            if reply is not None and reply.code == 250:
                lease.reused = True
                return lease
            self._close_later(lease.connection)
        return Lease(await self._opener(), reused=False)

    def _give_back(self, lease: Lease) -> None:
        conn = lease.connection
        if self._closed or conn.broken or lease.uses >= MAX_REUSE or self._idle_seconds <= 0:
            self._close_later(conn)
            return
        self._idle.append((self._clock(), lease))
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().call_later(self._idle_seconds, self._reap)

    def _reap(self) -> None:
        self._reaper = None
        now = self._clock()
        keep: list[tuple[float, Lease]] = []
        for since, lease in self._idle:
            if now - since >= self._idle_seconds:
                self._close_later(lease.connection)
            else:
                keep.append((since, lease))
        self._idle = keep
        if keep:
            delay = max(0.05, self._idle_seconds - (now - keep[0][0]))
            self._reaper = asyncio.get_running_loop().call_later(delay, self._reap)

    def _close_later(self, conn: SmtpConnection) -> None:
        task = asyncio.get_running_loop().create_task(conn.quit())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
