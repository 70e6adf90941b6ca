"""SigV4 verification of the Mail Manager API (`Server.Admin.Credentials`) on a running server:
boto3 with the right key, wrong secrets and key IDs, no signature, requests signed too long ago
or for another body or query, and the headers real clients sign."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.api.api_wire import JSON_TYPE, Answer, error_of, post
from tests.api.conftest import REGION, ApiServer
from tests.support import basic_config

pytestmark = pytest.mark.slow
KEY_ID = "AKIDMAILMGRTEST"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
LIST = json.dumps({"PageSize": 10}).encode()


@pytest.fixture
def signed_server(api_server_factory: Callable[[dict[str, Any]], ApiServer],
                  tmp_path: Path) -> ApiServer:
    (tmp_path / "api.secret").write_text(SECRET + "\n")
    return api_server_factory(basic_config(tmp_path, Admin={
        "Listen": ["127.0.0.1:0"], "DrainSeconds": 0,
        "Credentials": {"AccessKeyId": KEY_ID,
                        "SecretAccessKeyFile": str(tmp_path / "api.secret")}}))


def signed_headers(port: int, body: bytes, *, path: str = "/", secret: str = SECRET,
                   when: dt.datetime | None = None, extra: dict[str, str] | None = None
                   ) -> dict[str, str]:
    """The headers of a ListRuleSets request signed by botocore's SigV4Auth at `when` (now by
    default), as `Authorization` and `X-Amz-Date` would be on the wire."""
    stamp = (when or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Type": JSON_TYPE, "X-Amz-Target": "MailManagerSvc.ListRuleSets",
               "X-Amz-Date": stamp, **(extra or {})}
    request = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}{path}", data=body,
                         headers=headers)
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(KEY_ID, secret), "ses", REGION)
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    names = signer.signed_headers(signer.headers_to_sign(request))
    headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={signer.scope(request)}, "
                                f"SignedHeaders={names}, Signature={signature}")
    return headers


def send(api: ApiServer, body: bytes, headers: dict[str, str], path: str = "/") -> Answer:
    return post(api.server.admin_port, path, body, headers)


def test_boto3_with_the_right_key_works_and_wrong_keys_do_not(signed_server: ApiServer) -> None:
    client = signed_server.client(key=KEY_ID, secret=SECRET)
    created = client.create_rule_set(RuleSetName="signed", Rules=[
        {"Name": "r", "Actions": [{"Drop": {}}]}])
    assert client.get_rule_set(RuleSetId=created["RuleSetId"])["RuleSetName"] == "signed"

    with pytest.raises(ClientError) as wrong_secret:
        signed_server.client(key=KEY_ID, secret=SECRET[:-1] + "X").list_rule_sets()
    assert wrong_secret.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert wrong_secret.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert SECRET not in str(wrong_secret.value)

    with pytest.raises(ClientError) as wrong_key:
        signed_server.client(key="AKIDSOMEONEELSE", secret=SECRET).list_rule_sets()
    assert wrong_key.value.response["Error"]["Code"] == "UnrecognizedClientException"

    # A refused request changed nothing.
    with pytest.raises(ClientError):
        signed_server.client(key=KEY_ID, secret="wrong").delete_rule_set(
            RuleSetId=created["RuleSetId"])
    assert client.get_rule_set(RuleSetId=created["RuleSetId"])["RuleSetName"] == "signed"


def test_raw_signatures(signed_server: ApiServer) -> None:
    port = signed_server.server.admin_port
    # The helper's own request verifies (so the refusals below are about what they change).
    fresh = send(signed_server, LIST, signed_headers(port, LIST))
    assert fresh.status == 200, fresh.body
    assert [r["RuleSetName"] for r in fresh.json()["RuleSets"]] == ["main"]

    unsigned = {"Content-Type": JSON_TYPE, "X-Amz-Target": "MailManagerSvc.ListRuleSets"}
    assert error_of(send(signed_server, LIST, unsigned))[:2] == (
        403, "MissingAuthenticationTokenException")
    assert error_of(send(signed_server, LIST, {**unsigned, "Authorization": "Basic eDp5"}))[
        1] == "IncompleteSignatureException"

    now = dt.datetime.now(dt.UTC)
    for when in (now - dt.timedelta(minutes=20), now + dt.timedelta(minutes=20)):
        status, code, message = error_of(send(signed_server, LIST,
                                              signed_headers(port, LIST, when=when)))
        assert (status, code) == (403, "InvalidSignatureException")
        assert "15 minutes" in message
    # Within the allowed skew it verifies.
    late = send(signed_server, LIST, signed_headers(port, LIST,
                                                    when=now - dt.timedelta(minutes=10)))
    assert late.status == 200

    tampered = json.dumps({"PageSize": 11}).encode()
    assert error_of(send(signed_server, tampered, signed_headers(port, LIST)))[:2] == (
        403, "InvalidSignatureException")
    # A signed body hash that does not match the body sent is refused too (botocore's signer
    # would otherwise take the header's word for it).
    claimed = {"X-Amz-Content-SHA256": hashlib.sha256(LIST).hexdigest()}
    ok = send(signed_server, LIST, signed_headers(port, LIST, extra=claimed))
    assert ok.status == 200
    assert error_of(send(signed_server, tampered, signed_headers(port, LIST, extra=claimed)))[
        1] == "InvalidSignatureException"
    unsigned_payload = {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    assert error_of(send(signed_server, tampered,
                         signed_headers(port, tampered, extra=unsigned_payload)))[
        1] == "InvalidSignatureException"

    # Query strings and Content-Length are signed as clients sign them.
    with_query = signed_headers(port, LIST, path="/?probe=1&b=%20x",
                                extra={"Content-Length": str(len(LIST))})
    assert send(signed_server, LIST, with_query, path="/?probe=1&b=%20x").status == 200
    assert error_of(send(signed_server, LIST, with_query, path="/?probe=2&b=%20x"))[
        1] == "InvalidSignatureException"

    # The signature is bound to the target: the same signature on another operation fails.
    moved = {**signed_headers(port, LIST), "X-Amz-Target": "MailManagerSvc.ListArchives"}
    assert error_of(send(signed_server, LIST, moved))[1] == "InvalidSignatureException"


def test_signed_cbor_request(signed_server: ApiServer) -> None:
    """The CBOR route verifies the same signature over its own path and body."""
    port = signed_server.server.admin_port
    path = "/service/MailManagerSvc/operation/ListRuleSets"
    body = cbor2.dumps({"PageSize": 5})
    headers = {**signed_headers(port, body, path=path), "Content-Type": "application/cbor"}
    # Content-Type was signed as JSON's: changing it breaks the signature.
    assert send(signed_server, body, headers, path=path).status == 403
    headers = signed_headers(port, body, path=path,
                             extra={"Content-Type": "application/cbor",
                                    "smithy-protocol": "rpc-v2-cbor"})
    answer = send(signed_server, body, headers, path=path)
    assert answer.status == 200, answer.body
    assert [r["RuleSetName"] for r in cbor2.loads(answer.body)["RuleSets"]] == ["main"]
    refused = send(signed_server, body, signed_headers(port, body, path=path, secret="nope"),
                   path=path)
    assert (refused.status, cbor2.loads(refused.body)["__type"]) == (
        403, "InvalidSignatureException")
