"""Hostile 07, DNS side: one message's verdicts send at most MAX_QUERIES_PER_MESSAGE DNS
queries, whatever SPF, DKIM and DMARC would ask for (counted at the loopback DNS server)."""

from __future__ import annotations

import time

from mailmgr.message import Envelope, InboundMessage, SessionFacts, Verdict
from mailmgr.verdicts.dns import (
    MAX_QUERIES_PER_MESSAGE,
    BudgetedResolver,
    DnsResolver,
    Outcome,
    RecordType,
)
from mailmgr.verdicts.service import VerdictsService
from tests.verdicts.dns_server import DnsServer, Zone
from tests.verdicts.verdicts_samples import message, publish_key, sign


def inbound(content: bytes, mail_from: str = "bounce@spf.test") -> InboundMessage:
    session = SessionFacts("inp-x", "inbound", "198.51.100.99", helo="mta.spf.test")
    return InboundMessage("msgid0000007", time.time(), Envelope(mail_from, ("bob@rcpt.test",)),
                          session, content)


def wide_spf(zone: Zone, mechanisms: int = 9, hosts: int = 10) -> None:
    """An SPF record within RFC 7208's 10-lookup limit that still costs ~100 queries: each `mx`
    mechanism names 10 MX hosts, each looked up for its address (4.6.4 allows 10 per mx)."""
    zone.txt("spf.test", "v=spf1 " + " ".join(f"mx:m{i}.spf.test" for i in range(mechanisms))
             + " -all")
    for i in range(mechanisms):
        for j in range(hosts):
            zone.add(f"m{i}.spf.test", "MX", (10, f"h{j}.m{i}.spf.test"))
            zone.add(f"h{j}.m{i}.spf.test", "A", "192.0.2.1")


async def _compute(dns_server: DnsServer, content: bytes, max_queries: int
                   ) -> tuple[Verdict, Verdict, Verdict]:
    service = VerdictsService(DnsResolver([dns_server.address], 1.0), timeout=10.0,
                              max_queries=max_queries)
    try:
        auth = await service.compute(inbound(content))
    finally:
        service.close()
    return auth.verdicts.spf, auth.verdicts.dkim, auth.verdicts.dmarc


async def test_spf_alone_cannot_exceed_the_message_budget(
    dns_server: DnsServer, zone: Zone
) -> None:
    wide_spf(zone)
    unbounded = await _compute(dns_server, message(), max_queries=10_000)
    assert len(zone.queries) > 2 * MAX_QUERIES_PER_MESSAGE - 10  # the record really costs ~100
    assert unbounded[0] is Verdict.FAIL
    zone.queries.clear()
    spf, _, _ = await _compute(dns_server, message(), MAX_QUERIES_PER_MESSAGE)
    assert len(zone.queries) <= MAX_QUERIES_PER_MESSAGE
    assert spf is Verdict.PROCESSING_FAILED  # temperror: the budget ran out


async def test_spf_dkim_and_dmarc_share_one_budget(dns_server: DnsServer, zone: Zone) -> None:
    wide_spf(zone, mechanisms=4)  # ~44 queries
    content = message(from_=", ".join(f"u{i}@d{i}.victim.test" for i in range(500)))
    for i in range(10):
        publish_key(zone, f"k{i}.test")
        content = sign(content, f"k{i}.test")
    await _compute(dns_server, content, MAX_QUERIES_PER_MESSAGE)
    assert len(zone.queries) <= MAX_QUERIES_PER_MESSAGE


async def test_many_from_domains_are_capped_by_the_budget(
    dns_server: DnsServer, zone: Zone
) -> None:
    content = message(from_=", ".join(f"u{i}@d{i}.victim.test" for i in range(2_000)))
    _, _, dmarc = await _compute(dns_server, content, MAX_QUERIES_PER_MESSAGE)
    assert len(zone.queries) <= MAX_QUERIES_PER_MESSAGE
    assert dmarc is not Verdict.PASS


async def test_cached_answers_are_free_and_refusals_are_temporary_errors(
    dns_server: DnsServer, zone: Zone
) -> None:
    inner = DnsResolver([dns_server.address], 1.0)
    zone.txt("a.test", "hello")
    warm = await inner.lookup("a.test", RecordType.TXT)
    assert warm.outcome is Outcome.FOUND
    budget = BudgetedResolver(inner, limit=3)
    for _ in range(5):
        assert (await budget.lookup("a.test", RecordType.TXT)).outcome is Outcome.FOUND
    answers = [budget.lookup_sync(f"n{i}.test", RecordType.TXT) for i in range(5)]
    assert [a.outcome for a in answers] == [Outcome.NXDOMAIN] * 3 + [Outcome.ERROR] * 2
    assert answers[-1].temporary_failure and budget.exhausted
    assert sum(1 for name, _ in zone.queries if name.startswith("n")) == 3
