"""Each action's AWS calls are signed with the credentials of its own RoleArn: the recording
endpoint keeps the access key of every request, and moto's STS names the role it belongs to."""

from __future__ import annotations

import boto3
from awsactions_support import (
    ROLE_A,
    ROLE_B,
    FakeAws,
    clients_for,
    make_input,
    resources,
)

from mailmgr.actions.lambda_ import InvokeLambda
from mailmgr.actions.qbusiness import DeliverToQBusiness
from mailmgr.config.models import DeliverToQBusinessAction, InvokeLambdaAction


def role_of(endpoint: str, access_key: str) -> str:
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=endpoint,
                       aws_access_key_id=access_key, aws_secret_access_key="unused")
    return str(sts.get_caller_identity()["Arn"])


async def test_each_action_uses_its_own_role(aws_env: str, fake_aws: FakeAws) -> None:
    clients = clients_for(aws_env, fake_aws.url)
    res = resources(clients)
    lam = InvokeLambda(InvokeLambdaAction(function_arn="arn:aws:lambda:us-east-1:123456789012:"
                                          "function:f", invocation_type="EVENT",
                                          role_arn=ROLE_A), res)
    q = DeliverToQBusiness(DeliverToQBusinessAction(application_id="a" * 36, index_id="b" * 36,
                                                    role_arn=ROLE_B), res)
    try:
        await lam.run(make_input())
        await q.run(make_input())
        await lam.run(make_input())
    finally:
        await clients.close()
    keys = [r.access_key for r in fake_aws.requests]
    assert len(keys) == 3 and all(keys) and keys[0] == keys[2] != keys[1]
    assert "testing" not in keys  # never the base credentials
    assert ":assumed-role/mail-a/" in role_of(aws_env, keys[0])
    assert ":assumed-role/mail-b/" in role_of(aws_env, keys[1])
