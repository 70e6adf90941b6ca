"""InvokeLambda: the SES receiving event (seed 003) sent to `FunctionArn`.

EVENT is fire-and-forget; REQUEST_RESPONSE waits up to 30 s (the Lambda client's read timeout,
set in mailmgr.aws) and returns the function's `disposition`. `RetryTimeMinutes` is enforced
here through the resume data (the first failure's time): the executor needs nothing special.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from mailmgr import logs
from mailmgr.actions import events
from mailmgr.actions.base import Action, ActionInput, ActionResult, Disposition, Resources
from mailmgr.aws import services
from mailmgr.config.models import InvokeLambdaAction, RuleAction
from mailmgr.errors import ActionError, PermanentActionError, TemporaryActionError

_INVOCATION_TYPES = {"EVENT": "Event", "REQUEST_RESPONSE": "RequestResponse"}


def lambda_event(item: ActionInput, function_arn: str, invocation_type: str, now: float) -> Any:
    """The payload: one SES record, exactly as seed 003 shows it."""
    action = {"type": "Lambda", "invocationType": _INVOCATION_TYPES[invocation_type],
              "functionArn": function_arn}
    return {"Records": [{
        "eventSource": "aws:ses",
        "eventVersion": "1.0",
        "ses": {
            "mail": events.mail_object(item, events.LAMBDA_HEADERS_LIMIT),
            "receipt": events.receipt_object(item, action, now),
        },
    }]}


def disposition_of(payload: bytes) -> Disposition:
    """The function's answer; anything but a known disposition means CONTINUE (as SES)."""
    try:
        answer = json.loads(payload or b"null")
    except ValueError:
        return Disposition.CONTINUE
    value = answer.get("disposition") if isinstance(answer, dict) else None
    try:
        return Disposition(str(value).upper()) if value else Disposition.CONTINUE
    except ValueError:
        return Disposition.CONTINUE


def _first_failure(resume: str | None) -> float | None:
    try:
        data = json.loads(resume) if resume else None
        return float(data["first_failure_at"]) if isinstance(data, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


class InvokeLambda:
    name = "InvokeLambda"

    def __init__(
        self,
        action: InvokeLambdaAction,
        resources: Resources,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._action = action
        self._resources = resources
        self._clock = clock

    async def run(self, item: ActionInput) -> ActionResult:
        a = self._action
        sync = a.invocation_type == "REQUEST_RESPONSE"
        payload = json.dumps(lambda_event(item, a.function_arn, a.invocation_type, self._clock()),
                             ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        failure: ActionError
        try:
            result = await services.invoke(
                services.require(self._resources.aws), a.role_arn or None,
                function_arn=a.function_arn,
                invocation_type=_INVOCATION_TYPES[a.invocation_type], payload=payload,
            )
        except TemporaryActionError as exc:
            failure = exc
            if exc.code == "ReadTimeoutError":
                failure = TemporaryActionError(
                    f"lambda {a.function_arn} did not answer in time: {exc}", "Timeout")
        else:
            if result.function_error is None:
                disposition = disposition_of(result.payload) if sync else Disposition.CONTINUE
                return ActionResult(disposition=disposition, details={
                    "function_arn": a.function_arn, "disposition": disposition.value})
            text = f"lambda {a.function_arn} failed: {result.function_error}: " + (
                result.payload[:512].decode("utf-8", errors="replace"))
            # Only RetryTimeMinutes asks for function errors to be retried.
            if a.retry_time_minutes is None:
                raise PermanentActionError(text, "FunctionError")
            failure = TemporaryActionError(text, "FunctionError")
        raise self._retry_or_give_up(failure, _first_failure(item.resume))

    def _retry_or_give_up(self, failure: ActionError, first: float | None) -> ActionError:
        now = self._clock()
        first = now if first is None else first
        limit = self._action.retry_time_minutes
        if limit is not None and now - first >= limit * 60:
            logs.warning("lambda.retries_exhausted", function_arn=self._action.function_arn,
                         retry_time_minutes=limit, code=failure.code)
            return PermanentActionError(
                f"{failure} (RetryTimeMinutes {limit} exhausted)", failure.code)
        return TemporaryActionError(
            str(failure), failure.code, resume=json.dumps({"first_failure_at": first}))


def build(action: RuleAction, resources: Resources) -> Action:
    if not isinstance(action, InvokeLambdaAction):
        raise TypeError(f"InvokeLambda cannot be built from {type(action).__name__}")
    return InvokeLambda(action, resources)
