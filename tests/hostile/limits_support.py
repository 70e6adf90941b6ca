"""Helpers for the Server.Limits hostile tests: a real IngressServer on port 0 with chosen
limits (the recording Acceptor seam of tests/ingress), a raw client bound to a chosen source
address, and `mailmgr serve` under a low file-descriptor limit."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from mailmgr.config.models import IngressPointType, ServerLimits
from mailmgr.ingress import IngressServer, server_context
from tests.ingress.ingress_support import (
    HOSTNAME,
    Certs,
    DenyListPolicy,
    RawClient,
    RecordingAcceptor,
    ingress_point,
)
from tests.support import ROOT, ServerProcess

PASSWORD = "Right-Password-42"
USER = "inp-test"  # an AUTH point's user name is its ID


@asynccontextmanager
async def limited_server(
    limits: ServerLimits, *, certs: Certs | None = None, auth: bool = False
) -> AsyncIterator[IngressServer]:
    point = ingress_point(certs=certs)
    if auth:
        point = replace(point, type=IngressPointType.AUTH, smtp_password=PASSWORD)
    server = IngressServer(
        point,
        hostname=HOSTNAME,
        max_message_size=None,
        acceptor=RecordingAcceptor(),
        recipient_policy=DenyListPolicy(),
        ssl_context=server_context(point.tls_certificate) if point.tls_certificate else None,
        limits=limits,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0.5)


async def raw_client(port: int, source: str = "127.0.0.1") -> RawClient:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, local_addr=(source, 0), limit=2**20
    )
    return RawClient(reader, writer)


async def wait_until(predicate: object, timeout: float) -> float:  # noqa: ASYNC109
    """Seconds until `predicate()` is true; AssertionError after `timeout`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():  # type: ignore[operator]
        if loop.time() - start > timeout:
            raise AssertionError(f"not true within {timeout}s")
        await asyncio.sleep(0.05)
    return loop.time() - start


def raise_own_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


class FdLimitedServer(ServerProcess):
    """`mailmgr serve` started under RLIMIT_NOFILE = (nofile, nofile)."""

    def __init__(self, config_file: Path, nofile: int) -> None:
        super().__init__(config_file)
        self.nofile = nofile

    def start(self, timeout: float = 20.0) -> FdLimitedServer:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        nofile = self.nofile

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailmgr", "serve", "--config", str(self.config_file),
             "--log-format", "json"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=ROOT, preexec_fn=limit,
        )
        threading.Thread(target=self._read, daemon=True).start()
        started = self.wait_for("server.started", timeout)
        self.port = int(started["listeners"][0]["address"].rsplit(":", 1)[1])
        return self

    @property
    def stderr_bytes(self) -> int:
        return sum(len(line) + 1 for line in self.raw)
