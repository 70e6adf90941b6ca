"""`mailmgr config pull` through the real command against a small Mail Manager endpoint: every
page is read and Get* calls are bounded; each expected failure is one line on stderr and exit
status 1, never a traceback.

The endpoint is an aiohttp server on an ephemeral port answering Mail Manager's routes
(smithy-rpc-v2-cbor, what botocore uses for `mailmanager`, and AWS JSON 1.0): the seam for
AccessDenied, throttling and paging that mailmgr's own API does not produce on demand."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
import yaml
from aiohttp import web

from mailmgr.aws.mailmanager_pull import GET_CONCURRENCY, MAX_ATTEMPTS
from tests.support import ROOT


def aws_env(tmp_path: Path, *, credentials: bool = True, config_file: str = "",
            credentials_file: str = "") -> dict[str, str]:
    """An environment where nothing of this machine's AWS setup leaks in (its own AWS config
    and credentials files with the given text)."""
    (tmp_path / "aws-config").write_text(config_file)
    (tmp_path / "aws-credentials").write_text(credentials_file)
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if credentials:
        env.update(AWS_ACCESS_KEY_ID="AKIDPULLTEST", AWS_SECRET_ACCESS_KEY="pull-test-secret")
    return env


async def pull(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailmgr", "config", "pull", *args, cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


Answer = Callable[[str, dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]
"""(operation, request parameters) -> (HTTP status, response body)."""


@pytest.fixture
async def fake_api() -> AsyncIterator[Callable[[Answer], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(answer: Answer) -> str:
        async def cbor(request: web.Request) -> web.Response:
            raw = await request.read()
            status, body = await answer(request.match_info["op"], cbor2.loads(raw) if raw else {})
            return web.Response(status=status, body=cbor2.dumps(body), headers={
                "Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"})

        async def json_route(request: web.Request) -> web.Response:
            operation = request.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
            status, body = await answer(operation, json.loads(await request.read() or b"{}"))
            return web.Response(status=status, text=json.dumps(body),
                                content_type="application/x-amz-json-1.0")

        app = web.Application()
        app.router.add_post("/service/MailManagerSvc/operation/{op}", cbor)
        app.router.add_post("/", json_route)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


FakeApi = Callable[[Answer], Awaitable[str]]


async def test_no_credentials_is_one_line(tmp_path: Path) -> None:
    code, out, err = await pull(aws_env(tmp_path, credentials=False),
                                "--endpoint-url", "http://127.0.0.1:9")
    assert code == 1 and out == ""
    assert one_line(err) == ("mailmgr: config pull: no AWS credentials found (set "
                             "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use --profile)")


async def test_unknown_profile_is_one_line(tmp_path: Path) -> None:
    code, _, err = await pull(aws_env(tmp_path), "--profile", "nosuch")
    assert code == 1
    assert one_line(err) == "mailmgr: config pull: The config profile (nosuch) could not be found"


async def test_unreachable_endpoint_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out, err = await pull(aws_env(tmp_path), "--endpoint-url",
                                f"http://127.0.0.1:{port}", "--region", "us-east-1")
    assert code == 1 and out == ""
    assert one_line(err) == f"mailmgr: config pull: cannot reach http://127.0.0.1:{port}/"


async def test_access_denied_is_one_line(tmp_path: Path, fake_api: FakeApi) -> None:
    async def answer(operation: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 403, {"__type": "AccessDeniedException",
                     "message": f"not allowed to call {operation}"}

    url = await fake_api(answer)
    code, out, err = await pull(aws_env(tmp_path), "--endpoint-url", url)
    assert code == 1 and out == ""
    line = one_line(err)
    assert line.startswith("mailmgr: config pull: List")
    assert line.endswith("AccessDeniedException: not allowed to call "
                         + line.split(": ")[2])  # the operation named is the one refused


async def test_throttling_after_botocores_retries_is_one_line(
        tmp_path: Path, fake_api: FakeApi) -> None:
    calls: dict[str, int] = {}

    async def answer(operation: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        calls[operation] = calls.get(operation, 0) + 1
        if operation == "ListRuleSets":
            return 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
        return 200, {}  # an empty page: no items, no NextToken

    url = await fake_api(answer)
    code, out, err = await pull(aws_env(tmp_path), "--endpoint-url", url)
    assert code == 1 and out == ""
    assert one_line(err) == "mailmgr: config pull: ListRuleSets: ThrottlingException: Rate exceeded"
    assert calls["ListRuleSets"] == MAX_ATTEMPTS  # botocore retried before giving up


async def test_an_empty_account_pulls_a_server_section(tmp_path: Path, fake_api: FakeApi
                                                      ) -> None:
    calls: list[str] = []

    async def answer(operation: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        calls.append(operation)
        return 200, {}

    url = await fake_api(answer)
    # botocore's own endpoint override is honoured, and the header names the endpoint used
    env = {**aws_env(tmp_path), "AWS_DEFAULT_REGION": "eu-central-1",
           "AWS_ENDPOINT_URL_MAILMANAGER": url}
    code, out, err = await pull(env)
    assert code == 0, err
    assert sorted(calls) == ["ListAddressLists", "ListArchives", "ListIngressPoints",
                             "ListRelays", "ListRuleSets", "ListTrafficPolicies"]
    assert f"region eu-central-1, {url}, at " in out
    assert "\nServer:\n" in out and "Region: eu-central-1" in out
    assert "IngressPoints" not in out


async def test_every_page_is_read_and_get_calls_are_bounded(tmp_path: Path, fake_api: FakeApi
                                                            ) -> None:
    """26 rule sets over 3 List pages (one deleted before its Get), an address list whose 25
    members come in 3 pages: all are pulled (the deleted one skipped), and no more than
    GET_CONCURRENCY Get*/ListTags calls are in flight at once."""
    rule_sets = [f"rs-{i:02d}" for i in range(25)]
    members = [f"m{i:02d}@example.test" for i in range(25)]
    arn = "arn:aws:ses:eu-west-1:111122223333:mailmanager-{}/{}"
    in_flight = peak = 0

    def page(items: list[Any], params: dict[str, Any], key: str) -> dict[str, Any]:
        start = int(params.get("NextToken") or 0)
        body: dict[str, Any] = {key: items[start:start + 10]}
        if start + 10 < len(items):
            body["NextToken"] = str(start + 10)
        return body

    async def answer(operation: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        nonlocal in_flight, peak
        if operation == "ListRuleSets":  # and one deleted between the List and its Get
            return 200, page([{"RuleSetId": i, "RuleSetName": i}
                              for i in [*rule_sets, "rs-gone"]], params, "RuleSets")
        if operation == "ListAddressLists":
            return 200, {"AddressLists": [{"AddressListId": "al-big", "AddressListName": "big"}]}
        if operation == "ListMembersOfAddressList":
            assert params["AddressListId"] == "al-big"
            assert params["PageSize"] == 1000  # the model's largest page
            return 200, page([{"Address": m} for m in members], params, "Addresses")
        if operation.startswith("List") and operation != "ListTagsForResource":
            return 200, {}
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        if operation == "GetRuleSet":
            rid = params["RuleSetId"]
            if rid == "rs-gone":
                return 404, {"__type": "ResourceNotFoundException", "message": "gone"}
            return 200, {"RuleSetId": rid, "RuleSetName": rid,
                         "RuleSetArn": arn.format("rule-set", rid),
                         "Rules": [{"Name": "drop", "Actions": [{"Drop": {}}]}]}
        if operation == "GetAddressList":
            return 200, {"AddressListId": "al-big", "AddressListName": "big",
                         "AddressListArn": arn.format("address-list", "al-big")}
        assert operation == "ListTagsForResource", operation
        return 200, {"Tags": [{"Key": "id", "Value": params["ResourceArn"].rsplit("/", 1)[1]}]}

    url = await fake_api(answer)
    code, out, err = await pull(aws_env(tmp_path), "--endpoint-url", url)
    assert code == 0, err
    document = yaml.safe_load(out)
    assert [r["RuleSetId"] for r in document["RuleSets"]] == rule_sets
    assert all(r["Tags"] == [{"Key": "id", "Value": r["RuleSetId"]}]
               for r in document["RuleSets"])
    assert document["AddressLists"] == [{
        "AddressListName": "big", "AddressListId": "al-big", "Members": members,
        "Tags": [{"Key": "id", "Value": "al-big"}]}]
    assert document["Server"]["AccountId"] == "111122223333"
    assert 1 < peak <= GET_CONCURRENCY


async def test_a_named_profile_gives_credentials_and_region(tmp_path: Path, fake_api: FakeApi
                                                            ) -> None:
    async def answer(operation: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {}

    url = await fake_api(answer)
    env = aws_env(tmp_path, credentials=False,
                  config_file="[profile pulltest]\nregion = ap-south-1\n",
                  credentials_file="[pulltest]\naws_access_key_id = AKIDPROFILE\n"
                                   "aws_secret_access_key = profile-secret\n")
    code, out, err = await pull(env, "--profile", "pulltest", "--endpoint-url", url)
    assert code == 0, err
    assert f"region ap-south-1, {url}, at " in out and "profile-secret" not in out
    # an explicit --region wins over the profile's
    code, out, err = await pull(env, "--profile", "pulltest", "--endpoint-url", url,
                                "--region", "sa-east-1")
    assert code == 0, err
    assert "region sa-east-1," in out
