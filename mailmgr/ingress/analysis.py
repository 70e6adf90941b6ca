"""One connection's RCPT-time analyses (DNSBL add-ons): started at MAIL so they overlap the
client's round trips, awaited at RCPT only when the traffic policy reads them, and taken at DATA
only if already finished (the 250 never waits for them: the worker then runs them instead).
"""

from __future__ import annotations

import asyncio

from mailmgr.ingress.seams import SessionAnalyzer
from mailmgr.message import AnalysisResults, AnalysisStatus, SessionFacts

NO_ANALYSIS = AnalysisResults()


class TransactionAnalysis:
    """At most one analysis in flight per connection: a new MAIL replaces (cancels) an
    unfinished one, and the connection's end cancels the last, so no task outlives it. A
    transaction with the same HELO and sender as the previous one reuses its result unless an
    analyzer failed (the resolver's cache would answer anyway; this also saves the task)."""

    __slots__ = ("_analyzer", "_key", "_task")

    def __init__(self, analyzer: SessionAnalyzer) -> None:
        self._analyzer = analyzer
        self._key: tuple[str, str] | None = None
        self._task: asyncio.Task[AnalysisResults] | None = None

    def begin(self, facts: SessionFacts, mail_from: str) -> None:
        key = (facts.helo, mail_from)
        if key == self._key and self._reusable():
            return
        self.close()
        self._key = key
        self._task = asyncio.ensure_future(
            self._analyzer.session(facts.peer_ip, facts.helo, mail_from))

    def _reusable(self) -> bool:
        """The last transaction's analysis may serve the next one: still running, or finished
        with every analyzer answering. A failed one (a timeout, a refusal) is asked again, or
        one slow answer would exempt a listed client for the rest of its session."""
        task = self._task
        if task is None or task.cancelled():
            return False
        if not task.done():
            return True
        if task.exception() is not None:
            return False
        return all(r.status is AnalysisStatus.OK for r in task.result().results)

    async def results(self) -> AnalysisResults:
        """The transaction's results, waiting for them (the service bounds the wait by the
        analyzers' timeouts and never raises for an engine failure)."""
        task = self._task
        if task is None:
            return NO_ANALYSIS
        return await asyncio.shield(task)  # a RCPT cancelled by a disconnect leaves it to close()

    def ready(self) -> AnalysisResults:
        """The results if they are in, without waiting."""
        task = self._task
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return NO_ANALYSIS
        return task.result()

    def close(self) -> None:
        task, self._task, self._key = self._task, None, None
        if task is not None and not task.done():
            task.cancel()
