"""Address-list members through the Mail Manager API with boto3 against a running server:
register, paginate (120 members, prefix filter), get, deregister, errors; and a traffic policy
that uses the list sees a change on the next SMTP transaction."""

from __future__ import annotations

import datetime as dt
import smtplib
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import ApiServer
from tests.support import basic_config

MESSAGE = b"From: a@sender.test\r\nTo: x@vip.test\r\nSubject: members\r\n\r\nhello\r\n"


def _code(info: pytest.ExceptionInfo[ClientError]) -> str:
    return str(info.value.response["Error"]["Code"])


def _all_pages(client: Any, list_id: str, size: int, **extra: Any) -> tuple[list[str], int]:
    seen: list[str] = []
    pages = 0
    token = None
    while True:
        args = {"AddressListId": list_id, "PageSize": size, **extra}
        if token:
            args["NextToken"] = token
        page = client.list_members_of_address_list(**args)
        pages += 1
        assert len(page["Addresses"]) <= size
        seen += [a["Address"] for a in page["Addresses"]]
        token = page.get("NextToken")
        if not token:
            return seen, pages


def test_register_paginate_get_deregister(api_server: ApiServer) -> None:
    client = api_server.client()
    list_id = client.create_address_list(AddressListName="team")["AddressListId"]
    wanted = [f"User{i:03d}@Example.test" for i in range(100)] + [
        f"ops{i:02d}@ops.example.test" for i in range(20)]
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
    for address in wanted:
        client.register_member_to_address_list(AddressListId=list_id, Address=address)
    # registering again (any case) succeeds and changes nothing
    client.register_member_to_address_list(AddressListId=list_id, Address="user000@EXAMPLE.TEST")

    seen, pages = _all_pages(client, list_id, 25)
    assert pages == 5
    assert len(seen) == 120 and len(set(seen)) == 120
    assert set(seen) == {a.lower() for a in wanted}
    assert seen == sorted(seen)

    ops, _ = _all_pages(client, list_id, 7, Filter={"AddressPrefix": "OPS"})
    assert ops == sorted(f"ops{i:02d}@ops.example.test" for i in range(20))
    one = client.list_members_of_address_list(AddressListId=list_id,
                                              Filter={"AddressPrefix": "user05"})
    assert [a["Address"] for a in one["Addresses"]] == [
        f"user05{i}@example.test" for i in range(10)]
    assert "NextToken" not in one

    # a token belongs to its request: another filter (or list) refuses it
    first = client.list_members_of_address_list(AddressListId=list_id, PageSize=10)
    with pytest.raises(ClientError) as info:
        client.list_members_of_address_list(AddressListId=list_id, PageSize=10,
                                            NextToken=first["NextToken"],
                                            Filter={"AddressPrefix": "ops"})
    assert _code(info) == "ValidationException"
    # a member removed between pages neither repeats nor hides another
    removed = first["Addresses"][-1]["Address"]
    client.deregister_member_from_address_list(AddressListId=list_id, Address=removed.upper())
    rest = client.list_members_of_address_list(AddressListId=list_id, PageSize=10,
                                               NextToken=first["NextToken"])
    assert rest["Addresses"][0]["Address"] == seen[10]

    member = client.get_member_of_address_list(AddressListId=list_id,
                                               Address="USER042@example.TEST")
    assert member["Address"] == "user042@example.test"
    assert member["CreatedTimestamp"] >= before
    with pytest.raises(ClientError) as info:
        client.get_member_of_address_list(AddressListId=list_id, Address=removed)
    assert _code(info) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as info:
        client.deregister_member_from_address_list(AddressListId=list_id, Address=removed)
    assert _code(info) == "ResourceNotFoundException"
    assert len(_all_pages(client, list_id, 1000)[0]) == 119


