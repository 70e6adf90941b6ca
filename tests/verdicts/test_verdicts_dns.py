"""The resolver against the loopback server: answers, negative answers, failures, TCP, cache."""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor

from mailmgr.verdicts.dns import DnsCache, DnsResolver, Outcome, RecordType
from tests.verdicts.dns_server import DnsServer, Zone


async def test_answers_by_type(zone: Zone, resolver: DnsResolver) -> None:
    zone.add("host.test", "A", "192.0.2.1").add("host.test", "AAAA", "2001:db8::1")
    zone.add("host.test", "MX", (10, "mx.host.test")).txt("host.test", ("v=spf1 ", "-all"))
    assert (await resolver.lookup("HOST.test.", RecordType.A)).values == ("192.0.2.1",)
    assert (await resolver.lookup("host.test", RecordType.AAAA)).values == ("2001:db8::1",)
    assert (await resolver.lookup("host.test", RecordType.MX)).mx == ((10, "mx.host.test"),)
    assert resolver.lookup_sync("host.test", RecordType.TXT).texts == (b"v=spf1 -all",)


async def test_negative_answers_and_failures(zone: Zone, resolver: DnsResolver) -> None:
    zone.add("exists.test", "A", "192.0.2.1")
    zone.servfail.add("broken.test")
    assert (await resolver.lookup("missing.test", RecordType.A)).outcome is Outcome.NXDOMAIN
    assert (await resolver.lookup("exists.test", RecordType.TXT)).outcome is Outcome.NODATA
    broken = await resolver.lookup("broken.test", RecordType.A)
    assert broken.outcome is Outcome.ERROR and broken.temporary_failure


async def test_timeout_is_bounded(dns_server: DnsServer, zone: Zone) -> None:
    zone.timeout.add("slow.test")
    resolver = DnsResolver([dns_server.address], timeout=0.3)
    started = time.monotonic()
    answer = await resolver.lookup("slow.test", RecordType.A)
    assert answer.outcome is Outcome.ERROR and time.monotonic() - started < 1.5
    started = time.monotonic()
    assert resolver.lookup_sync("slow.test", RecordType.TXT, 0.1).outcome is Outcome.ERROR
    assert time.monotonic() - started < 1.0


async def test_truncated_answer_retries_over_tcp(zone: Zone, resolver: DnsResolver) -> None:
    big = tuple("x" * 200 + str(i) for i in range(6))
    zone.txt("big.test", *big)
    answer = await resolver.lookup("big.test", RecordType.TXT)
    assert sorted(answer.texts) == sorted(t.encode() for t in big)


async def test_cache_is_shared_and_honours_ttl(zone: Zone, resolver: DnsResolver) -> None:
    zone.add("cached.test", "A", "192.0.2.7")
    await resolver.lookup("cached.test", RecordType.A)
    resolver.lookup_sync("cached.test", RecordType.A)
    await resolver.lookup("nx.test", RecordType.A)
    await resolver.lookup("nx.test", RecordType.A)
    assert zone.queries.count(("cached.test", "A")) == 1
    assert zone.queries.count(("nx.test", "A")) == 1  # negative answers cached (SOA minimum)
    zone.servfail.add("sf.test")
    await resolver.lookup("sf.test", RecordType.A)
    await resolver.lookup("sf.test", RecordType.A)
    assert zone.queries.count(("sf.test", "A")) >= 2  # failures are never cached


def test_cache_is_bounded_and_expires() -> None:
    from mailmgr.verdicts.dns import DnsAnswer

    cache = DnsCache(max_entries=2)
    for name in ("a", "b", "c"):
        cache.put(name, RecordType.A, DnsAnswer(Outcome.FOUND, values=(name,)), 60)
    assert len(cache) == 2 and cache.get("a", RecordType.A) is None
    cache.put("z", RecordType.A, DnsAnswer(Outcome.FOUND), 0.05)
    time.sleep(0.06)
    assert cache.get("z", RecordType.A) is None


def test_nameserver_forms_are_accepted(dns_server: DnsServer, zone: Zone) -> None:
    zone.add("x.test", "A", "192.0.2.9")
    DnsResolver([f"[::1]:{dns_server.port}", "::1", "127.0.0.1"], timeout=0.5)  # all parse
    resolver = DnsResolver([f"localhost:{dns_server.port}"], timeout=0.5)
    assert resolver.lookup_sync("x.test", RecordType.A).values == ("192.0.2.9",)


