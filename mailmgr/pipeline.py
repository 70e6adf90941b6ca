"""One message through the rule set: verdicts and analyses (once, stored) → rule engine →
executor.

The spool worker calls a `Pipeline` for every due message; it owns no I/O of its own besides the
checkpoint callback it is handed, and never raises for an expected failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

from mailmgr import logs
from mailmgr.actions.base import Action, Resources
from mailmgr.actions.executor import execute
from mailmgr.actions.registry import build_actions
from mailmgr.admin.cells import CounterCell
from mailmgr.admin.metrics import METRICS
from mailmgr.analysis.headers import analysis_fields, forged_analysis_ranges
from mailmgr.analysis.service import AnalysisService
from mailmgr.config.models import Config, IngressPoint
from mailmgr.message import AnalysisResults, InboundMessage, ProcessingState, Verdict, Verdicts
from mailmgr.rules.address_lists import build_indexes
from mailmgr.rules.engine import CompiledRuleSet
from mailmgr.spool.store import SpoolEntry
from mailmgr.trace import received_field
from mailmgr.verdicts.auth_results import (
    STAMP_KEY,
    Stamp,
    message_eol,
    message_for_actions,
    stamp,
)
from mailmgr.verdicts.service import VerdictsService

Checkpoint = Callable[[ProcessingState], Awaitable[None]]


@dataclass(frozen=True)
class CompiledRuleSetWithActions:
    rules: CompiledRuleSet
    actions: tuple[tuple[Action, ...], ...]


def compile_rule_sets(
    config: Config, resources: Resources
) -> dict[str, CompiledRuleSetWithActions]:
    """Compile every rule set and build its action instances once, at start-up."""
    indexes = build_indexes(config.address_lists)
    return {
        rs.id: CompiledRuleSetWithActions(
            CompiledRuleSet.compile(rs, indexes), build_actions(rs, resources)
        )
        for rs in config.rule_sets
    }


# mailmgr_verdicts_total children by (kind, result): both enums, bound on first use.
_verdict_children: dict[tuple[str, str], CounterCell] = {}


def _count_verdicts(verdicts: Verdicts | None) -> None:
    """Once per message, when its verdicts are computed (a retry reuses them)."""
    if verdicts is None:
        return
    checked: tuple[tuple[str, Verdict | None], ...] = (
        ("spf", verdicts.spf), ("dkim", verdicts.dkim), ("dmarc", verdicts.dmarc),
        ("spam", verdicts.spam), ("virus", verdicts.virus))
    for kind, verdict in checked:
        if verdict is None:  # no analyzer of that kind
            continue
        key = (kind, verdict.value)
        child = _verdict_children.get(key)
        if child is None:
            child = _verdict_children[key] = METRICS.verdicts.labels(kind, verdict.value)
        child.inc()


class Pipeline:
    def __init__(
        self,
        config: Config,
        compiled: Mapping[str, CompiledRuleSetWithActions],
        clock: Callable[[], float] = time.time,
        verdicts: VerdictsService | None = None,
        retired: Mapping[str, IngressPoint] | None = None,
        analysis: AnalysisService | None = None,
    ) -> None:
        """`verdicts` None: every verdict is PROCESSING_FAILED and no header is added.
        `analysis` None: no analyzer is configured (spam and virus verdicts DISABLED).
        `retired`: ingress points (by ID) that reloads removed; a session open on one when it
        was removed may still get a 250, and that message runs the point's rule set as now
        configured, like every message accepted before a reload."""
        self._config = config
        self._verdicts = verdicts
        self._analysis = analysis
        self._compiled = compiled
        self._clock = clock
        self._ingress = {**(retired or {}), **{ip.id: ip for ip in config.ingress_points}}

    async def __call__(self, entry: SpoolEntry, checkpoint: Checkpoint) -> ProcessingState:
        message, state = entry.message, entry.state
        ingress = self._ingress.get(message.session.ingress_point_id)
        program = self._compiled.get(ingress.rule_set_id) if ingress else None
        if ingress is None or program is None:
            # The config changed since the message was accepted. Keep it in the spool and retry
            # later rather than guess a rule set: the operator can restore the ingress point.
            logs.error(
                "message.unroutable",
                message_id=message.id,
                ingress_point_id=message.session.ingress_point_id,
                reason="ingress point or its rule set is no longer configured",
            )
            return replace(
                state,
                attempts=state.attempts + 1,
                next_attempt_at=self._clock() + self._config.server.retry.delay(state.attempts),
            )
        if state.verdicts is None:
            state = await self._authenticate(entry, state)
            _count_verdicts(state.verdicts)
            await checkpoint(state)  # computed once: a retry or restart reuses them

        async def checkpoint_unless_done(state: ProcessingState) -> None:
            # A done state is returned to the spool worker, which finishes the message durably
            # at once; writing it first as well would cost a second durable write. Should the
            # process die in between, the last checkpoint resumes after the last completed
            # action and finds nothing left to do.
            if not state.done:
                await checkpoint(state)

        return await execute(
            message_for_actions(message, state, self._trace(message, state)),
            state,
            program.rules,
            program.actions,
            retry=self._config.server.retry,
            checkpoint=checkpoint_unless_done,
            now=self._clock,
            records=self._config.server.log_records,
        )

    def _trace(self, message: InboundMessage, state: ProcessingState) -> bytes:
        eol = message_eol(message.content)
        trace = received_field(message, self._config.server.hostname, eol)
        if self._config.server.analysis.add_headers and state.verdicts is not None:
            trace += analysis_fields(state.verdicts, eol)
        return trace

    async def _authenticate(self, entry: SpoolEntry, state: ProcessingState) -> ProcessingState:
        """Verdicts, analyses and the Authentication-Results stamp, each bounded by its
        service's timeout; the two services run side by side."""
        message = entry.message
        analysis_task = (asyncio.ensure_future(self._analyze(message))
                         if self._analysis is not None else None)
        try:
            verdicts, found = await self._authentication(message)
            if analysis_task is not None:
                assert self._analysis is not None
                results = await analysis_task
                spam, virus = self._analysis.verdicts(results)
                verdicts = replace(verdicts, spam=spam, virus=virus, analysis=results)
                logs.event("analysis.computed", message_id=message.id,
                           spam=spam.value if spam else None,
                           virus=virus.value if virus else None,
                           results={r.analyzer: f"{r.status.value} {r.verdict.value}"
                                    for r in results.results})
        finally:
            if analysis_task is not None and not analysis_task.done():
                analysis_task.cancel()  # the worker is stopping: nothing may outlive it
        if self._config.server.analysis.add_headers:
            # Incoming X-Mailmgr-Spam/-Virus fields go, as forged Authentication-Results do:
            # downstream must only ever see ours.
            forged = forged_analysis_ranges(message.content)
            if forged:
                found = Stamp(found.value if found else "",
                              tuple(sorted((*(found.strip if found else ()), *forged))))
        data = tuple(d for d in state.action_data if d[0] != STAMP_KEY)
        if found is not None:
            data = (*data, (STAMP_KEY, found.to_text()))
        return replace(state, verdicts=verdicts, action_data=data)

    async def _authentication(self, message: InboundMessage) -> tuple[Verdicts, Stamp | None]:
        if self._verdicts is None:
            return Verdicts(), None
        try:
            auth = await self._verdicts.compute(message)
        except Exception as exc:  # verdicts must never stall a message
            logs.error("verdicts.failed", message_id=message.id, error=type(exc).__name__)
            return Verdicts(), None
        hostname = self._config.server.hostname
        return auth.verdicts, stamp(message.content, hostname, auth.header_value(hostname))

    async def _analyze(self, message: InboundMessage) -> AnalysisResults:
        assert self._analysis is not None
        try:
            return await self._analysis.analyze(message)
        except Exception as exc:  # the service turns engine failures into results already
            logs.error("analysis.failed", message_id=message.id, error=type(exc).__name__)
            return AnalysisResults()
