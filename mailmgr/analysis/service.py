"""Runs the configured analyzers: every one once per message, each bounded by its timeout and all
together by `Server.Analysis.Timeout`; an engine failure becomes a FAILED result (logged,
counted), never an exception. Derives the spam and virus verdicts. Decides nothing about mail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from mailmgr import logs
from mailmgr.admin.cells import CounterCell, HistogramCell
from mailmgr.admin.metrics import METRICS
from mailmgr.analysis.base import AnalysisError, Engine, SessionEngine
from mailmgr.config.models import AnalyzerEngine, Config
from mailmgr.message import (
    AnalysisResult,
    AnalysisResults,
    AnalysisStatus,
    InboundMessage,
    Verdict,
)
from mailmgr.verdicts.dns import Resolver

# Failure reasons the engines raise (AnalysisError.reason); anything else counts as "other" so
# the metric's label stays bounded.
REASONS = frozenset({"connect", "protocol", "refused", "dns", "timeout", "internal"})
# Spam verdicts come from DNS lists and rspamd, virus verdicts from ClamAV (SES's receipt
# `spamVerdict` and `virusVerdict`).
SPAM_ENGINES = frozenset({AnalyzerEngine.DNSBL.value, AnalyzerEngine.RSPAMD.value})
VIRUS_ENGINES = frozenset({AnalyzerEngine.CLAMAV.value})
# Worst first: one FAIL makes the combined verdict FAIL, and so on.
FAILURE_LOG_INTERVAL = 10.0  # seconds between two analysis.failed lines of one kind
_SEVERITY = (Verdict.FAIL, Verdict.GRAY, Verdict.PROCESSING_FAILED, Verdict.PASS)

EngineFactory = Callable[[Config, Resolver], Sequence[Engine]]


class AnalysisService:
    """Built once per config (start-up and reload), closed when the config is replaced."""

    def __init__(self, engines: Sequence[Engine], *, timeout: float) -> None:
        """`timeout`: seconds for all analyzers of one message (or one RCPT) together; each
        engine is also bounded by its own settings' `timeout`."""
        self.engines = tuple(engines)
        self.timeout = timeout
        self._session_engines: tuple[SessionEngine, ...] = tuple(
            e for e in self.engines if isinstance(e, SessionEngine)
        )
        self._kinds = frozenset(e.analyzer.engine.value for e in self.engines)
        self._cells: dict[tuple[str, str, str], CounterCell] = {}
        self._failures: dict[tuple[str, str], CounterCell] = {}
        self._durations: dict[tuple[str, str], HistogramCell] = {}
        # (analyzer, reason) -> (when last logged, failures not logged since)
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}

    @classmethod
    def from_config(cls, config: Config, resolver: Resolver) -> AnalysisService | None:
        """None when no analyzer is configured (the hot path then skips analysis entirely)."""
        if not config.analyzers:
            return None
        from mailmgr.analysis.registry import build_engines

        return cls(build_engines(config.analyzers, resolver),
                   timeout=config.server.analysis.timeout)

    @property
    def has_session_engines(self) -> bool:
        return bool(self._session_engines)

    async def close(self) -> None:
        for engine in self.engines:
            try:
                await engine.close()
            except Exception as exc:  # closing one must not keep the others open
                logs.warning("analysis.close_failed", analyzer=engine.analyzer.name,
                             error=type(exc).__name__)

    async def session(self, peer_ip: str, helo: str, mail_from: str) -> AnalysisResults:
        """RCPT time: the session engines' (DNSBL) results for one transaction."""
        if not self._session_engines:
            return AnalysisResults()
        deadline = time.monotonic() + self.timeout

        def runner(engine: SessionEngine) -> Callable[[], Awaitable[AnalysisResult]]:
            return lambda: engine.analyze_session(peer_ip, helo, mail_from)

        results = await asyncio.gather(*(
            self._run(e, "rcpt", deadline, runner(e), log_context={"peer_ip": peer_ip})
            for e in self._session_engines
        ))
        return AnalysisResults(tuple(results))

    async def analyze(self, message: InboundMessage) -> AnalysisResults:
        """After the 250: every analyzer's result for `message`, in config order. A DNSBL
        analyzer extends its RCPT-time result stored with the message (`message.analysis`)."""
        deadline = time.monotonic() + self.timeout

        def runner(engine: Engine) -> Callable[[], Awaitable[AnalysisResult]]:
            early = message.analysis.get(engine.analyzer.name)
            return lambda: engine.analyze(message, early)

        results = await asyncio.gather(*(
            self._run(e, "message", deadline, runner(e),
                      log_context={"message_id": message.id})
            for e in self.engines
        ))
        return AnalysisResults(tuple(results))

    def verdicts(self, results: AnalysisResults) -> tuple[Verdict | None, Verdict | None]:
        """(spam, virus): the worst verdict of the analyzers of that kind, None (DISABLED in
        SES events) when no analyzer of that kind is configured."""
        spam = combine([r.verdict for r in results.results if r.engine in SPAM_ENGINES]) \
            if self._kinds & SPAM_ENGINES else None
        virus = combine([r.verdict for r in results.results if r.engine in VIRUS_ENGINES]) \
            if self._kinds & VIRUS_ENGINES else None
        return spam, virus

    async def _run(
        self,
        engine: Engine,
        phase: str,
        deadline: float,
        call: Callable[[], Awaitable[AnalysisResult]],
        *,
        log_context: dict[str, str],
    ) -> AnalysisResult:
        analyzer = engine.analyzer
        started = time.monotonic()
        budget = max(0.0, min(analyzer.settings.timeout, deadline - started))
        try:
            async with asyncio.timeout(budget):
                result = await call()
        except TimeoutError:
            result = self._failed(engine, phase, "timeout",
                                  f"no answer within {budget:.3g} s", log_context)
        except AnalysisError as exc:
            result = self._failed(engine, phase, exc.reason, exc.detail, log_context)
        except Exception as exc:  # an engine's bug must not stall or lose the message
            result = self._failed(engine, phase, "internal", type(exc).__name__, log_context)
        self._observe(analyzer.name, phase, result.status, time.monotonic() - started)
        return result

    def _failed(self, engine: Engine, phase: str, reason: str, detail: str,
                context: dict[str, str]) -> AnalysisResult:
        analyzer = engine.analyzer
        reason = reason if reason in REASONS else "other"
        key = (analyzer.name, reason)
        cell = self._failures.get(key)
        if cell is None:
            cell = self._failures[key] = METRICS.analysis_failures.labels(*key)
        cell.inc()
        # An engine that is down fails every message: one line per analyzer and reason every
        # FAILURE_LOG_INTERVAL seconds, with how many were not logged (the metric counts all).
        now = time.monotonic()
        last, suppressed = self._logged.get(key, (-FAILURE_LOG_INTERVAL, 0))
        if now - last < FAILURE_LOG_INTERVAL:
            self._logged[key] = (last, suppressed + 1)
        else:
            self._logged[key] = (now, 0)
            logs.warning("analysis.failed", analyzer=analyzer.name, engine=analyzer.engine.value,
                         phase=phase, reason=reason, detail=detail[:200], suppressed=suppressed,
                         **context)
        return AnalysisResult(
            analyzer=analyzer.name,
            engine=analyzer.engine.value,
            status=AnalysisStatus.FAILED,
            verdict=Verdict.PROCESSING_FAILED,
            detail=f"{reason}: {detail}"[:200] if detail else reason,
        )

    def _observe(self, analyzer: str, phase: str, status: AnalysisStatus, seconds: float) -> None:
        key = (analyzer, phase, status.value)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = METRICS.analysis_runs.labels(*key)
        cell.inc()
        timing = self._durations.get((analyzer, phase))
        if timing is None:
            timing = self._durations[(analyzer, phase)] = METRICS.analysis_duration.labels(
                analyzer, phase)
        timing.observe(seconds)


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """The worst of `verdicts` (FAIL, GRAY, PROCESSING_FAILED, PASS); PASS when empty."""
    for verdict in _SEVERITY:
        if verdict in verdicts:
            return verdict
    return Verdict.PASS


class AnalysisSwitch:
    """What ingress points hold (the SessionAnalyzer seam): the current service, swapped by a
    reload without touching the listeners. A connection reads `enabled` once, at its start."""

    def __init__(self, service: AnalysisService | None = None) -> None:
        self.service = service

    @property
    def enabled(self) -> bool:
        return self.service is not None and self.service.has_session_engines

    async def session(self, peer_ip: str, helo: str, mail_from: str) -> AnalysisResults:
        service = self.service
        if service is None:
            return AnalysisResults()
        return await service.session(peer_ip, helo, mail_from)
