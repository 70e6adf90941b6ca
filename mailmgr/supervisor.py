"""The supervisor of a multi-process server (`Server.Processes` > 1; the uvicorn `supervisors/`
pattern): resolves every listen port once, starts N worker interpreters, restarts one that dies
with bounded backoff, forwards SIGHUP/SIGTERM/SIGINT and serves the fleet's admin listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailmgr import logs
from mailmgr.admin.api.service import ApiService
from mailmgr.admin.api.setup import api_service
from mailmgr.admin.fleet import FleetAdmin, WorkerView
from mailmgr.config.models import Config
from mailmgr.errors import SpoolError
from mailmgr.fleet_worker import WorkerSpec
from mailmgr.spool.shards import Shard, adopt, strays
from mailmgr.spool.store import SpoolStore
from mailmgr.state.postgres import SharedStateError

BACKOFF_FIRST = 0.5  # seconds before the first restart of a worker that died
BACKOFF_MAX = 30.0  # the delay doubles per failed restart up to this
STABLE_AFTER = 30.0  # a worker that ran this long starts again from BACKOFF_FIRST
START_TIMEOUT = 60.0  # seconds a worker may take to report its listeners bound
STOP_MARGIN = 10.0  # seconds beyond DrainSeconds + ShutdownGraceSeconds before SIGKILL
SPOOL_LOCK_WAIT = 5.0  # seconds to wait for a spool a `mailmgr queue` command holds


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    admin: str = ""
    ready: bool = False
    started_at: float = 0.0
    alive_fd: int | None = None  # our end of the pipe whose EOF tells the worker we are gone
    restarts: int = 0

    def view(self) -> WorkerView:
        return WorkerView(self.index, self.proc.pid if self.proc else 0, self.admin, self.ready)

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def closed(self) -> None:
        self.ready = False
        if self.alive_fd is not None:
            os.close(self.alive_fd)
            self.alive_fd = None


def resolve_ports(config: Config) -> tuple[list[socket.socket], tuple[tuple[str, str, int, int],
                                                                      ...]]:
    """A port for every Listen / TlsWrappedListen address given with port 0, bound once here
    with SO_REUSEPORT (every address family the host resolves to) and kept open, never
    listening, so every worker binds the same port and nothing else takes it between restarts.
    Returns the placeholder sockets and (ingress point ID, kind, position, port). Raises
    OSError."""
    held: list[socket.socket] = []
    ports: list[tuple[str, str, int, int]] = []
    try:
        for point in config.ingress_points:
            for kind, addresses in (("listen", point.listen),
                                    ("wrapped", point.tls_wrapped_listen)):
                for position, address in enumerate(addresses):
                    if address.port != 0:  # bound by the workers themselves
                        ports.append((point.id, kind, position, address.port))
                        continue
                    port = 0
                    infos = socket.getaddrinfo(address.host or None, 0, type=socket.SOCK_STREAM,
                                               flags=socket.AI_PASSIVE)
                    for family, kind_, proto, _, sockaddr in infos:
                        sock = socket.socket(family, kind_, proto)
                        held.append(sock)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                        if family == socket.AF_INET6:  # as asyncio's create_server does
                            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                        sock.bind((sockaddr[0], port, *sockaddr[2:]))
                        port = sock.getsockname()[1]
                    ports.append((point.id, kind, position, port))
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held, tuple(ports)


def _lock_spool(spool: Path) -> int:
    """Hold `spool/lock` while the supervisor runs: a `mailmgr queue` command then asks the
    admin listener (which fans out to the workers) instead of reading `spool/` offline, and a
    second server on the same DataDirectory fails to start. Raises OSError (EBUSY)."""
    spool.mkdir(parents=True, exist_ok=True)
    fd = os.open(spool / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise OSError(errno.EBUSY, "the spool is in use by another mailmgr process",
                      str(spool)) from None
    return fd


def _read_report(fd: int, timeout: float) -> dict[str, Any] | None:
    """The worker's one JSON line (blocking; run in a thread); None at EOF or timeout."""
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            data += chunk
    finally:
        os.close(fd)
    report = json.loads(data.split(b"\n", 1)[0])
    return report if isinstance(report, dict) else None


