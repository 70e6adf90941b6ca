"""The cheap paths of the verdicts service give the same verdicts as the full checks: SPF from
cached DNS on the loop, DKIM GRAY without parsing an unsigned message."""

from __future__ import annotations

import time

from mailmgr.message import Envelope, InboundMessage, SessionFacts, Verdict
from mailmgr.verdicts.dkim import check_dkim, may_be_signed
from mailmgr.verdicts.dns import DnsResolver
from mailmgr.verdicts.service import VerdictsService
from mailmgr.verdicts.spf import check_spf, check_spf_cached
from tests.verdicts.dns_server import Zone
from tests.verdicts.verdicts_samples import message, publish_key, sign


def inbound(content: bytes) -> InboundMessage:
    session = SessionFacts("inp-x", "inbound", "192.0.2.10", helo="mta.example.com")
    return InboundMessage("msgid0000001", time.time(),
                          Envelope("bounce@example.com", ("bob@rcpt.test",)), session, content)


async def test_spf_from_cache_matches_the_full_check(zone: Zone, resolver: DnsResolver) -> None:
    zone.txt("example.com", "v=spf1 include:_spf.example.com -all")
    zone.txt("_spf.example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    args = ("192.0.2.10", "bounce@example.com", "mta.example.com")
    assert check_spf_cached(resolver.cached, *args) is None  # cold cache: needs the network
    full = check_spf(resolver, *args, 2.0)
    queries = len(zone.queries)
    assert check_spf_cached(resolver.cached, *args) == full
    assert full.verdict is Verdict.PASS and len(zone.queries) == queries
    assert check_spf_cached(resolver.cached, "198.51.100.1", "x@example.com", "h") is not None


async def test_unsigned_message_is_gray_without_dns(zone: Zone, resolver: DnsResolver) -> None:
    content = message()
    assert not may_be_signed(content)
    assert check_dkim(resolver, content, 1.0).verdict is Verdict.GRAY
    assert may_be_signed(b"DKIM-Signature: v=1\r\n\r\n") and may_be_signed(b"dkim-SIGNATURE:")


async def test_service_second_message_uses_the_loop_paths(
    zone: Zone, resolver: DnsResolver
) -> None:
    zone.txt("example.com", "v=spf1 ip4:192.0.2.10 -all")
    publish_key(zone, "example.com", "sel")
    service = VerdictsService(resolver, timeout=2.0)
    try:
        signed = sign(message(), "example.com", "sel")
        first = await service.compute(inbound(signed))
        queries = len(zone.queries)
        again = await service.compute(inbound(signed))
        plain = await service.compute(inbound(message()))
    finally:
        service.close()
    assert first.verdicts == again.verdicts
    assert (first.verdicts.spf, first.verdicts.dkim) == (Verdict.PASS, Verdict.PASS)
    assert len(zone.queries) == queries  # all answers cached
    assert (plain.verdicts.spf, plain.verdicts.dkim) == (Verdict.PASS, Verdict.GRAY)
