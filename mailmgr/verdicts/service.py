"""Computes one message's verdicts within a bound: SPF and DKIM in worker threads (the libraries
are synchronous), then DMARC on the loop. Built once at start-up. The common cases skip the
threads: SPF whose DNS answers are all cached runs on the loop (microseconds), and a message
without a DKIM-Signature is GRAY without being parsed.

Never raises for a DNS or library failure and never exceeds `timeout`: an unfinished check is
PROCESSING_FAILED. Every check of one message shares one DNS query budget (dns.BudgetedResolver,
50 lookups): past it lookups fail as temporary errors. Must not decide anything about rules or
actions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from mailmgr import logs
from mailmgr.config.models import Config
from mailmgr.message import InboundMessage, Verdict, Verdicts
from mailmgr.verdicts.auth_results import header_value
from mailmgr.verdicts.dkim import UNSIGNED, DkimResult, check_dkim, may_be_signed
from mailmgr.verdicts.dmarc import DmarcResult, check_dmarc, from_domains
from mailmgr.verdicts.dns import (
    MAX_QUERIES_PER_MESSAGE,
    BudgetedResolver,
    DnsResolver,
    Resolver,
)
from mailmgr.verdicts.spf import SpfResult, check_spf, check_spf_cached

DEFAULT_TIMEOUT = 10.0
DEFAULT_THREADS = 4
T = TypeVar("T")


@dataclass(frozen=True)
class Authentication:
    """The verdicts plus the detail Authentication-Results reports (None: not done in time)."""

    verdicts: Verdicts
    spf: SpfResult | None
    dkim: DkimResult | None
    dmarc: DmarcResult | None

    def header_value(self, authserv_id: str) -> str:
        return header_value(authserv_id, self.spf, self.dkim, self.dmarc)


class VerdictsService:
    def __init__(
        self,
        resolver: Resolver,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        threads: int = DEFAULT_THREADS,
        max_queries: int = MAX_QUERIES_PER_MESSAGE,
    ) -> None:
        """`max_queries`: DNS lookups (cache misses) one message's checks may send together."""
        self.resolver = resolver
        self.timeout = timeout
        self.max_queries = max_queries
        # Bounded: at most `threads` checks run at once; queued ones start with what is left of
        # their own deadline and return at once when it has passed.
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads),
                                        thread_name_prefix="verdicts")

    @classmethod
    def from_config(cls, config: Config, *, timeout: float | None = None) -> VerdictsService:
        """`timeout` None: `Server.Dns.VerdictTimeout` (10 s by default)."""
        server = config.server
        return cls(
            DnsResolver(server.dns_nameservers, server.dns_timeout),
            timeout=server.verdict_timeout if timeout is None else timeout,
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _in_thread(self, deadline: float, fn: Callable[[float], T]) -> T | None:
        def run() -> T | None:
            budget = deadline - time.monotonic()
            return fn(budget) if budget > 0 else None

        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

    async def compute(self, message: InboundMessage) -> Authentication:
        started = time.monotonic()
        deadline = started + self.timeout
        session, envelope = message.session, message.envelope
        # One budget for this message's SPF, DKIM and DMARC, counted at the resolver seam.
        resolver = BudgetedResolver(self.resolver, self.max_queries)
        spf: SpfResult | None = None
        if isinstance(self.resolver, DnsResolver):
            spf = check_spf_cached(self.resolver.cached, session.peer_ip, envelope.mail_from,
                                   session.helo)
        spf_task = None if spf is not None else asyncio.ensure_future(self._in_thread(
            deadline,
            lambda b: check_spf(resolver, session.peer_ip, envelope.mail_from,
                                session.helo, b),
        ))
        dkim: DkimResult | None = UNSIGNED
        if may_be_signed(message.content):
            dkim = await _bounded(asyncio.ensure_future(self._in_thread(
                deadline, lambda b: check_dkim(resolver, message.content, b),
            )), deadline)
        if spf_task is not None:
            spf = await _bounded(spf_task, deadline)
        dmarc = await _bounded(asyncio.ensure_future(
            self._dmarc(resolver, message, spf, dkim, deadline)), deadline)
        verdicts = Verdicts(
            spf=spf.verdict if spf else Verdict.PROCESSING_FAILED,
            dkim=dkim.verdict if dkim else Verdict.PROCESSING_FAILED,
            dmarc=dmarc.verdict if dmarc else Verdict.PROCESSING_FAILED,
            dmarc_policy=dmarc.policy if dmarc and dmarc.verdict is Verdict.FAIL else None,
        )
        logs.event(
            "verdicts.computed",
            message_id=message.id,
            spf=verdicts.spf.value,
            dkim=verdicts.dkim.value,
            dmarc=verdicts.dmarc.value,
            dmarc_policy=verdicts.dmarc_policy.value if verdicts.dmarc_policy else None,
            elapsed_ms=round((time.monotonic() - started) * 1000),
            dns_queries=resolver.sent,
        )
        if resolver.exhausted:
            logs.warning("verdicts.dns_budget_exhausted", message_id=message.id,
                         limit=resolver.limit, refused=resolver.refused)
        return Authentication(verdicts, spf, dkim, dmarc)

    async def _dmarc(self, resolver: Resolver, message: InboundMessage, spf: SpfResult | None,
                     dkim: DkimResult | None, deadline: float) -> DmarcResult:
        # A check that did not finish cannot make DMARC pass: treat it as not passing.
        spf = spf or SpfResult(Verdict.PROCESSING_FAILED, "temperror", "mailfrom", "", "")
        dkim = dkim or DkimResult(Verdict.PROCESSING_FAILED)
        domains = from_domains(message.content)
        return await check_dmarc(resolver, domains, spf, dkim, message.id,
                                 max(0.001, deadline - time.monotonic()))

    async def verdicts(self, message: InboundMessage) -> Verdicts:
        """explain's live-verdicts provider."""
        return (await self.compute(message)).verdicts


async def _bounded(task: Awaitable[T | None], deadline: float) -> T | None:
    """The task's result, or None when it failed or is still running at `deadline` (a thread
    cannot be stopped; it ends on its own deadline)."""
    future = asyncio.ensure_future(task)
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            return await asyncio.shield(future)
    except TimeoutError:
        future.cancel()
        return None
    except Exception as exc:  # a check's bug must not stall the message
        logs.warning("verdicts.check_failed", error=type(exc).__name__)
        return None
