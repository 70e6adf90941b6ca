"""AWS JSON 1.0 edge cases of the Mail Manager API on a running server: bad targets and bodies,
wrong types and unknown keys named by field, forged NextTokens, ClientToken replays, epoch
timestamps, boto3's modelled exceptions, the 413 bound, the bearer token, and the request
metrics they leave."""

from __future__ import annotations

import datetime as dt
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.admin.metrics_support import scrape
from tests.api.api_wire import error_of, post_json
from tests.api.conftest import ApiServer
from tests.support import basic_config

pytestmark = pytest.mark.slow
RULES = [{"Name": "r1", "Actions": [{"Drop": {}}]}]


def test_bad_targets_and_bodies_get_protocol_errors_and_are_counted(api_server: ApiServer
                                                                      ) -> None:
    port = api_server.server.admin_port
    cases: list[tuple[str, bytes, int, str]] = [
        ("MailManagerSvc.NoSuchOperation", b"{}", 400, "UnknownOperationException"),
        ("Route53.ListRuleSets", b"{}", 400, "UnknownOperationException"),
        ("MailManagerSvc", b"{}", 400, "UnknownOperationException"),
        ("MailManagerSvc.ListRuleSets", b"[1, 2]", 400, "SerializationException"),
        ("MailManagerSvc.ListRuleSets", b'"text"', 400, "SerializationException"),
        ("MailManagerSvc.ListRuleSets", b"{not json", 400, "SerializationException"),
        ("MailManagerSvc.ListRuleSets", b"\xff\xfe{}", 400, "SerializationException"),
        ("MailManagerSvc.ListRuleSets", b'{"PageSize": NaN}', 400, "SerializationException"),
        ("MailManagerSvc.ListRuleSets", b"[" * 200_000 + b"]" * 200_000, 400,
         "SerializationException"),
        ("MailManagerSvc.ListRuleSets", b'{"PageSize": ' + b"9" * 10_000 + b"}", 400,
         "SerializationException"),
    ]
    before = scrape(api_server.server)
    for target, body, status, code in cases:
        started = time.monotonic()
        answer = post_json(port, target, body)
        assert error_of(answer)[:2] == (status, code), (target, body[:40], answer.body[:200])
        assert time.monotonic() - started < 2.0
    # An empty body is an empty request.
    answer = post_json(port, "MailManagerSvc.ListRuleSets", b"")
    assert answer.status == 200
    assert [r["RuleSetName"] for r in answer.json()["RuleSets"]] == ["main"]
    after = scrape(api_server.server)
    total = "mailmgr_api_requests_total"
    assert after.value(total, operation="unknown", code="UnknownOperationException") - \
        before.value(total, operation="unknown", code="UnknownOperationException") == 3
    assert after.value(total, operation="ListRuleSets", code="SerializationException") - \
        before.value(total, operation="ListRuleSets", code="SerializationException") == 7
    assert after.value(total, operation="ListRuleSets", code="OK") - \
        before.value(total, operation="ListRuleSets", code="OK") == 1
    assert after.value("mailmgr_api_request_seconds_count", operation="ListRuleSets") - \
        before.value("mailmgr_api_request_seconds_count", operation="ListRuleSets") == 8
    assert all(labels["operation"] in {"unknown", "ListRuleSets"} or labels["operation"][0]
               .isupper() for labels in after.labelsets(total))


def test_oversized_body_is_413_with_an_aws_error(api_server: ApiServer) -> None:
    body = b'{"RuleSetName": "' + b"x" * (17 * 1024 * 1024) + b'"}'
    answer = post_json(api_server.server.admin_port, "MailManagerSvc.CreateRuleSet", body)
    status, code, message = error_of(answer)
    assert (status, code) == (413, "RequestEntityTooLargeException")
    assert "16777216" in message


def test_wrong_types_and_unknown_keys_are_named_by_field(api_server: ApiServer) -> None:
    port = api_server.server.admin_port
    answer = post_json(port, "MailManagerSvc.CreateRuleSet", {
        "RuleSetName": "typed", "Rules": [{"Name": 5, "Actions": [{"Drop": {}}]}]})
    status, code, message = error_of(answer)
    assert (status, code) == (400, "ValidationException")
    assert "Rules[0].Name" in message
    answer = post_json(port, "MailManagerSvc.CreateRuleSet", {
        "RuleSetName": "typed", "Rules": RULES, "Colour": "blue"})
    status, code, message = error_of(answer)
    assert (status, code) == (400, "ValidationException")
    assert "Colour" in message
    answer = post_json(port, "MailManagerSvc.ListRuleSets", {"PageSize": "ten"})
    assert error_of(answer)[1] == "ValidationException"
    assert "PageSize" in answer.json()["message"]
    # Nothing was created by the refused requests.
    names = [r["RuleSetName"] for r in api_server.client().list_rule_sets()["RuleSets"]]
    assert names == ["main"]