def test_member_errors(api_server: ApiServer) -> None:
    client = api_server.client()
    list_id = client.create_address_list(AddressListName="errors")["AddressListId"]
    for bad in ("no at sign@example.test", "a@@example.test", "*.*", "x**@example.test"):
        with pytest.raises(ClientError) as info:
            client.register_member_to_address_list(AddressListId=list_id, Address=bad)
        assert _code(info) == "ValidationException"
        assert info.value.response["Error"]["Message"].startswith(
            "1 validation error detected: Address:")
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    raw = api_server.client(parameter_validation=False)  # the server checks the model too
    with pytest.raises(ClientError) as info:
        raw.register_member_to_address_list(AddressListId=list_id, Address="a@")
    assert _code(info) == "ValidationException" and "Address" in str(info.value)
    for call in (client.register_member_to_address_list,
                 client.deregister_member_from_address_list,
                 client.get_member_of_address_list):
        with pytest.raises(ClientError) as info:
            call(AddressListId="al-doesnotexist", Address="a@example.test")
        assert _code(info) == "ResourceNotFoundException"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as info:
        client.list_members_of_address_list(AddressListId="al-doesnotexist")
    assert _code(info) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as info:
        client.list_members_of_address_list(AddressListId=list_id, NextToken="garbage")
    assert _code(info) == "ValidationException"
    assert client.list_members_of_address_list(AddressListId=list_id)["Addresses"] == []

    # the RPC v2 CBOR route answers the same operation (timestamps as tag-1 times)
    client.register_member_to_address_list(AddressListId=list_id, Address="cbor@example.test")
    request = urllib.request.Request(
        f"{api_server.url}/service/MailManagerSvc/operation/ListMembersOfAddressList",
        data=cbor2.dumps({"AddressListId": list_id}), method="POST",
        headers={"Content-Type": "application/cbor", "Accept": "application/cbor",
                 "smithy-protocol": "rpc-v2-cbor"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        listed = cbor2.loads(answer.read())
    assert [a["Address"] for a in listed["Addresses"]] == ["cbor@example.test"]
    assert isinstance(listed["Addresses"][0]["CreatedTimestamp"], dt.datetime)


def _accepted(port: int, recipient: str) -> bool:
    """One new SMTP session: is `recipient` accepted (the message sent)?"""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        try:
            smtp.sendmail("a@sender.test", [recipient], MESSAGE)
        except smtplib.SMTPRecipientsRefused:
            return False
    return True


def test_traffic_policy_sees_members(
        api_server_factory: Callable[[dict[str, Any]], ApiServer], tmp_path: Path) -> None:
    config = basic_config(tmp_path)
    config["IngressPoints"][0]["TrafficPolicyId"] = "gate"
    config["TrafficPolicies"].append({
        "TrafficPolicyName": "gate", "DefaultAction": "DENY", "PolicyStatements": [{
            "Action": "ALLOW", "Conditions": [{"BooleanExpression": {
                "Evaluate": {"IsInAddressList": {"Attribute": "RECIPIENT",
                                                 "AddressLists": ["vip"]}},
                "Operator": "IS_TRUE"}}]}]})
    config["AddressLists"] = [{"AddressListName": "vip", "Members": ["Seed@VIP.test"]}]
    api = api_server_factory(config)
    client = api.client()
    list_id = client.list_address_lists()["AddressLists"][0]["AddressListId"]
    port = api.server.port

    # a member from the config file is a member through the API too (lower-cased)
    assert client.get_member_of_address_list(
        AddressListId=list_id, Address="seed@vip.test")["Address"] == "seed@vip.test"
    assert _accepted(port, "seed@vip.test")
    assert not _accepted(port, "new@vip.test")
    client.register_member_to_address_list(AddressListId=list_id, Address="New@Vip.Test")
    assert _accepted(port, "NEW@vip.test")
    client.deregister_member_from_address_list(AddressListId=list_id, Address="new@vip.test")
    assert not _accepted(port, "new@vip.test")
    client.deregister_member_from_address_list(AddressListId=list_id, Address="SEED@vip.test")
    assert not _accepted(port, "seed@vip.test")
    assert client.list_members_of_address_list(AddressListId=list_id)["Addresses"] == []
