"""InvokeLambda against a recording Lambda endpoint, run through the real executor."""

from __future__ import annotations

import json

import pytest
from awsactions_support import (
    ROLE_A,
    FakeAws,
    Scripted,
    Walk,
    aws_error,
    clients_for,
    function_error,
    make_input,
    make_message,
    resources,
    rule_set,
)
from test_awsactions_events import SEED, same_shape

from mailmgr.actions.add_header import AddHeader
from mailmgr.actions.lambda_ import InvokeLambda
from mailmgr.aws import AwsClients, AwsSettings
from mailmgr.config.models import ActionFailurePolicy, AddHeaderAction, InvokeLambdaAction
from mailmgr.errors import PermanentActionError, TemporaryActionError

ARN = "arn:aws:lambda:us-east-1:123456789012:function:filter"
AFTER = AddHeaderAction(header_name="X-After", header_value="1")
NEXT = AddHeaderAction(header_name="X-Next-Rule", header_value="1")


def lam(
    clients: AwsClients, *, invocation: str = "REQUEST_RESPONSE",
    policy: ActionFailurePolicy = ActionFailurePolicy.CONTINUE, retry: int | None = None,
) -> tuple[InvokeLambdaAction, InvokeLambda]:
    model = InvokeLambdaAction(function_arn=ARN, invocation_type=invocation, role_arn=ROLE_A,
                               failure_policy=policy, retry_time_minutes=retry)
    return model, InvokeLambda(model, resources(clients))


def two_rules(model: InvokeLambdaAction, action: InvokeLambda) -> Walk:
    """rule 1: the Lambda, then AddHeader X-After; rule 2: AddHeader X-Next-Rule."""
    return Walk(rule_set(("r1", [model, AFTER]), ("r2", [NEXT])),
                [[action, AddHeader("X-After", "1")], [AddHeader("X-Next-Rule", "1")]])


def headers_added(state: object) -> list[str]:
    return [name for name, _ in getattr(state, "added_headers", ())]


async def test_request_response_payload_matches_the_seed(aws_env: str, fake_aws: FakeAws) -> None:
    clients = clients_for(aws_env, fake_aws.url)
    try:
        _, action = lam(clients)
        result = await action.run(make_input(recipients=("bob@example.net",)))
    finally:
        await clients.close()
    assert result.disposition == "CONTINUE"
    (call,) = fake_aws.invocations()
    assert call.path == f"/2015-03-31/functions/{ARN}/invocations"
    assert call.headers["X-Amz-Invocation-Type"] == "RequestResponse"
    payload = call.json()
    problems = same_shape(payload, SEED)
    assert problems == ["$.Records[].ses.receipt.dmarcPolicy: missing"]  # DMARC passed
    receipt = payload["Records"][0]["ses"]["receipt"]
    assert receipt["recipients"] == ["bob@example.net"]
    assert receipt["action"] == {"type": "Lambda", "invocationType": "RequestResponse",
                                 "functionArn": ARN}


async def test_event_invocation_is_fire_and_forget(aws_env: str, fake_aws: FakeAws) -> None:
    fake_aws.lambda_script.append(Scripted(202, b"", {}))
    clients = clients_for(aws_env, fake_aws.url)
    try:
        model, action = lam(clients, invocation="EVENT")
        state = await two_rules(model, action)(make_message())
    finally:
        await clients.close()
    (call,) = fake_aws.invocations()
    assert call.headers["X-Amz-Invocation-Type"] == "Event"
    assert call.json()["Records"][0]["ses"]["receipt"]["action"]["invocationType"] == "Event"
    assert state.done and headers_added(state) == ["X-After", "X-Next-Rule"]


@pytest.mark.parametrize(("disposition", "headers", "stopped"), [
    ("CONTINUE", ["X-After", "X-Next-Rule"], False),
    ("STOP_RULE", ["X-Next-Rule"], False),
    ("STOP_RULE_SET", [], True),
])
async def test_disposition_changes_what_runs_next(
    aws_env: str, fake_aws: FakeAws, disposition: str, headers: list[str], stopped: bool
) -> None:
    fake_aws.lambda_script.append(Scripted(200, json.dumps({"disposition": disposition}).encode()))
    clients = clients_for(aws_env, fake_aws.url)
    message = make_message()
    try:
        state = await two_rules(*lam(clients))(message)
    finally:
        await clients.close()
    assert state.done and headers_added(state) == headers
    assert state.stopped == (message.envelope.rcpt_to if stopped else ())


@pytest.mark.parametrize(("policy", "dropped"), [
    (ActionFailurePolicy.CONTINUE, False), (ActionFailurePolicy.DROP, True),
])
async def test_function_error_applies_the_failure_policy(
    aws_env: str, fake_aws: FakeAws, policy: ActionFailurePolicy, dropped: bool
) -> None:
    fake_aws.lambda_script.append(function_error())
    clients = clients_for(aws_env, fake_aws.url)
    message = make_message()
    try:
        _, action = lam(clients, policy=policy)
        with pytest.raises(PermanentActionError) as info:
            await action.run(make_input(message))
        assert info.value.code == "FunctionError" and "boom" in str(info.value)
        fake_aws.lambda_script.append(function_error())
        state = await two_rules(*lam(clients, policy=policy))(message)
    finally:
        await clients.close()
    assert state.done
    if dropped:
        assert state.dropped == message.envelope.rcpt_to and headers_added(state) == []
    else:
        assert state.dropped == () and headers_added(state) == ["X-After", "X-Next-Rule"]