def test_boto3_raises_the_modelled_exceptions(api_server: ApiServer) -> None:
    client = api_server.client()
    with pytest.raises(client.exceptions.ResourceNotFoundException) as missing:
        client.get_rule_set(RuleSetId="rs-doesnotexist")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(client.exceptions.ValidationException) as invalid:
        client.create_rule_set(RuleSetName="bad", Rules=[
            {"Name": "r", "Actions": [{"Archive": {"TargetArchive": "no-such-archive"}}]}])
    assert "Rules[0]" in invalid.value.response["Error"]["Message"]
    assert invalid.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(client.exceptions.ValidationException) as refused:
        client.create_addon_subscription(AddonName="SPAMHAUS_DBL")
    assert "Analyzers" in refused.value.response["Error"]["Message"]
    with pytest.raises(client.exceptions.ValidationException) as forged:
        client.list_rule_sets(NextToken="eyJvIjowLCJzIjoiTGlzdEFyY2hpdmVzIn0=")
    assert "NextToken" in forged.value.response["Error"]["Message"]
    with pytest.raises(client.exceptions.ValidationException):
        client.list_rule_sets(NextToken="not a token at all")


def test_client_token_replay(api_server: ApiServer) -> None:
    client = api_server.client()
    token = str(uuid.uuid4())
    first = client.create_rule_set(ClientToken=token, RuleSetName="once", Rules=RULES)
    again = client.create_rule_set(ClientToken=token, RuleSetName="once", Rules=RULES)
    assert again["RuleSetId"] == first["RuleSetId"]
    with pytest.raises(client.exceptions.ConflictException) as conflict:
        client.create_rule_set(ClientToken=token, RuleSetName="twice", Rules=RULES)
    assert conflict.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    names = [r["RuleSetName"] for r in client.list_rule_sets()["RuleSets"]]
    assert names == ["main", "once"]


def test_pagination_and_epoch_timestamps(api_server: ApiServer) -> None:
    client = api_server.client()
    for i in range(4):
        client.create_rule_set(RuleSetName=f"page-{i}", Rules=RULES)
    names: list[str] = []
    pages = 0
    for page in client.get_paginator("list_rule_sets").paginate(PaginationConfig={"PageSize": 2}):
        names += [r["RuleSetName"] for r in page["RuleSets"]]
        pages += 1
    assert names == ["main", "page-0", "page-1", "page-2", "page-3"]
    assert pages == 3
    rule_set_id = client.list_rule_sets()["RuleSets"][1]["RuleSetId"]
    raw = post_json(api_server.server.admin_port, "MailManagerSvc.GetRuleSet",
                    {"RuleSetId": rule_set_id}).json()
    for key in ("CreatedDate", "LastModificationDate"):
        assert isinstance(raw[key], int | float)
        assert abs(raw[key] - time.time()) < 120
    assert isinstance(client.get_rule_set(RuleSetId=rule_set_id)["CreatedDate"], dt.datetime)
    # A token is bound to its operation.
    page = post_json(api_server.server.admin_port, "MailManagerSvc.ListRuleSets",
                     {"PageSize": 1}).json()
    assert error_of(post_json(api_server.server.admin_port, "MailManagerSvc.ListArchives",
                              {"NextToken": page["NextToken"]}))[1] == "ValidationException"


def _token_config(tmp_path: Path, credentials: bool) -> dict[str, Any]:
    (tmp_path / "admin.token").write_text("s3cret-bearer\n")
    admin: dict[str, Any] = {"Listen": ["127.0.0.1:0"], "DrainSeconds": 0,
                             "TokenFile": str(tmp_path / "admin.token")}
    if credentials:
        (tmp_path / "api.secret").write_text("api-secret-key\n")
        admin["Credentials"] = {"AccessKeyId": "AKIDMAILMGR",
                                "SecretAccessKeyFile": str(tmp_path / "api.secret")}
    return basic_config(tmp_path, Admin=admin)


