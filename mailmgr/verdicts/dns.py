"""The DNS seam of the verdict checks: a Resolver protocol, the dnspython implementation (async for
the event loop, sync for libraries running in executor threads) and the TTL cache both share.

Owns nameserver settings, timeouts, caching, request coalescing and the per-message query budget
(BudgetedResolver, MAX_QUERIES_PER_MESSAGE); must not interpret SPF, DKIM or DMARC records.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver

from mailmgr import logs
from mailmgr.config.fields import parse_host_port

_R = TypeVar("_R", bound=dns.resolver.BaseResolver)
MAX_TTL = 86400.0  # a hostile or broken zone must not pin an answer for longer than a day
DEFAULT_CACHE_SIZE = 10_000
# A negative answer without SOA (some forwarders send none) is still cached this long, as
# resolvers do; otherwise every message re-asks for the same missing _dmarc record.
DEFAULT_NEGATIVE_TTL = 60.0
# One UDP attempt waits at most this long; dnspython then retries (with backoff) within the
# lookup's lifetime, so one dropped datagram does not cost the whole timeout.
ATTEMPT_TIMEOUT = 1.0
# DNS lookups one message's verdicts may send (SPF, DKIM and DMARC together; cached answers are
# free). SPF's own 10-lookup limit (RFC 7208 4.6.4) still applies inside it.
MAX_QUERIES_PER_MESSAGE = 50


class RecordType(StrEnum):
    A = "A"
    AAAA = "AAAA"
    MX = "MX"
    PTR = "PTR"
    TXT = "TXT"
    SPF = "SPF"


class Outcome(StrEnum):
    FOUND = "FOUND"
    NXDOMAIN = "NXDOMAIN"
    NODATA = "NODATA"
    ERROR = "ERROR"  # SERVFAIL, REFUSED, timeout, no nameserver: a temporary failure


@dataclass(frozen=True)
class DnsAnswer:
    """One lookup's result. `texts` holds TXT/SPF records (character-strings concatenated, as
    bytes since TXT has no charset), `values` A/AAAA addresses and PTR names, `mx`
    (preference, exchange) pairs. Names are without the trailing dot."""

    outcome: Outcome
    texts: tuple[bytes, ...] = ()
    values: tuple[str, ...] = ()
    mx: tuple[tuple[int, str], ...] = ()
    reason: str = ""

    @property
    def temporary_failure(self) -> bool:
        return self.outcome is Outcome.ERROR


class Resolver(Protocol):
    """What the checks need from DNS. Both methods never raise for a DNS failure: they return an
    ERROR answer. `budget` caps this one lookup (callers pass what is left of their budget)."""

    async def lookup(self, name: str, rdtype: RecordType, budget: float | None = None
                     ) -> DnsAnswer: ...

    def lookup_sync(self, name: str, rdtype: RecordType, budget: float | None = None
                    ) -> DnsAnswer: ...


class DnsCache:
    """A thread-safe LRU of answers keyed by (name, type), each kept for its TTL."""

    def __init__(self, max_entries: int = DEFAULT_CACHE_SIZE) -> None:
        self._max = max(1, max_entries)
        self._entries: OrderedDict[tuple[str, RecordType], tuple[float, DnsAnswer]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, name: str, rdtype: RecordType) -> DnsAnswer | None:
        key = (name, rdtype)
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                return None
            if item[0] <= time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return item[1]

    def put(self, name: str, rdtype: RecordType, answer: DnsAnswer, ttl: float) -> None:
        if ttl <= 0 or answer.outcome is Outcome.ERROR:
            return
        with self._lock:
            self._entries[(name, rdtype)] = (time.monotonic() + min(ttl, MAX_TTL), answer)
            self._entries.move_to_end((name, rdtype))
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _nameserver(text: str) -> dns.nameserver.Do53Nameserver:
    address = parse_host_port(text, default_port=53)
    host = address.host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # A name: resolve it once, at start-up, with the system resolver.
        host = str(socket.getaddrinfo(host, address.port, type=socket.SOCK_DGRAM)[0][4][0])
    return dns.nameserver.Do53Nameserver(host, address.port)


def _normalise(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _negative_ttl(response: dns.message.Message | None, default: float) -> float:
    """RFC 2308: a negative answer lives for min(SOA TTL, SOA MINIMUM); without SOA, `default`."""
    if response is None:
        return default
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return float(min(rrset.ttl, rrset[0].minimum))  # type: ignore[attr-defined]
    return default


def _answer_from(rdtype: RecordType, answer: dns.resolver.Answer, negative_ttl: float
                 ) -> tuple[DnsAnswer, float]:
    rrset = answer.rrset
    if rrset is None or len(rrset) == 0:
        return DnsAnswer(Outcome.NODATA), _negative_ttl(answer.response, negative_ttl)
    texts: list[bytes] = []
    values: list[str] = []
    mx: list[tuple[int, str]] = []
    for rdata in rrset:
        if rdtype in (RecordType.TXT, RecordType.SPF):
            texts.append(b"".join(rdata.strings))  # type: ignore[attr-defined]
        elif rdtype in (RecordType.A, RecordType.AAAA):
            values.append(str(rdata.address))  # type: ignore[attr-defined]
        elif rdtype is RecordType.MX:
            exchange = rdata.exchange.to_text(omit_final_dot=True)  # type: ignore[attr-defined]
            mx.append((int(rdata.preference), exchange))  # type: ignore[attr-defined]
        elif rdtype is RecordType.PTR:
            values.append(rdata.target.to_text(omit_final_dot=True))  # type: ignore[attr-defined]
    found = DnsAnswer(Outcome.FOUND, tuple(texts), tuple(values), tuple(mx))
    return found, float(rrset.ttl)


class _SyncFlight:
    """A lookup in progress on some executor thread; other threads wait for its answer."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: DnsAnswer | None = None


