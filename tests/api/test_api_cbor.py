"""The smithy RPC v2 CBOR route of the Mail Manager API on a running server: requests built by
botocore's own CBOR serializer, answers read by botocore's own CBOR parser (what an SDK whose
model prefers CBOR does), and hostile CBOR answered SerializationException, quickly."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import botocore.session
import cbor2
import pytest
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

from tests.admin.metrics_support import scrape
from tests.api.api_wire import Answer, post
from tests.api.conftest import ApiServer

pytestmark = pytest.mark.slow
MODEL = botocore.session.get_session().get_service_model("mailmanager")
RULES = [{"Name": "drop", "Actions": [{"Drop": {}}]}]


def call(api: ApiServer, operation: str, params: dict[str, Any]) -> tuple[Answer, dict[str, Any]]:
    """One operation over CBOR: the raw answer and botocore's parse of it (errors parse to
    {"Error": {"Code", "Message"}})."""
    op = MODEL.operation_model(operation)
    request = create_serializer("smithy-rpc-v2-cbor").serialize_to_request(params, op)
    assert request["url_path"] == f"/service/MailManagerSvc/operation/{operation}"
    answer = post(api.server.admin_port, request["url_path"], request["body"],
                  dict(request["headers"]))
    parsed = create_parser("smithy-rpc-v2-cbor").parse(
        {"status_code": answer.status, "headers": answer.headers, "body": answer.body},
        op.output_shape)
    assert answer.headers["smithy-protocol"] == "rpc-v2-cbor"
    assert answer.headers["content-type"] == "application/cbor"
    return answer, parsed


def test_one_request_of_each_kind(api_server: ApiServer) -> None:
    token = str(uuid.uuid4())
    answer, created = call(api_server, "CreateRuleSet",
                           {"ClientToken": token, "RuleSetName": "cbor", "Rules": RULES})
    assert answer.status == 200
    rule_set_id = created["RuleSetId"]
    assert rule_set_id.startswith("rs-")

    _, got = call(api_server, "GetRuleSet", {"RuleSetId": rule_set_id})
    assert got["RuleSetName"] == "cbor"
    assert got["Rules"] == RULES
    assert isinstance(got["CreatedDate"], dt.datetime)
    assert abs(got["CreatedDate"].timestamp() - time.time()) < 120

    _, first = call(api_server, "ListRuleSets", {"PageSize": 1})
    assert [r["RuleSetName"] for r in first["RuleSets"]] == ["main"]
    _, second = call(api_server, "ListRuleSets", {"PageSize": 1, "NextToken": first["NextToken"]})
    assert [r["RuleSetName"] for r in second["RuleSets"]] == ["cbor"]
    assert "NextToken" not in second

    answer, _ = call(api_server, "UpdateRuleSet", {"RuleSetId": rule_set_id,
                                                   "RuleSetName": "cbor-renamed"})
    assert answer.status == 200
    arn = call(api_server, "GetRuleSet", {"RuleSetId": rule_set_id})[1]["RuleSetArn"]
    assert call(api_server, "GetRuleSet", {"RuleSetId": rule_set_id})[1]["RuleSetName"] == \
        "cbor-renamed"

    call(api_server, "TagResource", {"ResourceArn": arn, "Tags": [{"Key": "team",
                                                                    "Value": "mail"}]})
    _, tags = call(api_server, "ListTagsForResource", {"ResourceArn": arn})
    assert tags["Tags"] == [{"Key": "team", "Value": "mail"}]

    # A replay over CBOR answers the first result (the token was used by CreateRuleSet).
    _, replayed = call(api_server, "CreateRuleSet",
                       {"ClientToken": token, "RuleSetName": "cbor", "Rules": RULES})
    assert replayed["RuleSetId"] == rule_set_id

    answer, bad = call(api_server, "CreateRuleSet", {"RuleSetName": "bad", "Rules": [
        {"Name": "r", "Actions": [{"Archive": {"TargetArchive": "nowhere"}}]}]})
    assert answer.status == 400
    assert bad["Error"]["Code"] == "ValidationException"
    assert "Rules[0]" in bad["Error"]["Message"]

    answer, _ = call(api_server, "DeleteRuleSet", {"RuleSetId": rule_set_id})
    assert answer.status == 200
    answer, missing = call(api_server, "GetRuleSet", {"RuleSetId": rule_set_id})
    assert answer.status == 404
    assert missing["Error"]["Code"] == "ResourceNotFoundException"

    # An operation the model does not have.
    raw = post(api_server.server.admin_port, "/service/MailManagerSvc/operation/MakeCoffee",
               cbor2.dumps({}), {"Content-Type": "application/cbor",
                                 "smithy-protocol": "rpc-v2-cbor"})
    unknown = create_parser("smithy-rpc-v2-cbor").parse(
        {"status_code": raw.status, "headers": raw.headers, "body": raw.body}, None)
    assert raw.status == 400
    assert unknown["Error"]["Code"] == "UnknownOperationException"
    metrics = scrape(api_server.server)
    assert metrics.value("mailmgr_api_requests_total", operation="unknown",
                         code="UnknownOperationException") == 1
    assert metrics.value("mailmgr_api_requests_total", operation="GetRuleSet",
                         code="ResourceNotFoundException") == 1


def _huge(major: int) -> bytes:
    """A data item header of major type `major` declaring 2**63 items or bytes."""
    return bytes([(major << 5) | 27]) + (2**63).to_bytes(8, "big")


HOSTILE: dict[str, bytes] = {
    "regex tag 35": cbor2.dumps({"RuleSetName": cbor2.CBORTag(35, "(a+)+$"), "Rules": []}),
    "MIME tag 36": cbor2.dumps({"RuleSetName": cbor2.CBORTag(36, "Subject: x\n\nbody")}),
    "set tag 258": cbor2.dumps({"RuleSetName": cbor2.CBORTag(258, ["a", "b"])}),
    "shared reference tags 28/29": b"\xa1\x6bRuleSetName\xd8\x1c\x81\xd8\x1d\x00",
    "bignum tag 2": cbor2.dumps({"PageSize": cbor2.CBORTag(2, b"\xff" * 100_000)}),
    "unknown tag 9999": cbor2.dumps({"RuleSetName": cbor2.CBORTag(9999, "x")}),
    "deep nesting": b"\xa1\x65Rules" + b"\x81" * 100_000 + b"\x00",
    "indefinite-length arrays never closed": b"\xa1\x65Rules" + b"\x9f" * 200_000,
    "huge declared text length": b"\xa1\x6bRuleSetName" + _huge(3) + b"abc",
    "huge declared array length": b"\xa1\x65Rules" + _huge(4) + b"\x00",
    "huge declared map length": _huge(5) + b"\x61a\x00",
    "duplicate keys": b"\xa2\x6bRuleSetName\x61a\x6bRuleSetName\x61b",
    "non-string keys": cbor2.dumps({1: "x"}),
    "non-map top level": cbor2.dumps(["RuleSetName"]),
    "truncated map": b"\xa2\x6bRuleSetName",
    "invalid UTF-8 text": b"\xa1\x6bRuleSetName\x62\xff\xfe",
    "undefined simple value": b"\xa1\x6bRuleSetName\xf7",
    "epoch time tag 1 out of range": b"\xa1\x6bRuleSetName\xc1\x1b" + b"\xff" * 8,
    "epoch time tag 1 of a string": b"\xa1\x6bRuleSetName\xc1\x61a",
    "epoch time tag 1 of infinity": b"\xa1\x6bRuleSetName\xc1\xfb\x7f\xf0" + b"\x00" * 6,
    "trailing garbage": cbor2.dumps({"RuleSetName": "x"}) + b"\xff\xff",
}


def test_hostile_cbor_is_a_serialization_error(api_server: ApiServer) -> None:
    """One server for every case (each one started would cost more than the cases)."""
    failures = []
    for name, body in HOSTILE.items():
        started = time.monotonic()
        answer = post(api_server.server.admin_port,
                      "/service/MailManagerSvc/operation/CreateRuleSet", body,
                      {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"})
        elapsed = time.monotonic() - started
        code = cbor2.loads(answer.body).get("__type") if answer.body else None
        if (answer.status, code) != (400, "SerializationException") or elapsed > 2.0:
            failures.append(f"{name}: {answer.status} {answer.body[:200]!r} in {elapsed:.2f} s")
    assert not failures, "\n".join(failures)
    # Valid CBOR, if odd: 90000 empty chunks of an indefinite-length string are "" (quickly;
    # beyond 100000 items a body is refused unread, test_api_hardening.py).
    started = time.monotonic()
    odd_body = b"\xa1\x6bRuleSetName\x7f" + b"\x60" * 90_000 + b"\xff"
    answer = post(api_server.server.admin_port, "/service/MailManagerSvc/operation/CreateRuleSet",
                  odd_body, {"Content-Type": "application/cbor"})
    assert cbor2.loads(answer.body)["__type"] == "ValidationException"
    assert "RuleSetName" in cbor2.loads(answer.body)["message"]
    assert time.monotonic() - started < 2.0
    # Nothing was created, and the server still answers.
    _, listed = call(api_server, "ListRuleSets", {})
    assert [r["RuleSetName"] for r in listed["RuleSets"]] == ["main"]
    assert scrape(api_server.server).value("mailmgr_api_requests_total",
                                           operation="CreateRuleSet",
                                           code="SerializationException") == len(HOSTILE)
