"""The DNSBL engine (SPAMHAUS_DBL, ABUSIX_MAIL_INTELLIGENCE): IP zones asked about the client
address, domain zones about the HELO, envelope-sender, From and body URL domains, through
mailmgr's resolver; answers read as listings (127.0.0.0/8), refusals (127.255.255.0/24) or errors.

Results: `isListed` (bool) and `listedOn` (the list names, comma-joined, in query order and then
answer-address order, each once: the zone's `codes` name for the answer address, else
"<zone>:<address>"). A listing wins over failed
queries; failed queries without a listing raise AnalysisError ("refused" when a list refused to
answer, else "dns"). Which names were asked is in the module docstring of analysis/urls.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mailmgr.analysis.base import AnalysisError
from mailmgr.analysis.urls import (
    address_domain,
    body_domains,
    from_domains,
    helo_domain,
    with_organizational,
)
from mailmgr.config.models import (
    Analyzer,
    AnalyzerEngine,
    DnsblSettings,
    DnsblZone,
    DnsblZoneType,
)
from mailmgr.message import AnalysisResult, AnalysisStatus, InboundMessage, Verdict
from mailmgr.verdicts.dns import DnsAnswer, Outcome, RecordType, Resolver

MAX_IN_FLIGHT = 16  # queries of one analysis sent at once
# Larger messages are parsed for From and URL domains in a worker thread: the walk and the
# URL scan (bounded: analysis/urls.py) take up to tens of milliseconds, too long for the loop.
PARSE_IN_THREAD_BYTES = 64 * 1024
MAX_DETAIL = 200  # AnalysisResult.detail's bound
_LISTED = ipaddress.ip_network("127.0.0.0/8")
# Spamhaus's "not a listing" answers: 127.255.255.252 typo in the zone name, .254 query through a
# public resolver, .255 excessive queries; other lists use the same block for the same purpose.
_REFUSED = ipaddress.ip_network("127.255.255.0/24")


@dataclass(frozen=True)
class _Query:
    """One question to one list: `item` says what was asked about ("client 192.0.2.1", "HELO
    example.test"), for the detail; `name` is the full query name under the zone."""

    name: str
    zone: DnsblZone
    item: str


@dataclass(frozen=True)
class _Answer:
    query: _Query
    lists: tuple[str, ...] = ()  # list names when listed
    error: str = ""  # "" when the query succeeded
    refused: bool = False


@dataclass(frozen=True)
class _Outcome:
    """A set of queries' answers, folded."""

    asked: int
    listings: tuple[_Answer, ...]
    errors: tuple[_Answer, ...]


def ip_query_prefix(peer_ip: str, include_private: bool) -> str | None:
    """The reversed-octet (IPv4) or reversed-nibble (IPv6, 32 labels) form of the client
    address; an IPv4-mapped IPv6 address is asked as IPv4. None for an unparsable address and,
    unless `include_private`, for one that is not globally routable (loopback, private,
    link-local, unspecified, reserved, shared)."""
    try:
        address = ipaddress.ip_address(peer_ip.strip().partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not include_private and not address.is_global:
        return None
    if isinstance(address, ipaddress.IPv4Address):
        return ".".join(reversed(str(address).split(".")))
    return ".".join(reversed(address.exploded.replace(":", "")))


class DnsblEngine:
    """The engine of one Dnsbl analyzer (`analyzer.settings` is a DnsblSettings). Every query
    goes through `resolver` (its cache and request coalescing), at most MAX_IN_FLIGHT at once,
    all of one analysis within `settings.timeout` seconds together."""

    def __init__(self, analyzer: Analyzer, resolver: Resolver) -> None:
        if not isinstance(analyzer.settings, DnsblSettings):
            raise TypeError(f"analyzer {analyzer.name} is not a Dnsbl analyzer")
        self.analyzer = analyzer
        self.settings: DnsblSettings = analyzer.settings
        self.resolver = resolver

    async def analyze_session(self, peer_ip: str, helo: str, mail_from: str) -> AnalysisResult:
        """The result for the client address (IP zones) and the HELO and envelope-sender
        domains (DOMAIN zones). Raises AnalysisError when a query failed and none listed."""
        queries = self._session_queries(peer_ip, helo, mail_from)
        return self._result(await self._ask(queries), None)

    async def analyze(self, message: InboundMessage, early: AnalysisResult | None
                      ) -> AnalysisResult:
        """The result for an accepted message: `early` (this analyzer's OK result at RCPT) is
        kept and only the From and body URL domains are asked; without a usable `early`, the
        session's queries are asked too. Raises AnalysisError as analyze_session."""
        session = self._session_queries(message.session.peer_ip, message.session.helo,
                                        message.envelope.mail_from)
        reuse = (early is not None and early.status is AnalysisStatus.OK
                 and early.analyzer == self.analyzer.name)
        done = {q.name for q in session}
        if len(message.content) > PARSE_IN_THREAD_BYTES:
            queries = await asyncio.to_thread(self._message_queries, message.content, done)
        else:
            queries = self._message_queries(message.content, done)
        if not reuse:
            queries = session + queries
        return self._result(await self._ask(queries), early if reuse else None)

    async def close(self) -> None:
        """Nothing to release: the resolver is shared and owned by the server."""

    # --- what is asked ---------------------------------------------------------------------------

    def _zones(self, kind: DnsblZoneType) -> tuple[DnsblZone, ...]:
        return tuple(z for z in self.settings.zones if z.type is kind)

    def _domain_queries(self, items: Iterable[tuple[str, str]]) -> list[_Query]:
        """`items`: (what, domain) pairs; one query per zone and distinct name that fits."""
        queries: list[_Query] = []
        for zone in self._zones(DnsblZoneType.DOMAIN):
            suffix = zone.zone.strip().rstrip(".").lower()
            for what, domain in items:
                name = f"{domain}.{suffix}"
                if len(name) <= 253:
                    queries.append(_Query(name, zone, f"{what} {domain}"))
        return queries

    def _session_queries(self, peer_ip: str, helo: str, mail_from: str) -> list[_Query]:
        queries: list[_Query] = []
        prefix = ip_query_prefix(peer_ip, self.settings.include_private)
        if prefix is not None:
            for zone in self._zones(DnsblZoneType.IP):
                name = f"{prefix}.{zone.zone.strip().rstrip('.').lower()}"
                queries.append(_Query(name, zone, f"client {peer_ip}"))
        items: list[tuple[str, str]] = []
        for what, domain in (("HELO", helo_domain(helo)), ("MAIL FROM", address_domain(mail_from))):
            if domain is not None:
                items.extend((what, name) for name in with_organizational(domain))
        return _distinct(queries + self._domain_queries(items))

    def _message_queries(self, content: bytes, done: set[str]) -> list[_Query]:
        if not self._zones(DnsblZoneType.DOMAIN):
            return []  # no need to parse the message at all
        items: list[tuple[str, str]] = []
        for domain in from_domains(content):
            items.extend(("From", name) for name in with_organizational(domain))
        items.extend(("URL", name)
                     for name in body_domains(content, self.settings.max_body_domains))
        return [q for q in _distinct(self._domain_queries(items)) if q.name not in done]

    # --- asking ----------------------------------------------------------------------------------

    async def _ask(self, queries: list[_Query]) -> _Outcome:
        """Every query's answer, at most MAX_IN_FLIGHT in flight; a query the time budget
        leaves no room for is an error (timeout). Cancellation cancels every worker."""
        answers: list[_Answer | None] = [None] * len(queries)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.timeout
        # Answers in the resolver's cache are read on the spot: a busy MX sees the same
        # clients and domains again and again, and a task per cached query would cost more
        # than the lookup (RCPT waits for this when a traffic policy reads the result).
        cached: Callable[[str, RecordType], DnsAnswer | None] | None = getattr(
            self.resolver, "cached", None)
        misses: list[int] = []
        for index, query in enumerate(queries):
            hit = cached(query.name, RecordType.A) if cached is not None else None
            if hit is None:
                misses.append(index)
            else:
                answers[index] = _read(query, hit)
        pending = iter(misses)

        async def worker() -> None:
            for index in pending:
                answers[index] = await self._one(queries[index], deadline - loop.time())

        if misses:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(MAX_IN_FLIGHT, len(misses))):
                    group.create_task(worker())
        done = [a for a in answers if a is not None]
        return _Outcome(len(queries), tuple(a for a in done if a.lists),
                        tuple(a for a in done if a.error and not a.lists))

    async def _one(self, query: _Query, budget: float) -> _Answer:
        if budget <= 0:
            return _Answer(query, error="timeout")
        try:
            async with asyncio.timeout(budget):
                answer = await self.resolver.lookup(query.name, RecordType.A, budget)
        except TimeoutError:
            return _Answer(query, error="timeout")
        return _read(query, answer)

    # --- the result ------------------------------------------------------------------------------

    def _result(self, outcome: _Outcome, early: AnalysisResult | None) -> AnalysisResult:
        names: dict[str, None] = {}
        listed_items: list[str] = []
        if early is not None and early.value("isListed") is True:
            for name in str(early.value("listedOn") or "").split(","):
                if name:
                    names.setdefault(name, None)
            listed_items.append(early.detail.removeprefix("listed: "))
        for answer in outcome.listings:
            for name in answer.lists:
                names.setdefault(name, None)
            listed_items.append(f"{answer.query.item} on {answer.query.zone.zone}"
                                f" ({','.join(answer.lists)})")
        if names:
            return self._ok(True, ",".join(names), "listed: " + "; ".join(listed_items))
        if outcome.errors:
            refused = [a for a in outcome.errors if a.refused]
            first = (refused or list(outcome.errors))[0]
            raise AnalysisError(
                "refused" if refused else "dns",
                _clip(f"{len(outcome.errors)} of {outcome.asked} queries failed, e.g."
                      f" {first.query.item} on {first.query.zone.zone}: {first.error}"),
            )
        if early is not None:
            detail = f"not listed (RCPT-time result kept; {outcome.asked} more queries)"
        elif outcome.asked:
            detail = f"not listed ({outcome.asked} queries)"
        else:
            detail = "nothing to query (client address not public or no IP zone; no domain)"
        return self._ok(False, "", detail)

    def _ok(self, listed: bool, listed_on: str, detail: str) -> AnalysisResult:
        return AnalysisResult(
            analyzer=self.analyzer.name,
            engine=AnalyzerEngine.DNSBL.value,
            status=AnalysisStatus.OK,
            verdict=Verdict.FAIL if listed else Verdict.PASS,
            fields=(("isListed", listed), ("listedOn", listed_on)),
            detail=_clip(detail),
        )


def _read(query: _Query, answer: DnsAnswer) -> _Answer:
    """One answer read: NXDOMAIN/NODATA not listed; A records in 127.0.0.0/8 listed (a name
    per address); an address in 127.255.255.0/24 a refusal; any other address an error (a
    resolver that answers for names that do not exist); ERROR an error."""
    if answer.outcome in (Outcome.NXDOMAIN, Outcome.NODATA):
        return _Answer(query)
    if answer.outcome is Outcome.ERROR:
        return _Answer(query, error=answer.reason or "DNS error")
    codes = dict(query.zone.codes)
    lists: dict[str, None] = {}
    try:
        # Sorted: an RRset has no order, and listedOn must not change between two asks.
        addresses = sorted(ipaddress.ip_address(value) for value in answer.values)
    except (TypeError, ValueError):
        return _Answer(query, error="unparsable answer")
    for address in addresses:
        value = str(address)
        if address in _REFUSED:
            return _Answer(query, error=f"query refused ({value})", refused=True)
        if address not in _LISTED:
            return _Answer(query, error=f"answer {value} outside 127.0.0.0/8")
        lists.setdefault(codes.get(value) or f"{query.zone.zone}:{value}", None)
    return _Answer(query, lists=tuple(lists))


def _distinct(queries: list[_Query]) -> list[_Query]:
    seen: set[str] = set()
    out: list[_Query] = []
    for query in queries:
        if query.name not in seen:
            seen.add(query.name)
            out.append(query)
    return out


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL - 1] + "…"
