"""SPF (RFC 7208) through pyspf, with its DNS routed to our Resolver.

pyspf is synchronous and looks DNS up through the module-level `spf.DNSLookup`. We install our
hook once; it finds the resolver and deadline of the check running on the current thread in a
thread-local, so concurrent checks in executor threads never share state. Must not do DMARC.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import spf

from mailmgr.message import Verdict
from mailmgr.verdicts.dns import DnsAnswer, Outcome, RecordType, Resolver

_MAPPING = {
    "pass": Verdict.PASS,
    "fail": Verdict.FAIL,
    "softfail": Verdict.FAIL,
    "none": Verdict.GRAY,
    "neutral": Verdict.GRAY,
    "temperror": Verdict.PROCESSING_FAILED,
    "permerror": Verdict.PROCESSING_FAILED,
}

_bound = threading.local()
_install_lock = threading.Lock()
_installed = False


@dataclass(frozen=True)
class SpfResult:
    """`result` is the RFC 7208 result name; `identity` is "mailfrom" or "helo" and `sender` the
    checked identity as Authentication-Results reports it (smtp.mailfrom / smtp.helo)."""

    verdict: Verdict
    result: str
    identity: str
    sender: str
    domain: str
    explanation: str = ""


def _records(name: str, qtype: str, answer_texts: tuple[bytes, ...], values: tuple[str, ...],
             mx: tuple[tuple[int, str], ...]) -> list[tuple[tuple[str, str], Any]]:
    key = (name, qtype)
    if qtype in ("TXT", "SPF"):
        return [(key, (text,)) for text in answer_texts]  # already concatenated
    if qtype == "MX":
        return [(key, pair) for pair in mx]
    return [(key, value) for value in values]


def _dns_lookup(name: str, qtype: str, strict: Any = True, timeout: Any = None
                ) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's DNS hook: [((name, type), value), ...]; an empty list for NXDOMAIN/NODATA."""
    bound: tuple[Resolver, float] | None = getattr(_bound, "context", None)
    if bound is None:
        raise spf.TempError("DNS: no resolver bound to this check")
    resolver, deadline = bound
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise spf.TempError("DNS: time budget exhausted")
    try:
        rdtype = RecordType(qtype)
    except ValueError:
        return []
    if any(len(label) > 63 for label in name.split(".")):
        return []  # RFC 7208 §4.3: not a valid domain name, no records
    answer = resolver.lookup_sync(name, rdtype, remaining)
    if answer.outcome is Outcome.ERROR:
        raise spf.TempError(f"DNS {answer.reason}")
    return _records(name, qtype, answer.texts, answer.values, answer.mx)


def install() -> None:
    """Route pyspf's DNS through `_dns_lookup` (idempotent; global, so done exactly once)."""
    global _installed
    with _install_lock:
        if not _installed:
            spf.DNSLookup = _dns_lookup
            _installed = True


@contextmanager
def _bind(resolver: Resolver, deadline: float) -> Iterator[None]:
    previous = getattr(_bound, "context", None)
    _bound.context = (resolver, deadline)
    try:
        yield
    finally:
        _bound.context = previous


class _CacheMissError(Exception):
    pass


class _CacheOnly:
    """A Resolver that answers from a cache and fails on anything else, remembering that it
    did: a check that needed the network is thrown away and re-run in an executor."""

    def __init__(self, cached: Callable[[str, RecordType], DnsAnswer | None]) -> None:
        self._cached = cached
        self.missed = False

    def lookup_sync(self, name: str, rdtype: RecordType, budget: float | None = None
                    ) -> DnsAnswer:
        answer = self._cached(name, rdtype)
        if answer is None:
            self.missed = True
            raise _CacheMissError(name)
        return answer

    async def lookup(self, name: str, rdtype: RecordType, budget: float | None = None
                     ) -> DnsAnswer:
        return self.lookup_sync(name, rdtype, budget)


def check_spf_cached(
    cached: Callable[[str, RecordType], DnsAnswer | None], ip: str, mail_from: str, helo: str
) -> SpfResult | None:
    """check_spf from cached DNS answers only, cheap enough for the event loop (pyspf does no
    I/O of its own); None when some answer was not cached (then run check_spf in a thread)."""
    resolver = _CacheOnly(cached)
    result = check_spf(resolver, ip, mail_from, helo, 1.0)
    return None if resolver.missed else result


def check_spf(
    resolver: Resolver, ip: str, mail_from: str, helo: str, budget: float
) -> SpfResult:
    """Check `mail_from`'s domain (the HELO name for a null sender) for `ip`. Synchronous: run it
    in an executor. Never raises; a library failure is PROCESSING_FAILED (temperror)."""
    install()
    identity = "mailfrom" if mail_from else "helo"
    sender = mail_from or helo
    domain = sender.rpartition("@")[2].lower()
    if not domain:
        return SpfResult(Verdict.GRAY, "none", identity, sender, domain, "no identity to check")
    budget = max(0.001, budget)
    try:
        with _bind(resolver, time.monotonic() + budget):
            query = spf.query(i=ip, s=mail_from, h=helo, timeout=budget, querytime=budget)
            result, _code, explanation = query.check()
    except Exception as exc:  # pyspf raising is a processing failure
        return SpfResult(Verdict.PROCESSING_FAILED, "temperror", identity, sender, domain,
                         type(exc).__name__)
    result = str(result).lower()
    verdict = _MAPPING.get(result, Verdict.PROCESSING_FAILED)
    return SpfResult(verdict, result, identity, sender, domain, str(explanation or ""))
