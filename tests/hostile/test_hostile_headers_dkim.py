"""DKIM must index the same DKIM-Signature fields as the one header reader: a field that one
reader sees and dkimpy does not (behind a bare CR, obs white space before the colon) would make a
valid signature of one domain count for another (a DMARC bypass: the reviewer's case)."""

from __future__ import annotations

import pytest

from mailmgr.message import Verdict
from mailmgr.verdicts.dkim import check_dkim
from mailmgr.verdicts.dns import DnsResolver
from tests.verdicts.dns_server import DnsServer, Zone
from tests.verdicts.verdicts_samples import message, publish_key, sign


@pytest.fixture
def resolver(dns_server: DnsServer, zone: Zone) -> DnsResolver:
    return DnsResolver([dns_server.address], timeout=1.0)


FAKE = b"DKIM-Signature: v=1; a=rsa-sha256; d=bank.test; s=s1; h=from; bh=AAAA; b=AAAA"


@pytest.mark.parametrize("hidden", [
    b"X-Foo: a\r" + FAKE + b"\r\n",       # behind a bare CR: a field for us, not for dkimpy
    FAKE.replace(b":", b" :", 1) + b"\r\n",  # obs white space before the colon
    FAKE.replace(b":", b"\t:", 1) + b"\r\n",
])
def test_a_signature_is_never_credited_to_another_domain(
    zone: Zone, resolver: DnsResolver, hidden: bytes
) -> None:
    publish_key(zone, "evil.test")
    signed = sign(message(from_="ceo@bank.test"), "evil.test")
    result = check_dkim(resolver, hidden + signed, 5.0)
    assert "bank.test" not in result.passing_domains()
    assert result.verdict is not Verdict.PASS or result.passing_domains() == ("evil.test",)


def test_plain_signature_still_passes(zone: Zone, resolver: DnsResolver) -> None:
    publish_key(zone, "evil.test")
    result = check_dkim(resolver, sign(message(from_="ceo@bank.test"), "evil.test"), 5.0)
    assert result.verdict is Verdict.PASS and result.passing_domains() == ("evil.test",)
