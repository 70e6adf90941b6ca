"""The executor walk: batching, state actions, dispositions, failure policy, retries, resume."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest
from rules_samples import Scripted, make_message, rule, rule_set

from mailmgr.actions.add_header import AddHeader
from mailmgr.actions.base import Action, ActionResult, Disposition
from mailmgr.actions.drop import Drop
from mailmgr.actions.executor import execute
from mailmgr.actions.replace_recipient import ReplaceRecipient
from mailmgr.config.models import (
    ActionFailurePolicy,
    AddHeaderAction,
    ArchiveAction,
    DropAction,
    ReplaceRecipientAction,
    RetryPolicy,
    Rule,
    RuleAction,
    StringCondition,
    StringOperator,
)
from mailmgr.errors import PermanentActionError, TemporaryActionError
from mailmgr.message import InboundMessage, ProcessingState, Verdicts
from mailmgr.rules.engine import CompiledRuleSet

RETRY = RetryPolicy(initial_delay=10.0, max_delay=25.0, max_age=100.0)
A, B, C = "a@x.test", "b@x.test", "c@y.test"
CONTINUE, DROP = ActionFailurePolicy.CONTINUE, ActionFailurePolicy.DROP


def ext(policy: ActionFailurePolicy = CONTINUE) -> RuleAction:
    """A config model standing in for a side-effecting action (gives the failure policy)."""
    return ArchiveAction(failure_policy=policy, archive_id="a-1")


def rcpt_is(*values: str) -> StringCondition:
    return StringCondition(StringOperator.EQUALS, values, attribute="RECIPIENT")


class Run:
    """Executes a rule set with a clock and a checkpoint log."""

    def __init__(self, rules: Sequence[Rule], actions: Sequence[Sequence[Action]]) -> None:
        self.rule_set = CompiledRuleSet.compile(rule_set(*rules), {})
        self.actions = actions
        self.checkpoints: list[ProcessingState] = []
        self.clock = 1000.0

    async def _checkpoint(self, state: ProcessingState) -> None:
        self.checkpoints.append(state)

    async def __call__(
        self, message: InboundMessage, state: ProcessingState | None = None
    ) -> ProcessingState:
        return await execute(
            message,
            state or ProcessingState(verdicts=Verdicts()),
            self.rule_set,
            self.actions,
            retry=RETRY,
            checkpoint=self._checkpoint,
            now=lambda: self.clock,
        )


async def test_matched_recipients_are_batched_into_one_run() -> None:
    first, second = Scripted(), Scripted()
    run = Run([rule("r1", (ext(), ext()))], [[first, second]])
    state = await run(make_message(rcpts=(A, B, C, A)))
    assert [item.recipients for item in first.runs] == [(A, B, C)]  # one run, deduplicated
    assert [item.recipients for item in second.runs] == [(A, B, C)]
    assert (first.runs[0].rule_index, first.runs[0].action_index) == (1, 1)
    assert second.runs[0].action_index == 2
    assert state.done and state.live == (A, B, C)
    assert len(run.checkpoints) == 3  # after each action and at the end


async def test_drop_in_the_middle_of_a_rule() -> None:
    before, after, later = Scripted(), Scripted(), Scripted()
    run = Run(
        [
            rule("drop-a", (ext(), DropAction(), ext()), conditions=(rcpt_is(A),)),
            rule("rest", (ext(),)),
        ],
        [[before, Drop(), after], [later]],
    )
    state = await run(make_message(rcpts=(A, B)))
    assert [i.recipients for i in before.runs] == [(A,)]
    assert after.runs == []  # the dropped recipients are gone for the rest of the rule
    assert [i.recipients for i in later.runs] == [(B,)]
    assert state.done and state.live == (B,) and state.dropped == (A,)


async def test_no_live_recipient_ends_processing() -> None:
    never = Scripted()
    run = Run([rule("drop", (DropAction(),)), rule("never", (ext(),))], [[Drop()], [never]])
    state = await run(make_message(rcpts=(A, B)))
    assert never.runs == []
    assert state.done and state.live == () and state.dropped == (A, B)


async def test_replace_recipient_feeds_later_rules() -> None:
    same_rule, next_rule = Scripted(), Scripted()
    replace = ReplaceRecipientAction(replace_with=("n1@z.test", "n2@z.test", "n1@z.test"))
    run = Run(
        [
            rule("alias", (replace, ext()), conditions=(rcpt_is(A),)),
            rule("n2", (ext(),), conditions=(rcpt_is("n2@z.test"),)),
        ],
        [[ReplaceRecipient(replace.replace_with), same_rule], [next_rule]],
    )
    state = await run(make_message(rcpts=(A, B)))
    assert [i.recipients for i in same_rule.runs] == [("n1@z.test", "n2@z.test")]
    assert [i.recipients for i in next_rule.runs] == [("n2@z.test",)]
    assert state.live == ("n1@z.test", "n2@z.test", B)
    assert state.dropped == ()


async def test_replace_with_nothing_removes_the_recipients() -> None:
    run = Run(
        [rule("rm", (ReplaceRecipientAction(),), conditions=(rcpt_is(B),))],
        [[ReplaceRecipient(())]],
    )
    state = await run(make_message(rcpts=(A, B)))
    assert state.done and state.live == (A,) and state.dropped == ()


async def test_added_header_is_seen_by_later_actions_and_rules() -> None:
    seen_by_action, seen_by_rule = Scripted(), Scripted()
    run = Run(
        [
            rule("tag", (AddHeaderAction(header_name="X-Seen", header_value="yes"), ext())),
            rule(
                "tagged",
                (ext(),),
                conditions=(
                    StringCondition(StringOperator.EQUALS, ("YES",), mime_header="x-seen"),
                ),
            ),
        ],
        [[AddHeader("X-Seen", "yes"), seen_by_action], [seen_by_rule]],
    )
    message = make_message(b"Subject: hi\r\n\r\nbody\r\n", rcpts=(A,))
    state = await run(message)
    assert seen_by_action.runs[0].content == b"Subject: hi\r\nX-Seen: yes\r\n\r\nbody\r\n"
    assert [i.recipients for i in seen_by_rule.runs] == [(A,)]
    assert state.added_headers == (("X-Seen", "yes"),)


async def test_stop_rule_skips_the_rest_of_the_rule_only() -> None:
    stopper = Scripted("Stopper", ActionResult(disposition=Disposition.STOP_RULE))
    skipped, later = Scripted(), Scripted()
    run = Run([rule("r1", (ext(), ext())), rule("r2", (ext(),))], [[stopper, skipped], [later]])
    state = await run(make_message(rcpts=(A, B)))
    assert skipped.runs == []
    assert [i.recipients for i in later.runs] == [(A, B)]
    assert state.live == (A, B)


async def test_stop_rule_set_stops_those_recipients() -> None:
    stopper = Scripted("Stopper", ActionResult(disposition=Disposition.STOP_RULE_SET))
    skipped, later = Scripted(), Scripted()
    run = Run(
        [rule("r1", (ext(), ext()), conditions=(rcpt_is(A),)), rule("r2", (ext(),))],
        [[stopper, skipped], [later]],
    )
    state = await run(make_message(rcpts=(A, B)))
    assert skipped.runs == []
    assert [i.recipients for i in later.runs] == [(B,)]
    assert state.stopped == (A,) and state.live == (B,) and state.dropped == ()


async def test_permanent_failure_continue_goes_on() -> None:
    failing = Scripted("Failing", PermanentActionError("boom", "Code"))
    after = Scripted()
    run = Run([rule("r1", (ext(CONTINUE), ext()))], [[failing, after]])
    state = await run(make_message(rcpts=(A,)))
    assert [i.recipients for i in after.runs] == [(A,)]
    assert state.done and state.live == (A,) and state.dropped == ()


async def test_permanent_failure_drop_drops_the_matched_recipients() -> None:
    failing = Scripted("Failing", PermanentActionError("boom"))
    after, later = Scripted(), Scripted()
    run = Run(
        [rule("r1", (ext(DROP), ext()), conditions=(rcpt_is(A),)), rule("r2", (ext(),))],
        [[failing, after], [later]],
    )
    state = await run(make_message(rcpts=(A, B)))
    assert after.runs == []
    assert [i.recipients for i in later.runs] == [(B,)]
    assert state.dropped == (A,) and state.live == (B,)


@pytest.mark.parametrize("policy", [CONTINUE, DROP])
async def test_partial_failure_applies_the_policy_to_the_failed_recipients_only(
    policy: ActionFailurePolicy, caplog: pytest.LogCaptureFixture
) -> None:
    partial = Scripted("Partial", ActionResult(failed=(B,), failure_reason="550 no such user"))
    after, later = Scripted(), Scripted()
    run = Run([rule("r1", (ext(policy), ext())), rule("r2", (ext(),))],
              [[partial, after], [later]])
    with caplog.at_level(logging.INFO, logger="mailmgr"):
        state = await run(make_message(rcpts=(A, B, C)))
    survivors = (A, C) if policy is DROP else (A, B, C)
    assert [i.recipients for i in after.runs] == [survivors]
    assert [i.recipients for i in later.runs] == [survivors]
    assert state.dropped == ((B,) if policy is DROP else ())
    records = [r for r in _events(caplog, "message.action") if r["action"] == "Partial"]
    assert [(r["status"], r["recipients"]) for r in records] == [
        ("FAILED", [B]), ("SUCCESS", [A, C])]
    assert records[0]["failure_reason"] == "550 no such user"


async def test_temporary_failure_schedules_retry_and_resumes_without_rerun() -> None:
    first = Scripted()
    flaky = Scripted("Flaky", TemporaryActionError("throttled"), TemporaryActionError("again"))
    last = Scripted()
    run = Run([rule("r1", (ext(), ext(), ext()))], [[first, flaky, last]])
    message = make_message(rcpts=(A,))

    state = await run(message)
    assert not state.done
    assert (state.rule_index, state.action_index, state.matched) == (0, 1, (A,))
    assert (state.attempts, state.first_failure_at, state.next_attempt_at) == (1, 1000.0, 1010.0)
    assert run.checkpoints[-1] == state

    run.clock = 1010.0
    state = await run(message, ProcessingState.from_json(state.to_json()))
    assert (state.attempts, state.first_failure_at, state.next_attempt_at) == (2, 1000.0, 1030.0)

    run.clock = 1030.0
    state = await run(message, state)
    assert state.done and state.attempts == 0 and state.first_failure_at is None
    assert (len(first.runs), len(flaky.runs), len(last.runs)) == (1, 3, 1)


async def test_backoff_is_capped_by_max_delay() -> None:
    flaky = Scripted("Flaky", *[TemporaryActionError("t") for _ in range(4)])
    run = Run([rule("r1", (ext(),))], [[flaky]])
    message = make_message(rcpts=(A,))
    state = ProcessingState()
    delays = []
    for _ in range(4):
        state = await run(message, state)
        delays.append(state.next_attempt_at - run.clock)
        run.clock = state.next_attempt_at
    assert delays == [10.0, 20.0, 25.0, 25.0]


async def test_resume_from_any_checkpoint_never_reruns_completed_actions() -> None:
    actions = [Scripted(), Scripted()], [Scripted()]
    run = Run([rule("r1", (ext(), ext())), rule("r2", (ext(),))], actions)
    message = make_message(rcpts=(A,))
    await run(message)
    after_first = run.checkpoints[0]
    assert (after_first.rule_index, after_first.action_index) == (0, 1)
    state = await run(message, after_first)  # as if the process crashed right after it
    assert state.done
    assert [len(a.runs) for a in (*actions[0], *actions[1])] == [1, 2, 2]


async def test_retries_exhausted_become_permanent() -> None:
    flaky = Scripted("Flaky", TemporaryActionError("still down"))
    after = Scripted()
    run = Run([rule("r1", (ext(DROP), ext()))], [[flaky, after]])
    message = make_message(rcpts=(A,))
    stale = ProcessingState(
        verdicts=Verdicts(), live=(A,), matched=(A,), attempts=7, first_failure_at=1000.0
    )
    run.clock = 1000.0 + RETRY.max_age + 1
    state = await run(message, stale)
    assert state.done and state.dropped == (A,) and after.runs == []


async def test_unexpected_exception_is_retried_and_resume_data_is_passed_back() -> None:
    partial = TemporaryActionError("half done", resume='{"accepted": ["a@x.test"]}')
    flaky = Scripted("Flaky", RuntimeError("bug"), partial)
    run = Run([rule("r1", (ext(),))], [[flaky]])
    message = make_message(rcpts=(A,))
    state = await run(message)
    assert not state.done and state.attempts == 1
    state = await run(message, state)
    assert state.action_data == (("0.0", '{"accepted": ["a@x.test"]}'),)
    state = await run(message, state)
    assert [i.resume for i in flaky.runs] == [None, None, '{"accepted": ["a@x.test"]}']
    assert state.done and state.action_data == ()


def _events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if getattr(r, "event", "") == name]  # type: ignore[attr-defined]


async def test_logs_one_record_per_action_and_a_processed_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mailmgr")
    ok = Scripted("Ok", ActionResult(details={"archive_id": "a-1"}))
    failing = Scripted("Failing", PermanentActionError("denied", "AccessDenied"))
    run = Run([rule("r1", (ext(), ext()))], [[ok, failing]])
    await run(make_message(rcpts=(A,)))
    actions = _events(caplog, "message.action")
    assert actions == [
        {
            "message_id": "msg0000000001",
            "rule_set": "main",
            "rule_set_id": "rs-main",
            "rule_name": "r1",
            "rule_index": 1,
            "action": "Ok",
            "action_index": 1,
            "recipients": [A],
            "status": "SUCCESS",
            "failure_reason": None,
            "archive_id": "a-1",
        },
        {
            "message_id": "msg0000000001",
            "rule_set": "main",
            "rule_set_id": "rs-main",
            "rule_name": "r1",
            "rule_index": 1,
            "action": "Failing",
            "action_index": 2,
            "recipients": [A],
            "status": "FAILED",
            "failure_reason": "AccessDenied: denied",
        },
    ]
    [processed] = _events(caplog, "message.processed")
    assert processed["recipients"] == [A] and processed["no_rule_matched"] is False


async def test_message_no_rule_matched_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailmgr")
    never = Scripted()
    run = Run([rule("r1", (ext(),), conditions=(rcpt_is("nobody@x"),))], [[never]])
    state = await run(make_message(rcpts=(A,)))
    assert state.done and state.live == (A,) and never.runs == []
    [processed] = _events(caplog, "message.processed")
    assert processed["no_rule_matched"] is True and processed["dropped"] == []


def test_retry_delay_is_capped_and_never_overflows() -> None:
    assert RETRY.delay(0) == 10.0 and RETRY.delay(1) == 20.0 and RETRY.delay(2) == 25.0
    assert RETRY.delay(10_000) == 25.0  # an unroutable message retried for months
