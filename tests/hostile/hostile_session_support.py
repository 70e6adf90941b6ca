"""Helpers for the session-syntax hostile tests: a real in-process IngressServer (OPEN or AUTH)
on port 0 with the ingress tests' recording Acceptor, and a raw SMTP dialogue."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence

from mailmgr.config.models import IngressPointType, TlsPolicy
from mailmgr.ingress import IngressServer, server_context
from tests.ingress.ingress_support import (
    HOSTNAME,
    Certs,
    DenyListPolicy,
    RawClient,
    RecordingAcceptor,
    Running,
    ingress_point,
)

PASSWORD = "Change-Me-2024!"
USER = "inp-test"  # an AUTH point's user name is its IngressPointId


async def start(certs: Certs | None = None, *, auth: bool = False) -> Running:
    """An OPEN point (TLS optional when `certs`), or with `auth` an AUTH point that offers AUTH
    inside TLS with password PASSWORD."""
    point = ingress_point(tls_policy=TlsPolicy.OPTIONAL, certs=certs)
    if auth:
        point = dataclasses.replace(point, type=IngressPointType.AUTH, smtp_password=PASSWORD)
    acceptor = RecordingAcceptor()
    policy = DenyListPolicy()
    server = IngressServer(
        point,
        hostname=HOSTNAME,
        max_message_size=None,
        acceptor=acceptor,
        recipient_policy=policy,
        ssl_context=server_context(point.tls_certificate) if point.tls_certificate else None,
    )
    await server.start()
    return Running(server, acceptor, policy)


async def running_server(certs: Certs | None = None, *, auth: bool = False
                         ) -> AsyncIterator[Running]:
    running = await start(certs, auth=auth)
    try:
        yield running
    finally:
        await running.server.stop(grace=1.0)


async def dialogue(running: Running, lines: Sequence[bytes]) -> list[tuple[int, str]]:
    """Send each line (CRLF appended) and read its reply: [(code, last line's text)]."""
    client = await RawClient.connect(running.host, running.port)
    try:
        assert (await client.reply())[0] == 220
        out = []
        for line in lines:
            code, texts = await client.command(line)
            out.append((code, texts[-1]))
        return out
    finally:
        await client.close()