async def test_negative_answer_without_soa_is_cached_for_the_default(
    dns_server: DnsServer, zone: Zone
) -> None:
    zone.no_soa.add("bare-nx.test")
    resolver = DnsResolver([dns_server.address], timeout=1.0, negative_ttl=0.2)
    assert (await resolver.lookup("bare-nx.test", RecordType.TXT)).outcome is Outcome.NXDOMAIN
    assert resolver.lookup_sync("bare-nx.test", RecordType.TXT).outcome is Outcome.NXDOMAIN
    assert zone.queries.count(("bare-nx.test", "TXT")) == 1
    await asyncio.sleep(0.25)
    await resolver.lookup("bare-nx.test", RecordType.TXT)
    assert zone.queries.count(("bare-nx.test", "TXT")) == 2  # expired after negative_ttl


async def test_concurrent_identical_lookups_share_one_query(
    zone: Zone, resolver: DnsResolver
) -> None:
    zone.no_soa.add("burst.test")
    zone.add("a.burst.test", "A", "192.0.2.3")
    answers = await asyncio.gather(
        *(resolver.lookup("burst.test", RecordType.TXT) for _ in range(100)),
        *(resolver.lookup("a.burst.test", RecordType.A) for _ in range(100)),
    )
    assert {a.outcome for a in answers[:100]} == {Outcome.NXDOMAIN}
    assert {a.values for a in answers[100:]} == {("192.0.2.3",)}
    assert zone.queries.count(("burst.test", "TXT")) == 1
    assert zone.queries.count(("a.burst.test", "A")) == 1
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(8) as pool:
        sync = await asyncio.gather(*(
            loop.run_in_executor(pool, resolver.lookup_sync, "s.burst.test", RecordType.MX)
            for _ in range(40)
        ))
    assert {a.outcome for a in sync} == {Outcome.NXDOMAIN}
    assert zone.queries.count(("s.burst.test", "MX")) == 1


async def test_a_waiter_is_bounded_by_its_own_budget(dns_server: DnsServer, zone: Zone) -> None:
    zone.timeout.add("hang.test")
    resolver = DnsResolver([dns_server.address], timeout=2.0)
    leader = asyncio.ensure_future(resolver.lookup("hang.test", RecordType.A))
    await asyncio.sleep(0)
    started = time.monotonic()
    follower = await resolver.lookup("hang.test", RecordType.A, 0.2)
    assert follower.outcome is Outcome.ERROR and time.monotonic() - started < 1.0
    leader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await leader


async def test_a_cancelled_leader_does_not_fail_its_waiters(
    dns_server: DnsServer, zone: Zone
) -> None:
    """The caller that sent a shared query goes away (its SMTP client disconnected, its MAIL was
    replaced): the others still get the real answer, not an error. Otherwise one connection
    that drops at the right moment turns a concurrent DNSBL listing into a failure, which a
    DENY on isListed lets through."""
    zone.timeout.add("slow.test")  # the first attempt is lost; the retry after 1 s answers
    zone.add("slow.test", "A", "127.0.0.2")
    resolver = DnsResolver([dns_server.address], timeout=4.0)
    leader = asyncio.ensure_future(resolver.lookup("slow.test", RecordType.A))
    await asyncio.sleep(0.05)
    follower = asyncio.ensure_future(resolver.lookup("slow.test", RecordType.A))
    await asyncio.sleep(0.05)
    leader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await leader
    zone.timeout.discard("slow.test")
    answer = await follower
    assert answer.outcome is Outcome.FOUND and answer.values == ("127.0.0.2",), answer
    assert zone.queries.count(("slow.test", "A")) == 2  # one query (and its retry), shared


async def test_a_query_nobody_waits_for_any_more_stops(dns_server: DnsServer, zone: Zone) -> None:
    """Every caller cancelled (a client looping MAIL/RSET): no query is left running."""
    zone.timeout.add("gone.test")
    resolver = DnsResolver([dns_server.address], timeout=4.0)
    callers = [asyncio.ensure_future(resolver.lookup("gone.test", RecordType.A))
               for _ in range(3)]
    await asyncio.sleep(0.05)
    for caller in callers:
        caller.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    await asyncio.sleep(0.05)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    # and a new caller asks afresh rather than joining a cancelled query
    zone.timeout.discard("gone.test")
    zone.add("gone.test", "A", "127.0.0.3")
    answer = await resolver.lookup("gone.test", RecordType.A)
    assert answer.values == ("127.0.0.3",)
