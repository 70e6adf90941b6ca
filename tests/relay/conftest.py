"""Relay tests: a real aiosmtpd receiving server in the test's loop, moto for secrets, builders."""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from moto.server import ThreadedMotoServer
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


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Dummy credentials and a clean moto state (as tests/aws/conftest.py)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    return moto_endpoint

