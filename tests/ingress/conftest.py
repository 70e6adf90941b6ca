"""Fixtures for ingress tests: certificates, a real IngressServer on port 0 with a recording
Acceptor (the documented seam; the spool is tested in tests/spool) and raw SMTP clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from ingress_support import (
    HOSTNAME,
    Certs,
    DenyListPolicy,
    RawClient,
    RecordingAcceptor,
    Running,
    StartServer,
    ingress_point,
    make_certs,
)

from mailmgr.config.models import IngressPointStatus, ListenAddress, TlsPolicy
from mailmgr.ingress import IngressServer, server_context


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
async def start_server(certs: Certs) -> AsyncIterator[StartServer]:
    started: list[IngressServer] = []

    async def start(
        *,
        tls_policy: TlsPolicy = TlsPolicy.OPTIONAL,
        tls: bool = True,
        status: IngressPointStatus = IngressPointStatus.ACTIVE,
        listen: tuple[ListenAddress, ...] = (ListenAddress("127.0.0.1", 0),),
        max_message_size: int | None = None,
        denied: frozenset[str] = frozenset(),
        command_timeout: float = 300.0,
    ) -> Running:
        point = ingress_point(
            tls_policy=tls_policy, status=status, listen=listen, certs=certs if tls else None
        )
        acceptor = RecordingAcceptor()
        policy = DenyListPolicy(denied=denied)
        assert point.tls_certificate is None or tls
        server = IngressServer(
            point,
            hostname=HOSTNAME,
            max_message_size=max_message_size,
            acceptor=acceptor,
            recipient_policy=policy,
            ssl_context=server_context(point.tls_certificate) if point.tls_certificate else None,
            command_timeout=command_timeout,
        )
        await server.start()
        started.append(server)
        return Running(server, acceptor, policy)

    yield start
    for server in started:
        await server.stop(grace=1.0)


@pytest.fixture
async def running(start_server: StartServer) -> Running:
    return await start_server()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[str, int], Awaitable[RawClient]]]:
    clients: list[RawClient] = []

    async def open_client(host: str, port: int) -> RawClient:
        client = await RawClient.connect(host, port)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()