class Supervisor:
    """N workers of one config; `run` returns the exit status (0 after a graceful stop, 1 when
    a worker could not start the first time)."""

    def __init__(self, config: Config, log_format: str) -> None:
        self.config = config
        self._log_format = log_format
        self._count = config.server.processes
        self._workers = [_Worker(i) for i in range(self._count)]
        self._ports: tuple[tuple[str, str, int, int], ...] = ()
        self._stop = asyncio.Event()
        self._stopping = False
        self.admin: FleetAdmin | None = None
        self._lock_fd: int | None = None
        self._pool: Any = None  # Server.SharedState: the API's store

    def views(self) -> list[WorkerView]:
        return [w.view() for w in self._workers]

    async def _spawn(self, worker: _Worker) -> bool:
        """Start `worker` and wait for its report; False (process gone) if it failed."""
        report_r, report_w = os.pipe()
        alive_r, alive_w = os.pipe()
        spec = WorkerSpec(worker.index, self._count, self._ports, report_w, alive_r)
        argv = [sys.executable, "-m", "mailmgr", "serve", "--config", str(self.config.source),
                "--log-format", self._log_format, "--worker", spec.to_json()]
        try:
            # A session of its own: a terminal's Ctrl-C reaches the supervisor only, which
            # forwards it once (a second one would cut the workers' drain short).
            worker.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, pass_fds=(report_w, alive_r),
                start_new_session=True)
        except OSError:
            for fd in (report_r, alive_w):
                os.close(fd)
            raise
        finally:
            os.close(report_w)
            os.close(alive_r)
        worker.alive_fd = alive_w
        loop = asyncio.get_running_loop()
        report = await loop.run_in_executor(None, _read_report, report_r, START_TIMEOUT)
        if report is None:
            worker.signal(signal.SIGKILL)  # timed out: do not leave it half started
            await worker.proc.wait()
            worker.closed()
            return False
        worker.admin = str(report.get("admin", ""))
        worker.started_at = time.monotonic()
        worker.ready = True
        logs.event("supervisor.worker_started", worker=worker.index, pid=worker.proc.pid,
                   admin=worker.admin)
        if self._stopping:  # a stop arrived while it started
            worker.signal(signal.SIGTERM)
        return True

    async def _watch(self, worker: _Worker) -> None:
        """Restart `worker` whenever it exits while the server is not stopping."""
        backoff = BACKOFF_FIRST
        while True:
            assert worker.proc is not None
            code = await worker.proc.wait()
            worker.closed()
            if self._stopping:
                return
            ran = time.monotonic() - worker.started_at
            logs.warning("supervisor.worker_exited", worker=worker.index, pid=worker.proc.pid,
                         returncode=code, ran_seconds=round(ran, 1))
            if ran >= STABLE_AFTER:
                backoff = BACKOFF_FIRST
            while True:
                delay, backoff = backoff, min(backoff * 2, BACKOFF_MAX)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):  # a stop request ends the backoff
                        await self._stop.wait()
                if self._stopping:
                    return
                worker.restarts += 1
                if self.admin is not None:
                    self.admin.restarted()
                if await self._spawn(worker):
                    break
                logs.error("supervisor.worker_start_failed", worker=worker.index,
                           returncode=worker.proc.returncode, retry_in=backoff)

    def _reload(self) -> None:
        if self.admin is not None and self.admin.api is not None:
            self.admin.api.invalidate()
        self._forward(signal.SIGHUP)

    def _forward(self, signum: int) -> None:
        for worker in self._workers:
            worker.signal(signum)

    def _terminate(self) -> None:
        if not self._stopping:
            self._stopping = True
            self._stop.set()
            if self.admin is not None:
                self.admin.draining = True  # 503 at once; the workers drain as they stop
            logs.event("server.draining", seconds=self.config.server.admin.drain_seconds)
        # every SIGTERM/SIGINT goes on: a second one shortens the workers' drain
        self._forward(signal.SIGTERM)

    async def run(self) -> int:
        try:
            placeholders, self._ports = resolve_ports(self.config)
        except OSError as exc:
            logs.error("server.start_failed", error=str(exc))
            return 1
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._terminate)
        loop.add_signal_handler(signal.SIGINT, self._terminate)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        try:
            return await self._serve()
        finally:
            for sock in placeholders:
                sock.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            if self.admin is not None:
                await self.admin.close()
            if self._pool is not None:
                await self._pool.close()
            for worker in self._workers:
                worker.closed()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)

    async def _serve(self) -> int:
        server = self.config.server
        from mailmgr.dev_certificates import ensure_dev_certificates

        try:
            # Development certificates are made here once, not by N workers racing to write.
            await ensure_dev_certificates(self.config)
            await self._adopt_strays()
            self._lock_fd = _lock_spool(server.spool_directory)
        except (OSError, ValueError, SpoolError) as exc:
            logs.error("server.start_failed", error=str(exc))
            return 1
        started = await asyncio.gather(*(self._spawn(w) for w in self._workers))
        if not all(started):
            failed = [w.index for w, ok in zip(self._workers, started, strict=True) if not ok]
            codes = [w.proc.returncode if w.proc else None for w in self._workers
                     if w.index in failed]
            logs.error("server.start_failed", error="worker process failed to start",
                       workers=failed, returncodes=codes)
            self._stopping = True
            await self._stop_all(server.shutdown_grace + STOP_MARGIN)
            return 1
        if server.admin.listen:
            try:
                self.admin = FleetAdmin(server.admin, self.views, api=await self._api())
                admin_addresses = await self.admin.start()
            except (OSError, SharedStateError) as exc:
                logs.error("server.start_failed", error=str(exc))
                self._stopping = True
                await self._stop_all(server.shutdown_grace + STOP_MARGIN)
                return 1
            self.admin.ready = True
        else:
            admin_addresses = []
        watchers = [asyncio.create_task(self._watch(w)) for w in self._workers]
        by_id = {p.id: p.name for p in self.config.ingress_points}
        logs.event(
            "server.started", hostname=server.hostname, processes=self._count,
            workers=[w.proc.pid if w.proc else 0 for w in self._workers],
            listeners=[{"ingress_point": by_id[point], "address": f"{self._host(point, kind, i)}"
                        f":{port}", "tls_wrapped": kind == "wrapped"}
                       for point, kind, i, port in self._ports],
            admin=admin_addresses,
        )
        await self._stop.wait()
        logs.event("server.stopping", processes=self._count)
        limit = server.admin.drain_seconds + server.shutdown_grace + STOP_MARGIN
        # _terminate has sent the workers their SIGTERM already: a second one now would cut
        # their drain short (that is what an operator's second SIGTERM means).
        await self._stop_all(limit, forward=False)
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        logs.event("server.stopped", processes=self._count)
        return 0

    async def _api(self) -> ApiService:
        """The Mail Manager API answered by the supervisor: a change is persisted here and the
        workers reload it (SIGHUP; with SharedState they also get the push's NOTIFY)."""
        if self.config.server.shared_state is not None and self._pool is None:
            from mailmgr.state.postgres import migrate, open_pool

            self._pool = await open_pool(self.config.server.shared_state,
                                         name="mailmgr-api")
            await migrate(self._pool)

        async def apply(config: Config) -> None:
            self._forward(signal.SIGHUP)

        return api_service(self.config, apply, lambda: self.config, pool=self._pool,
                           fixed_ports=True)

    def _host(self, point_id: str, kind: str, position: int) -> str:
        point = next(p for p in self.config.ingress_points if p.id == point_id)
        host = (point.listen if kind == "listen" else point.tls_wrapped_listen)[position].host
        return f"[{host}]" if ":" in host else (host or "0.0.0.0")

    async def _adopt_strays(self) -> None:
        """Before any worker starts: the messages of spools no worker owns (Processes shrank,
        or was 1) move into the shards that take them over. Raises OSError, SpoolError."""
        spool = self.config.server.spool_directory
        for source, index in strays(spool, self._count):
            target = SpoolStore(Shard(index, self._count).directory(spool))
            await target.open(lock_wait=SPOOL_LOCK_WAIT)
            try:
                await adopt(source, target, lock_wait=SPOOL_LOCK_WAIT)
            finally:
                await target.close()

    async def _stop_all(self, limit: float, *, forward: bool = True) -> None:
        """SIGTERM every worker (unless `forward` is False: they have it already), wait up to
        `limit` seconds, SIGKILL the ones left."""
        if forward:
            self._forward(signal.SIGTERM)
        procs = [w.proc for w in self._workers if w.proc is not None]
        waits = [asyncio.ensure_future(p.wait()) for p in procs]
        if not waits:
            return
        _, late = await asyncio.wait(waits, timeout=limit)
        if late:
            for worker in self._workers:
                if worker.proc is not None and worker.proc.returncode is None:
                    logs.error("supervisor.worker_killed", worker=worker.index,
                               pid=worker.proc.pid, waited=limit)
                    worker.signal(signal.SIGKILL)
            await asyncio.gather(*late)


async def supervise(config: Config, log_format: str) -> int:
    """Run `config` with `config.server.processes` workers until SIGTERM/SIGINT; SIGHUP makes
    every worker reload. Returns the exit status."""
    logs.set_process(pid=os.getpid())
    return await Supervisor(config, log_format).run()