_Key = tuple[str, RecordType]


class _Flight:
    """One query in flight (async side) and how many callers wait for it."""

    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[DnsAnswer]) -> None:
        self.task = task
        self.waiters = 0


class DnsResolver:
    """dnspython-backed Resolver with one cache for async and sync callers.

    `nameservers` are `host`, `host:port` or `[v6]:port` strings (Server.Dns.Nameservers);
    empty means the system resolver configuration. `timeout` bounds every lookup.
    Concurrent lookups of the same (name, type) share one query: a burst of messages from one
    domain asks once, not once per message (upstream resolvers drop bursts of identical
    queries, which turns into timeouts).
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        timeout: float = 5.0,
        *,
        cache: DnsCache | None = None,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
    ) -> None:
        self.timeout = timeout
        self.negative_ttl = max(0.0, negative_ttl)
        self.cache = cache if cache is not None else DnsCache()
        self._servers = [_nameserver(text) for text in nameservers]
        self._async = self._configure(dns.asyncresolver.Resolver(configure=False))
        self._local = threading.local()  # dnspython's sync Resolver is not shared across threads
        self._flights: dict[_Key, _Flight] = {}
        self._sync_flights: dict[_Key, _SyncFlight] = {}
        self._sync_lock = threading.Lock()

    def _configure(self, resolver: _R) -> _R:
        if self._servers:
            resolver.nameservers = list(self._servers)
        else:
            try:
                resolver.read_resolv_conf("/etc/resolv.conf")
            except (OSError, dns.resolver.NoResolverConfiguration) as exc:
                logs.warning("dns.no_system_resolver", error=str(exc))
                resolver.nameservers = ["127.0.0.1"]
        resolver.timeout = min(self.timeout, ATTEMPT_TIMEOUT)
        resolver.lifetime = self.timeout
        resolver.cache = None  # ours is shared with the sync side and bounded
        return resolver

    def _sync_resolver(self) -> dns.resolver.Resolver:
        resolver: dns.resolver.Resolver | None = getattr(self._local, "resolver", None)
        if resolver is None:
            resolver = self._configure(dns.resolver.Resolver(configure=False))
            self._local.resolver = resolver
        return resolver

    def _budget(self, budget: float | None) -> float:
        return self.timeout if budget is None else max(0.001, min(budget, self.timeout))

    def cached(self, name: str, rdtype: RecordType) -> DnsAnswer | None:
        """The cached answer, if any, without asking the network."""
        return self.cache.get(_normalise(name), rdtype)

    async def lookup(self, name: str, rdtype: RecordType, budget: float | None = None
                     ) -> DnsAnswer:
        key = _normalise(name)
        cached = self.cache.get(key, rdtype)
        if cached is not None:
            return cached
        if not key:
            return DnsAnswer(Outcome.NXDOMAIN, reason="empty name")
        loop = asyncio.get_running_loop()
        flight = self._flights.get((key, rdtype))
        if flight is None or flight.task.get_loop() is not loop:
            flight = self._start_flight(loop, key, rdtype, budget)
        flight.waiters += 1
        try:
            async with asyncio.timeout(self._budget(budget)):
                return await asyncio.shield(flight.task)
        except TimeoutError:
            return DnsAnswer(Outcome.ERROR, reason="timeout")
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                # Nobody wants the answer any more (every caller timed out or was cancelled):
                # stop asking, and let the next caller start afresh.
                if self._flights.get((key, rdtype)) is flight:
                    del self._flights[(key, rdtype)]
                flight.task.cancel()
                await asyncio.wait((flight.task,))  # gone before this caller is: no leak

    def _start_flight(self, loop: asyncio.AbstractEventLoop, key: str, rdtype: RecordType,
                      budget: float | None) -> _Flight:
        """The query as a task of its own: a caller that goes away (cancelled, or out of budget)
        leaves it running for the others; the last one to go cancels it."""
        flight = _Flight(loop.create_task(self._query_async(key, rdtype, budget)))
        self._flights[(key, rdtype)] = flight

        def landed(_: asyncio.Task[DnsAnswer]) -> None:
            if self._flights.get((key, rdtype)) is flight:
                del self._flights[(key, rdtype)]

        flight.task.add_done_callback(landed)
        return flight

    async def _query_async(self, key: str, rdtype: RecordType, budget: float | None
                           ) -> DnsAnswer:
        try:
            answer = await self._async.resolve(  # type: ignore[attr-defined]
                key + ".", rdtype.value, **self._resolve_options(budget)
            )
        except Exception as exc:  # every DNS failure becomes an answer
            return self._settle(key, rdtype, None, exc)
        return self._settle(key, rdtype, answer, None)

    def lookup_sync(self, name: str, rdtype: RecordType, budget: float | None = None
                    ) -> DnsAnswer:
        key = _normalise(name)
        cached = self.cache.get(key, rdtype)
        if cached is not None:
            return cached
        if not key:
            return DnsAnswer(Outcome.NXDOMAIN, reason="empty name")
        with self._sync_lock:
            flight = self._sync_flights.get((key, rdtype))
            leader = flight is None
            if flight is None:
                flight = self._sync_flights[(key, rdtype)] = _SyncFlight()
        if not leader:
            flight.done.wait(self._budget(budget))
            return flight.answer or DnsAnswer(Outcome.ERROR, reason="timeout")
        result = DnsAnswer(Outcome.ERROR, reason="interrupted")
        try:
            result = self._query_sync(key, rdtype, budget)
        finally:
            with self._sync_lock:
                del self._sync_flights[(key, rdtype)]
            flight.answer = result
            flight.done.set()
        return result

    def _query_sync(self, key: str, rdtype: RecordType, budget: float | None) -> DnsAnswer:
        try:
            answer = self._sync_resolver().resolve(
                key + ".", rdtype.value, **self._resolve_options(budget)
            )
        except Exception as exc:  # every DNS failure becomes an answer
            return self._settle(key, rdtype, None, exc)
        return self._settle(key, rdtype, answer, None)

    def _resolve_options(self, budget: float | None) -> dict[str, Any]:
        return {"lifetime": self._budget(budget), "raise_on_no_answer": False, "search": False}

    def _settle(
        self, key: str, rdtype: RecordType, answer: Any, error: Exception | None
    ) -> DnsAnswer:
        """The answer (or failure) as a DnsAnswer, cached for its TTL. Shared by both paths."""
        if error is not None:
            result, ttl = _failure(error, self.negative_ttl)
        else:
            try:
                result, ttl = _answer_from(rdtype, answer, self.negative_ttl)
            except Exception as exc:  # a malformed answer is a failure like any other
                result, ttl = _failure(exc, self.negative_ttl)
        self.cache.put(key, rdtype, result, ttl)
        return result


def _failure(exc: Exception, negative_ttl: float) -> tuple[DnsAnswer, float]:
    if isinstance(exc, dns.resolver.NXDOMAIN):
        responses = list(exc.responses().values())  # type: ignore[no-untyped-call]
        return (DnsAnswer(Outcome.NXDOMAIN),
                _negative_ttl(responses[0] if responses else None, negative_ttl))
    if isinstance(exc, dns.exception.Timeout):
        return DnsAnswer(Outcome.ERROR, reason="timeout"), 0.0
    if isinstance(exc, dns.resolver.NoNameservers):
        return DnsAnswer(Outcome.ERROR, reason="no nameserver answered (SERVFAIL)"), 0.0
    return DnsAnswer(Outcome.ERROR, reason=type(exc).__name__), 0.0


class BudgetedResolver:
    """A Resolver for one message's verdicts: at most `limit` lookups that are not answered from
    the cache go to `inner`; past that every lookup is an ERROR answer (a temporary failure, so
    the check asking is temperror / PROCESSING_FAILED). Thread-safe: SPF and DKIM ask from
    executor threads while DMARC asks on the loop. `exhausted` counts refused lookups."""

    def __init__(self, inner: Resolver, limit: int = MAX_QUERIES_PER_MESSAGE) -> None:
        self.inner = inner
        self.limit = max(0, limit)
        self.sent = 0
        self.refused = 0
        self._lock = threading.Lock()

    def _cached(self, name: str, rdtype: RecordType) -> DnsAnswer | None:
        if isinstance(self.inner, DnsResolver):
            return self.inner.cached(name, rdtype)
        return None

    def _take(self) -> bool:
        with self._lock:
            if self.sent < self.limit:
                self.sent += 1
                return True
            self.refused += 1
            return False

    @property
    def exhausted(self) -> bool:
        return self.refused > 0

    async def lookup(self, name: str, rdtype: RecordType, budget: float | None = None
                     ) -> DnsAnswer:
        cached = self._cached(name, rdtype)
        if cached is not None:
            return cached
        if not self._take():
            return _OVER_BUDGET
        return await self.inner.lookup(name, rdtype, budget)

    def lookup_sync(self, name: str, rdtype: RecordType, budget: float | None = None
                    ) -> DnsAnswer:
        cached = self._cached(name, rdtype)
        if cached is not None:
            return cached
        if not self._take():
            return _OVER_BUDGET
        return self.inner.lookup_sync(name, rdtype, budget)


_OVER_BUDGET = DnsAnswer(Outcome.ERROR, reason="per-message DNS query budget exhausted")
