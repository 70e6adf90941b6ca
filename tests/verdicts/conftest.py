"""Fixtures for the verdict tests: one loopback DNS server per session, its zone reset per test."""

from __future__ import annotations

import pytest

from mailmgr.verdicts.dns import DnsResolver
from tests.verdicts.dns_server import DnsServer, Zone


@pytest.fixture
def resolver(dns_server: DnsServer, zone: Zone) -> DnsResolver:
    """A fresh resolver (and cache) pointed at the test server."""
    return DnsResolver([dns_server.address], timeout=1.0)
