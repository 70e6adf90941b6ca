"""WriteToS3 against moto: stored bytes, SSE-KMS, key layout, an outage and recovery."""

from __future__ import annotations

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
from moto.server import ThreadedMotoServer

from mailmgr.actions.add_header import AddHeader
from mailmgr.actions.s3 import WriteToS3, object_key
from mailmgr.config.models import AddHeaderAction, WriteToS3Action
from mailmgr.errors import PermanentActionError


@pytest.mark.parametrize(("prefix", "key"), [
    (None, "m1"), ("", "m1"), ("inbound", "inbound/m1"), ("inbound/", "inbound/m1"),
    ("a/b//", "a/b/m1"), ("/", "m1"),
])
def test_key_layout(prefix: str | None, key: str) -> None:
    assert object_key(prefix, "m1") == key


async def test_object_is_the_message_plus_added_headers_with_sse_kms(aws_env: str) -> None:
    s3 = boto(aws_env, "s3")
    s3.create_bucket(Bucket="mail")
    key_id = boto(aws_env, "kms").create_key()["KeyMetadata"]["KeyId"]
    clients = clients_for(aws_env)
    try:
        write = WriteToS3Action(role_arn=ROLE_A, bucket="mail", prefix="inbound/",
                                kms_key_id=key_id)
        add = AddHeaderAction(header_name="X-Tag", header_value="yes")
        walk = Walk(rule_set(("r1", [add, write])),
                    [[AddHeader("X-Tag", "yes"), WriteToS3(write, resources(clients))]])
        message = make_message()
        state = await walk(message)
        assert state.done and state.live == message.envelope.rcpt_to
    finally:
        await clients.close()
    obj = s3.get_object(Bucket="mail", Key=f"inbound/{message.id}")
    head, sep, body = message.content.partition(b"\r\n\r\n")
    assert obj["Body"].read() == head + b"\r\nX-Tag: yes" + sep + body
    assert obj["ContentType"] == "message/rfc822"
    assert obj["ServerSideEncryption"] == "aws:kms"
    assert obj["SSEKMSKeyId"].endswith(key_id)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mail")["Contents"]]
    assert keys == [f"inbound/{message.id}"]


async def test_rerun_puts_the_same_object_again(aws_env: str) -> None:
    s3 = boto(aws_env, "s3")
    s3.create_bucket(Bucket="mail")
    clients = clients_for(aws_env)
    try:
        action = WriteToS3(WriteToS3Action(role_arn=ROLE_A, bucket="mail"), resources(clients))
        first = await action.run(make_input())
        second = await action.run(make_input())  # a crash before the checkpoint re-runs it
    finally:
        await clients.close()
    assert first.details["s3_key"] == second.details["s3_key"] == "0abc123def456ghi789"
    assert first.details["s3_etag"] == second.details["s3_etag"]
    assert s3.list_objects_v2(Bucket="mail")["KeyCount"] == 1


async def test_missing_bucket_is_permanent_with_the_aws_code(aws_env: str) -> None:
    clients = clients_for(aws_env)
    try:
        action = WriteToS3(WriteToS3Action(role_arn=ROLE_A, bucket="absent"), resources(clients))
        with pytest.raises(PermanentActionError) as info:
            await action.run(make_input())
        assert info.value.code == "NoSuchBucket"
    finally:
        await clients.close()


async def test_s3_down_then_back_writes_exactly_once(aws_env: str) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto(endpoint, "s3")
    s3.create_bucket(Bucket="mail")
    s3.put_bucket_versioning(Bucket="mail", VersioningConfiguration={"Status": "Enabled"})
    # No role: the STS endpoint is the same server, and it is about to go away.
    clients = clients_for(endpoint)
    write = WriteToS3Action(bucket="mail", prefix="in")
    walk = Walk(rule_set(("r1", [write])), [[WriteToS3(write, resources(clients))]])
    message = make_message()
    try:
        server.stop()
        state = await walk(message)
        assert not state.done and state.attempts == 1 and state.action_index == 0
        assert state.next_attempt_at == walk.clock + 10.0  # Server.Retry initial delay
        walk.clock += 10.0
        state = await walk(message, state)  # still down: backoff doubles
        assert not state.done and state.next_attempt_at == walk.clock + 20.0
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        walk.clock += 20.0
        state = await walk(message, state)
        assert state.done and state.live == message.envelope.rcpt_to and not state.dropped
    finally:
        await clients.close()
        server.stop()
    versions = boto(aws_env, "s3").list_object_versions(Bucket="mail")["Versions"]
    assert [(v["Key"], v["IsLatest"]) for v in versions] == [(f"in/{message.id}", True)]
    assert boto(aws_env, "s3").get_object(Bucket="mail", Key=f"in/{message.id}")[
        "Body"].read() == message.content

