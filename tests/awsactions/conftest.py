"""moto in-process (session) and a recording aiohttp server for what moto lacks (Lambda Invoke,
Q Business BatchPutDocument). The seam: Server.Aws.EndpointUrls {"lambda": fake, "qbusiness":
fake} points those two clients at `FakeAws`; every other service goes to moto."""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest
from awsactions_support import FakeAws
from moto.server import ThreadedMotoServer


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
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


@pytest.fixture
async def fake_aws() -> AsyncIterator[FakeAws]:
    fake = FakeAws()
    await fake.start()
    yield fake
    await fake.stop()
