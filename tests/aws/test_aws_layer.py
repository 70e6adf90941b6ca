"""The AWS layer against moto's server: secrets with stages, assumed roles, error mapping."""

from __future__ import annotations

import json
import socket

import boto3
import pytest

from mailmgr.aws import AwsClients, AwsSettings, SecretStore
from mailmgr.errors import PermanentActionError, TemporaryActionError

ROLE = "arn:aws:iam::123456789012:role/mailmgr-test"


def _boto(endpoint: str, service: str):  # type: ignore[no-untyped-def]
    return boto3.client(service, region_name="us-east-1", endpoint_url=endpoint)


async def test_secret_current_and_previous_versions(aws_env: str) -> None:
    sm = _boto(aws_env, "secretsmanager")
    arn = sm.create_secret(Name="smtp", SecretString=json.dumps({"password": "old-pass"}))["ARN"]
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"password": "new-pass"}))
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=aws_env))
    try:
        store = SecretStore(clients)
        assert (await store.get(arn))["password"] == "new-pass"
        assert (await store.get(arn, "AWSPREVIOUS"))["password"] == "old-pass"
    finally:
        await clients.close()


async def test_secret_is_cached_until_refresh(aws_env: str) -> None:
    sm = _boto(aws_env, "secretsmanager")
    arn = sm.create_secret(Name="cached", SecretString=json.dumps({"password": "one"}))["ARN"]
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=aws_env))
    try:
        store = SecretStore(clients)
        assert (await store.get(arn))["password"] == "one"
        sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"password": "two"}))
        assert (await store.get(arn))["password"] == "one"
        assert (await store.get(arn, refresh=True))["password"] == "two"
    finally:
        await clients.close()


async def test_not_json_secret_is_a_permanent_error(aws_env: str) -> None:
    sm = _boto(aws_env, "secretsmanager")
    arn = sm.create_secret(Name="plain", SecretString="just text")["ARN"]
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=aws_env))
    try:
        with pytest.raises(PermanentActionError) as info:
            await SecretStore(clients).get(arn)
        assert info.value.code == "InvalidSecretFormat"
        assert "just text" not in str(info.value)
    finally:
        await clients.close()


async def test_calls_under_a_role_use_the_assumed_credentials(aws_env: str) -> None:
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=aws_env))
    try:
        own = await clients.call("sts", "GetCallerIdentity")
        assumed = await clients.call("sts", "GetCallerIdentity", role_arn=ROLE)
        assert ":assumed-role/mailmgr-test/mailmgr-" in assumed["Arn"]
        assert own["Arn"] != assumed["Arn"]
        # the same client object is reused for the same (service, role)
        assert await clients.client("sts", ROLE) is await clients.client("sts", ROLE)
    finally:
        await clients.close()


async def test_missing_resource_is_permanent_with_the_aws_code(aws_env: str) -> None:
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=aws_env))
    try:
        with pytest.raises(PermanentActionError) as info:
            await clients.call("secretsmanager", "GetSecretValue", SecretId="nope")
        assert info.value.code == "ResourceNotFoundException"
    finally:
        await clients.close()


async def test_unreachable_endpoint_is_temporary(aws_env: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    clients = AwsClients(
        AwsSettings(region="us-east-1", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1)
    )
    try:
        with pytest.raises(TemporaryActionError) as info:
            await clients.call("s3", "ListBuckets")
        assert info.value.code == "EndpointConnectionError"
    finally:
        await clients.close()


def test_endpoint_precedence() -> None:
    settings = AwsSettings(
        region="eu-west-1", endpoint_url="http://all", endpoint_urls={"s3": "http://s3only"}
    )
    assert settings.endpoint_for("s3") == "http://s3only"
    assert settings.endpoint_for("sns") == "http://all"
    assert AwsSettings(region="eu-west-1").endpoint_for("sns") is None
