"""PublishToSns against moto, read back through an SQS subscription."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from awsactions_support import (
    ROLE_A,
    Walk,
    boto,
    clients_for,
    make_input,
    make_message,
    resources,
    rule_set,
)

from mailmgr.actions.sns import SNS_MAX_BYTES, PublishToSns
from mailmgr.config.models import ActionFailurePolicy, PublishToSnsAction
from mailmgr.errors import PermanentActionError


def topic_with_queue(endpoint: str) -> tuple[str, str]:
    sns, sqs = boto(endpoint, "sns"), boto(endpoint, "sqs")
    topic = sns.create_topic(Name="mail")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="mail")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return topic, queue_url


def received(endpoint: str, queue_url: str) -> list[dict[str, Any]]:
    sqs = boto(endpoint, "sqs")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                   WaitTimeSeconds=0).get("Messages", [])
    return [json.loads(json.loads(m["Body"])["Message"]) for m in messages]


@pytest.mark.parametrize("payload_type", ["CONTENT", "HEADERS"])
@pytest.mark.parametrize("encoding", ["UTF-8", "BASE64"])
async def test_notification_shape(aws_env: str, payload_type: str, encoding: str) -> None:
    topic, queue = topic_with_queue(aws_env)
    clients = clients_for(aws_env)
    item = make_input(recipients=("bob@example.net",))
    try:
        action = PublishToSns(PublishToSnsAction(topic_arn=topic, role_arn=ROLE_A,
                                                 encoding=encoding, payload_type=payload_type),
                              resources(clients))
        result = await action.run(item)
    finally:
        await clients.close()
    (note,) = received(aws_env, queue)
    assert result.details["sns_message_id"]
    assert note["notificationType"] == "Received"
    mail, receipt = note["mail"], note["receipt"]
    assert mail["messageId"] == item.message.id and mail["source"] == "alice@example.com"
    assert mail["commonHeaders"]["subject"] == "Café report"
    assert {"name": "Message-ID", "value": "<orig-1@example.com>"} in mail["headers"]
    assert receipt["recipients"] == ["bob@example.net"]
    assert receipt["spfVerdict"] == {"status": "PASS"}
    assert receipt["action"] == {"type": "SNS", "topicArn": topic, "encoding": encoding,
                                 "payloadType": payload_type}
    if payload_type == "HEADERS":
        assert "content" not in note
    elif encoding == "BASE64":
        assert base64.b64decode(note["content"]) == item.content
    else:
        assert note["content"].encode("utf-8") == item.content


async def test_headers_payload_allows_large_bodies(aws_env: str) -> None:
    topic, queue = topic_with_queue(aws_env)
    big = make_message(make_message().content + b"x" * 300_000 + b"\r\n")
    clients = clients_for(aws_env)
    try:
        action = PublishToSns(PublishToSnsAction(topic_arn=topic, role_arn=ROLE_A,
                                                 payload_type="HEADERS"), resources(clients))
        await action.run(make_input(big))
    finally:
        await clients.close()
    (note,) = received(aws_env, queue)
    assert "content" not in note and note["mail"]["headersTruncated"] is False


async def test_over_256_kb_fails_permanently_and_the_policy_applies(aws_env: str) -> None:
    topic, queue = topic_with_queue(aws_env)
    big = make_message(make_message().content + b"x" * SNS_MAX_BYTES + b"\r\n")
    clients = clients_for(aws_env)
    model = PublishToSnsAction(topic_arn=topic, role_arn=ROLE_A,
                               failure_policy=ActionFailurePolicy.DROP)
    action = PublishToSns(model, resources(clients))
    try:
        with pytest.raises(PermanentActionError) as info:
            await action.run(make_input(big))
        assert info.value.code == "NotificationTooLarge"
        state = await Walk(rule_set(("r1", [model])), [[action]])(big)
    finally:
        await clients.close()
    assert state.done and state.dropped == big.envelope.rcpt_to and state.live == ()
    assert received(aws_env, queue) == []


async def test_missing_topic_is_permanent(aws_env: str) -> None:
    clients = clients_for(aws_env)
    topic = "arn:aws:sns:us-east-1:123456789012:absent"
    try:
        action = PublishToSns(PublishToSnsAction(topic_arn=topic, role_arn=ROLE_A),
                              resources(clients))
        with pytest.raises(PermanentActionError) as info:
            await action.run(make_input())
    finally:
        await clients.close()
    assert info.value.code == "NotFound"
