"""Relay tests: a real aiosmtpd receiving server in the test's loop, moto for secrets, builders."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from relay_support import Handler, Pki, RelayServer

from mailmgr import certs
from mailmgr.actions.relay import close_pools


@pytest.fixture
async def relays() -> AsyncIterator[Callable[..., RelayServer]]:
    started: list[RelayServer] = []

    def make(handler: Handler | None = None, port: int = 0, **smtp: Any) -> RelayServer:
        server = RelayServer(handler or Handler(), port, **smtp)
        started.append(server)
        return server

    yield make
    await close_pools()  # before the servers go, so QUITs are answered
    for server in started:
        await server.stop()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("relay-pki")
    ca = certs.make_ca("relay test CA")
    server = certs.make_server(ca, "localhost")
    (directory / "ca.pem").write_bytes(certs.cert_pem(ca.certificate))
    (directory / "server.pem").write_bytes(certs.cert_pem(server.certificate))
    (directory / "server.key").write_bytes(certs.key_pem(server.key))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    return Pki(directory / "ca.pem", context)



