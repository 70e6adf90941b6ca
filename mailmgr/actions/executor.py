"""The rule-set walk: rules in order, actions once per matched set, results applied, checkpoints.

Shared by the real pipeline and by explain (which passes dry-run actions and a no-op checkpoint).
Owns ordering, ActionFailurePolicy, retry scheduling, per-action logs, Mail Manager's rule set
APPLICATION_LOGS records (Log.Records) and the rule/action metrics; never decides which
recipients a rule applies to (rules/engine.py does) and never stores anything itself.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

from mailmgr import logs
from mailmgr.actions.base import Action, ActionInput, ActionResult, Disposition
from mailmgr.admin.cells import CounterCell, HistogramCell
from mailmgr.admin.metrics import METRICS
from mailmgr.config.models import ActionFailurePolicy, RetryPolicy
from mailmgr.errors import PermanentActionError, TemporaryActionError
from mailmgr.message import InboundMessage, ProcessingState, Verdicts
from mailmgr.mime.headers import with_headers
from mailmgr.records import rule_record
from mailmgr.rules.engine import CompiledRule, CompiledRuleSet, RuleEvaluation
from mailmgr.rules.facts import MessageFacts

Checkpoint = Callable[[ProcessingState], Awaitable[None]]


class Status(StrEnum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    RETRY = "RETRY"


@dataclass(frozen=True)
class ActionRecord:
    """One action run as logs and explain report it (indexes are 1-based)."""

    rule_index: int
    rule_name: str
    action_index: int
    action: str
    recipients: tuple[str, ...]
    status: Status
    failure_reason: str | None = None
    result: ActionResult | None = None


class ExecutionObserver(Protocol):
    """Optional callbacks (explain uses them to report the walk)."""

    def rule_evaluated(self, evaluation: RuleEvaluation) -> None: ...

    def action_finished(self, record: ActionRecord) -> None: ...


def dedupe(addresses: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(addresses))


async def execute(
    message: InboundMessage,
    state: ProcessingState,
    rule_set: CompiledRuleSet,
    actions: Sequence[Sequence[Action]],
    *,
    retry: RetryPolicy,
    checkpoint: Checkpoint,
    now: Callable[[], float] = time.time,
    observer: ExecutionObserver | None = None,
    log: bool = True,
    records: bool = False,
) -> ProcessingState:
    """Walk the rule set from `state` and return the new state.

    The result is either done (no live recipient, or rules exhausted) or waiting for a retry of
    the failed action at `next_attempt_at`. `checkpoint` is awaited after every completed action
    (success or permanent failure), after scheduling a retry, and at the end; resuming from any
    checkpointed state never re-runs a completed action. `actions[i]` are rule i's instances.
    `log` False (explain) writes no log line and counts no metric; `records` writes Mail
    Manager's rule set APPLICATION_LOGS records (one per action run, one per unmatched rule).
    """
    if len(actions) != len(rule_set.rules):
        raise ValueError("actions must have one entry per rule")
    if state.done:
        return state
    verdicts = state.verdicts if state.verdicts is not None else Verdicts()
    # A state past its first rule or inside a rule was checkpointed after an action ran, which
    # only happens when some rule matched.
    any_matched = state.live is not None and (state.rule_index > 0 or state.matched is not None)
    if state.live is None:
        state = replace(state, live=dedupe(message.envelope.rcpt_to))
    facts = MessageFacts.build(message, state.added_headers, verdicts)
    walk = _Walk(message, rule_set, verdicts, retry, checkpoint, now, observer, log,
                 records and log)

    while state.live and state.rule_index < len(rule_set.rules):
        rule = rule_set.rules[state.rule_index]
        rule_actions = actions[state.rule_index]
        if state.matched is None:
            evaluation = rule_set.evaluate(state.rule_index, facts, state.live)
            if observer is not None:
                observer.rule_evaluated(evaluation)
            walk.evaluated(rule, evaluation.matched, bool(rule_actions))
            if not evaluation.matched or not rule_actions:
                state = _next_rule(state)
                continue
            any_matched = True
            state = replace(state, matched=evaluation.matched, action_index=0)
        while state.matched and state.action_index < len(rule_actions):
            headers_before = state.added_headers
            state, waiting = await walk.run_action(state, rule, rule_actions)
            if waiting:
                return state
            if state.added_headers != headers_before:
                facts = MessageFacts.build(message, state.added_headers, verdicts)
        state = _next_rule(state)

    state = replace(state, matched=None, done=True, **_RETRY_RESET)
    await checkpoint(state)
    if log:
        logs.event(
            "message.processed",
            message_id=message.id,
            rule_set=rule_set.name,
            rule_set_id=rule_set.id,
            recipients=list(state.live or ()),
            dropped=list(state.dropped),
            stopped=list(state.stopped),
            no_rule_matched=not any_matched,
        )
    return state


_RETRY_RESET: dict[str, Any] = {"attempts": 0, "first_failure_at": None, "next_attempt_at": 0.0,
                               "last_error": None}


def _next_rule(state: ProcessingState) -> ProcessingState:
    return replace(state, rule_index=state.rule_index + 1, action_index=0, matched=None)


@dataclass(frozen=True)
class _Walk:
    """What stays fixed while one message is walked."""

    message: InboundMessage
    rule_set: CompiledRuleSet
    verdicts: Verdicts
    retry: RetryPolicy
    checkpoint: Checkpoint
    now: Callable[[], float]
    observer: ExecutionObserver | None
    log: bool
    records: bool

    def evaluated(self, rule: CompiledRule, matched: tuple[str, ...], has_actions: bool) -> None:
        """A rule was evaluated: counted when it matched; the no-match record (or, for a
        matched rule without actions, a record without action_metadata) when records are on."""
        if not self.log:
            return
        if matched:
            _rule_matches(self.rule_set.name, rule.name or str(rule.index)).inc()
        if self.records and (not matched or not has_actions):
            rule_record(self.message.id, self.rule_set.name, rule.name, rule.index,
                                matched, None)

    def _took(self, action: Action, started: float) -> None:
        if self.log:
            _durations(action.name).observe(time.perf_counter() - started)

    async def run_action(
        self, state: ProcessingState, rule: CompiledRule, rule_actions: Sequence[Action]
    ) -> tuple[ProcessingState, bool]:
        """Run the next action of `rule`; returns the new state and whether it awaits a retry."""
        action = rule_actions[state.action_index]
        matched = state.matched or ()
        key = f"{state.rule_index}.{state.action_index}"
        item = ActionInput(
            message=self.message,
            content=with_headers(self.message.content, state.added_headers),
            recipients=matched,
            verdicts=self.verdicts,
            rule_set_id=self.rule_set.id,
            rule_set_name=self.rule_set.name,
            rule_index=rule.index,
            rule_name=rule.name,
            action_index=state.action_index + 1,
            resume=_lookup(state.action_data, key),
        )
        failure: Exception
        started = time.perf_counter()
        try:
            result = await action.run(item)
        except PermanentActionError as exc:
            failure = exc
        except TemporaryActionError as exc:
            failure = exc
        except Exception as exc:  # a bug in an action: retrying beats losing the message
            failure = TemporaryActionError(f"{type(exc).__name__}: {exc}", type(exc).__name__)
        else:
            self._took(action, started)
            failed = tuple(r for r in result.failed if r in matched)
            if failed:
                # A partial permanent failure: the policy applies to those recipients only.
                reason = result.failure_reason or "failed for these recipients"
                self._report(rule, replace(item, recipients=failed), action, Status.FAILED,
                             reason, None)
                if rule.failure_policies[state.action_index] is ActionFailurePolicy.DROP:
                    state = _drop(state, failed)
                item = replace(item, recipients=tuple(r for r in matched if r not in failed))
            state = _apply(state, result, len(rule_actions))
            state = replace(state, action_data=_without(state.action_data, key), **_RETRY_RESET)
            # An action that failed for every recipient was one FAILURE run, not also a success.
            self._report(rule, item, action, Status.SUCCESS, None, result,
                         counted=bool(item.recipients) or not failed)
            await self.checkpoint(state)
            return state, False

        self._took(action, started)
        reason = _reason(failure)
        if isinstance(failure, TemporaryActionError):
            t = self.now()
            first = state.first_failure_at if state.first_failure_at is not None else t
            if t - first <= self.retry.max_age:
                delay = self.retry.delay(state.attempts)
                data = state.action_data
                if failure.resume is not None:
                    data = (*_without(data, key), (key, failure.resume))
                state = replace(
                    state,
                    attempts=state.attempts + 1,
                    first_failure_at=first,
                    next_attempt_at=t + delay,
                    last_error=reason[:300],  # shown by `mailmgr queue`; bounded
                    action_data=data,
                    done=False,
                )
                self._report(rule, item, action, Status.RETRY, reason, None)
                await self.checkpoint(state)
                return state, True
            reason = f"retries exhausted: {reason}"

        # Permanent failure (or temporary ones for longer than max_age): ActionFailurePolicy.
        policy = rule.failure_policies[state.action_index]
        self._report(rule, item, action, Status.FAILED, reason, None)
        if policy is ActionFailurePolicy.DROP:
            state = _drop(state)
        state = replace(
            state,
            action_index=state.action_index + 1,
            action_data=_without(state.action_data, key),
            **_RETRY_RESET,
        )
        await self.checkpoint(state)
        return state, False

    def _report(
        self,
        rule: CompiledRule,
        item: ActionInput,
        action: Action,
        status: Status,
        reason: str | None,
        result: ActionResult | None,
        counted: bool = True,
    ) -> None:
        """Observer, log line, and (`counted`) the action-run metric and Mail Manager record."""
        record = ActionRecord(
            rule_index=rule.index,
            rule_name=rule.name,
            action_index=item.action_index,
            action=action.name,
            recipients=item.recipients,
            status=status,
            failure_reason=reason,
            result=result,
        )
        if self.observer is not None:
            self.observer.action_finished(record)
        if not self.log:
            return
        if counted:
            _runs(action.name, status).inc()
        if self.records and counted:
            rule_record(
                self.message.id, self.rule_set.name, rule.name, rule.index, item.recipients,
                (action.name, item.action_index, status.value, reason),
            )
        fields: dict[str, Any] = {
            "message_id": self.message.id,
            "rule_set": self.rule_set.name,
            "rule_set_id": self.rule_set.id,
            "rule_name": rule.name,
            "rule_index": rule.index,
            "action": action.name,
            "action_index": item.action_index,
            "recipients": list(item.recipients),
            "status": status.value,
            "failure_reason": reason,
        }
        if result is not None:
            for name, value in result.details.items():
                fields.setdefault(name, value)
        if status is Status.SUCCESS:
            logs.event("message.action", **fields)
        else:
            logs.warning("message.action", **fields)


# Metric children by label values (config names and enums: bounded), bound on first use.
_RUN_STATUS = {Status.SUCCESS: "SUCCESS", Status.FAILED: "FAILURE", Status.RETRY: "RETRY"}
_run_children: dict[tuple[str, Status], CounterCell] = {}
_duration_children: dict[str, HistogramCell] = {}
_match_children: dict[tuple[str, str], CounterCell] = {}


def _runs(action: str, status: Status) -> CounterCell:
    child = _run_children.get((action, status))
    if child is None:
        child = METRICS.action_runs.labels(action, _RUN_STATUS[status])
        _run_children[(action, status)] = child
    return child


def _durations(action: str) -> HistogramCell:
    child = _duration_children.get(action)
    if child is None:
        child = _duration_children[action] = METRICS.action_duration.labels(action)
    return child


def _rule_matches(rule_set: str, rule: str) -> CounterCell:
    child = _match_children.get((rule_set, rule))
    if child is None:
        child = _match_children[(rule_set, rule)] = METRICS.rule_matches.labels(rule_set, rule)
    return child


def _apply(state: ProcessingState, result: ActionResult, action_count: int) -> ProcessingState:
    """The state after a successful action: headers, replacements, drop, then disposition."""
    matched = state.matched or ()
    live = state.live or ()
    headers = state.added_headers
    if result.add_header is not None:
        headers = (*headers, result.add_header)
    if result.replace_with is not None:
        replacements = dedupe(result.replace_with)
        live = _replace(live, matched, replacements)
        matched = replacements
    state = replace(state, live=live, matched=matched, added_headers=headers)
    if result.drop:
        state = _drop(state)
    next_index = state.action_index + 1
    if result.disposition is Disposition.STOP_RULE:
        next_index = action_count
    elif result.disposition is Disposition.STOP_RULE_SET:
        stopping = set(state.matched or ())
        state = replace(
            state,
            live=tuple(r for r in state.live or () if r not in stopping),
            stopped=dedupe((*state.stopped, *(state.matched or ()))),
            matched=(),
        )
    return replace(state, action_index=next_index)


def _drop(state: ProcessingState, recipients: Sequence[str] | None = None) -> ProcessingState:
    """Drop `recipients` (default: every matched one) from the live and matched sets."""
    dropping = tuple(state.matched or ()) if recipients is None else tuple(recipients)
    gone = set(dropping)
    return replace(
        state,
        live=tuple(r for r in state.live or () if r not in gone),
        dropped=dedupe((*state.dropped, *dropping)),
        matched=tuple(r for r in state.matched or () if r not in gone),
    )


def _replace(
    live: Sequence[str], matched: Sequence[str], replacements: Sequence[str]
) -> tuple[str, ...]:
    """Replacements take the place of the first matched recipient; order otherwise kept."""
    replaced = set(matched)
    out: list[str] = []
    inserted = False
    for recipient in live:
        if recipient not in replaced:
            out.append(recipient)
        elif not inserted:
            out.extend(replacements)
            inserted = True
    if not inserted:
        out.extend(replacements)
    return dedupe(out)


def _lookup(data: tuple[tuple[str, str], ...], key: str) -> str | None:
    return next((value for k, value in data if k == key), None)


def _without(data: tuple[tuple[str, str], ...], key: str) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in data if k != key)


def _reason(error: Exception) -> str:
    code = getattr(error, "code", "")
    text = str(error)
    return f"{code}: {text}" if code and text else (code or text or type(error).__name__)