async def test_timeout_is_a_temporary_failure_then_retried(
    aws_env: str, fake_aws: FakeAws
) -> None:
    fake_aws.lambda_script.append(Scripted(200, b'{"disposition":"STOP_RULE"}', delay=2.0))
    fake_aws.lambda_script.append(Scripted(200, b'{"disposition":"STOP_RULE"}'))
    clients = clients_for(aws_env, fake_aws.url, lambda_timeout=0.3)
    message = make_message()
    try:
        walk = two_rules(*lam(clients))
        state = await walk(message)
        assert not state.done and state.attempts == 1 and headers_added(state) == []
        walk.clock = state.next_attempt_at
        state = await walk(message, state)
    finally:
        await clients.close()
    assert state.done and headers_added(state) == ["X-Next-Rule"]
    assert len(fake_aws.invocations()) == 2


async def test_timeout_error_code(aws_env: str, fake_aws: FakeAws) -> None:
    fake_aws.lambda_script.append(Scripted(200, b"{}", delay=2.0))
    clients = clients_for(aws_env, fake_aws.url, lambda_timeout=0.3)
    try:
        with pytest.raises(TemporaryActionError) as info:
            await lam(clients)[1].run(make_input())
    finally:
        await clients.close()
    assert info.value.code == "Timeout" and info.value.resume is not None


async def test_throttling_is_retried_within_retry_time_minutes(
    aws_env: str, fake_aws: FakeAws
) -> None:
    fake_aws.lambda_script.extend([aws_error(429, "TooManyRequestsException")] * 2)
    fake_aws.lambda_script.append(Scripted(200, b'{"disposition":"STOP_RULE_SET"}'))
    clients = clients_for(aws_env, fake_aws.url)
    message = make_message()
    try:
        model = InvokeLambdaAction(function_arn=ARN, invocation_type="REQUEST_RESPONSE",
                                   role_arn=ROLE_A, retry_time_minutes=5,
                                   failure_policy=ActionFailurePolicy.DROP)
        walk = Walk(rule_set(("r1", [model, AFTER]), ("r2", [NEXT])), [])
        action = InvokeLambda(model, resources(clients), clock=lambda: walk.clock)
        walk.actions = [[action, AddHeader("X-After", "1")], [AddHeader("X-Next-Rule", "1")]]
        state = await walk(message)
        assert not state.done and state.action_data  # the first failure time is kept
        walk.clock += 120
        state = await walk(message, state)
        assert not state.done and state.attempts == 2
        walk.clock += 120  # 4 minutes after the first failure: still within 5
        state = await walk(message, state)
    finally:
        await clients.close()
    assert state.done and state.stopped == message.envelope.rcpt_to and not state.dropped


async def test_retry_time_minutes_exhausted_applies_the_policy(
    aws_env: str, fake_aws: FakeAws
) -> None:
    fake_aws.lambda_script.extend([function_error("down")] * 3)
    clients = clients_for(aws_env, fake_aws.url)
    message = make_message()
    try:
        model = InvokeLambdaAction(function_arn=ARN, invocation_type="REQUEST_RESPONSE",
                                   role_arn=ROLE_A, retry_time_minutes=5,
                                   failure_policy=ActionFailurePolicy.DROP)
        walk = Walk(rule_set(("r1", [model, AFTER])), [])
        action = InvokeLambda(model, resources(clients), clock=lambda: walk.clock)
        walk.actions = [[action, AddHeader("X-After", "1")]]
        state = await walk(message)
        assert not state.done  # a function error is retried when RetryTimeMinutes is set
        walk.clock += 200
        state = await walk(message, state)
        assert not state.done
        walk.clock += 100  # 300 s = 5 minutes since the first failure
        state = await walk(message, state)
    finally:
        await clients.close()
    assert state.done and state.dropped == message.envelope.rcpt_to
    assert headers_added(state) == [] and len(fake_aws.invocations()) == 3


async def test_unknown_function_is_permanent(aws_env: str, fake_aws: FakeAws) -> None:
    fake_aws.lambda_script.append(aws_error(404, "ResourceNotFoundException"))
    clients = clients_for(aws_env, fake_aws.url)
    try:
        with pytest.raises(PermanentActionError) as info:
            await lam(clients)[1].run(make_input())
    finally:
        await clients.close()
    assert info.value.code == "ResourceNotFoundException"


async def test_lambda_is_never_retried_inside_one_attempt(aws_env: str, fake_aws: FakeAws) -> None:
    """Default settings (botocore retries on): a throttled Invoke still runs once per attempt."""
    fake_aws.lambda_script.append(aws_error(429, "TooManyRequestsException"))
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=aws_env,
                                     endpoint_urls={"lambda": fake_aws.url}))
    try:
        with pytest.raises(TemporaryActionError) as info:
            await lam(clients)[1].run(make_input())
    finally:
        await clients.close()
    assert info.value.code == "TooManyRequestsException"
    assert len(fake_aws.invocations()) == 1
