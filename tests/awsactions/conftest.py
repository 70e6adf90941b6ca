"""moto in-process (session) and a recording aiohttp server for what moto lacks (Lambda Invoke,
Q Business BatchPutDocument). The seam: Server.Aws.EndpointUrls {"lambda": fake, "qbusiness":
fake} points those two clients at `FakeAws`; every other service goes to moto."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from awsactions_support import FakeAws


@pytest.fixture
async def fake_aws() -> AsyncIterator[FakeAws]:
    fake = FakeAws()
    await fake.start()
    yield fake
    await fake.stop()