def test_bearer_token_guards_the_api_without_credentials(
        api_server_factory: Callable[[dict[str, Any]], ApiServer], tmp_path: Path) -> None:
    api = api_server_factory(_token_config(tmp_path, credentials=False))
    port = api.server.admin_port
    status, code, _ = error_of(post_json(port, "MailManagerSvc.ListRuleSets", {}))
    assert (status, code) == (403, "MissingAuthenticationTokenException")
    wrong = post_json(port, "MailManagerSvc.ListRuleSets", {},
                      {"Authorization": "Bearer nope"})
    assert error_of(wrong)[1] == "MissingAuthenticationTokenException"
    right = post_json(port, "MailManagerSvc.ListRuleSets", {},
                      {"Authorization": "bearer s3cret-bearer"})
    assert right.status == 200 and right.json()["RuleSets"][0]["RuleSetName"] == "main"
    # boto3 signs with SigV4 and has no bearer: refused with the reason.
    client = api.client()
    with pytest.raises(ClientError) as refused:
        client.list_rule_sets()
    assert refused.value.response["Error"]["Code"] == "MissingAuthenticationTokenException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "TokenFile" in refused.value.response["Error"]["Message"]


def test_credentials_take_over_from_the_bearer_token(
        api_server_factory: Callable[[dict[str, Any]], ApiServer], tmp_path: Path) -> None:
    api = api_server_factory(_token_config(tmp_path, credentials=True))
    port = api.server.admin_port
    bearer_only = post_json(port, "MailManagerSvc.ListRuleSets", {},
                            {"Authorization": "Bearer s3cret-bearer"})
    assert bearer_only.status == 403
    assert error_of(bearer_only)[1] == "IncompleteSignatureException"
    client = api.client(key="AKIDMAILMGR", secret="api-secret-key")
    assert [r["RuleSetName"] for r in client.list_rule_sets()["RuleSets"]] == ["main"]
    # The rest of the admin listener still wants the bearer token.
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"{api.url}/metrics", timeout=5)
    assert denied.value.code == 401
    request = urllib.request.Request(f"{api.url}/metrics",
                                     headers={"Authorization": "Bearer s3cret-bearer"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    assert 'mailmgr_api_requests_total{code="OK",operation="ListRuleSets"} 1.0' in text


def test_a_body_cut_short_is_no_internal_failure(api_server: ApiServer) -> None:
    with socket.create_connection(("127.0.0.1", api_server.server.admin_port), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: MailManagerSvc.ListRuleSets\r\n"
                  b"Content-Type: application/x-amz-json-1.0\r\nContent-Length: 1000\r\n\r\n"
                  b'{"PageSize":')
        s.shutdown(socket.SHUT_WR)
        s.recv(65536)
    answer = post_json(api_server.server.admin_port, "MailManagerSvc.ListRuleSets", {})
    assert answer.status == 200
    time.sleep(0.2)
    assert not [e for e in api_server.server.events if e.get("event") == "api.failed"], \
        api_server.server.events[-3:]


def test_oversized_lists_are_refused_before_they_are_walked(api_server: ApiServer) -> None:
    port = api_server.server.admin_port
    cases = {
        # (bodies under the 100000-value bound: beyond it, test_api_hardening.py)
        b'{"RuleSetName": "x", "Rules": [' + b",".join([b"{}"] * 90_000) + b"]}":
            "Rules: at most 40 items",
        b'{"TrafficPolicyName": "xyz", "DefaultAction": "ALLOW", "PolicyStatements": ['
        + b",".join([b'{"Action": "ALLOW", "Conditions": []}'] * 20_000) + b"]}":
            "PolicyStatements: at most 10000 items",
        b'{"RuleSetName": "x", "Rules": [{"Name": "a", "Actions": [{"Drop": {'
        + b",".join(b'"k%d": 1' % i for i in range(45_000)) + b"}}]}]}":
            "Rules[0].Actions[0].Drop: 45000 keys",
    }
    for body, expected in cases.items():
        target = ("MailManagerSvc.CreateTrafficPolicy" if b"TrafficPolicyName" in body
                  else "MailManagerSvc.CreateRuleSet")
        started = time.monotonic()
        status, code, message = error_of(post_json(port, target, body))
        assert (status, code) == (400, "ValidationException")
        assert expected in message
        assert time.monotonic() - started < 2.0, expected
