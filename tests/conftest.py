"""Shared fixtures (helpers live in tests/support.py)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from tests.state.postgres_support import BINDIR as POSTGRES_BINDIR
from tests.state.postgres_support import MISSING as POSTGRES_MISSING
from tests.state.postgres_support import PostgresInstance, postgres_instance
from tests.support import ServerProcess, write_config
from tests.verdicts.dns_server import DnsServer, Zone


@pytest.fixture
def server_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    started: list[ServerProcess] = []

    def make(config: dict[str, Any], name: str = "mailmgr.yaml") -> ServerProcess:
        server = ServerProcess(write_config(tmp_path / name, config))
        started.append(server)
        return server

    yield make
    for server in started:
        if server.proc and server.proc.poll() is None:
            server.stop()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server in-process, once per test session (testing.md), on a free port."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Dummy credentials for account 123456789012 and a clean moto state."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    return moto_endpoint


@pytest.fixture(scope="session")
def dns_server() -> Iterator[DnsServer]:
    """One real loopback DNS server (dnspython) for the whole session; `zone` resets it."""
    server = DnsServer().start()
    yield server
    server.stop()


@pytest.fixture
def zone(dns_server: DnsServer) -> Iterator[Zone]:
    dns_server.zone.clear()
    yield dns_server.zone
    dns_server.zone.clear()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresInstance]:
    """One real PostgreSQL for the session (tests/state/postgres_support.py); each test that
    needs isolation takes `postgres.fresh_database()`."""
    if POSTGRES_BINDIR is None:
        pytest.skip(POSTGRES_MISSING)
    with postgres_instance() as instance:
        yield instance
