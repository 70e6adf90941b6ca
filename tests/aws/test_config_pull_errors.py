"""`mailmgr config pull`'s expected failures, through the real command: each is one line on
stderr and exit status 1, never a traceback.

AccessDenied and throttling come from a small aiohttp server on an ephemeral port that answers
Mail Manager's routes (smithy-rpc-v2-cbor, what botocore uses for `mailmanager`, and AWS JSON
1.0) with AWS error bodies: the seam for errors that mailmgr's own API never gives."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from mailmgr.aws.mailmanager_pull import MAX_ATTEMPTS
from tests.support import ROOT


def aws_env(tmp_path: Path, *, credentials: bool = True) -> dict[str, str]:
    """An environment where nothing of this machine's AWS setup leaks in."""
    (tmp_path / "aws-config").write_text("")
    (tmp_path / "aws-credentials").write_text("")
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


def _cbor_text(text: str) -> bytes:
    data = text.encode()
    if len(data) < 24:
        return bytes([0x60 + len(data)]) + data
    if len(data) < 256:
        return bytes([0x78, len(data)]) + data
    return bytes([0x79]) + len(data).to_bytes(2, "big") + data


def cbor_map(items: dict[str, str]) -> bytes:
    """CBOR (RFC 8949) of a small map of text strings: all an error body needs."""
    assert len(items) < 24
    return bytes([0xA0 + len(items)]) + b"".join(
        _cbor_text(k) + _cbor_text(v) for k, v in items.items())


Answer = Callable[[str], tuple[int, dict[str, str]]]  # operation -> (status, body)


@pytest.fixture
async def fake_api() -> AsyncIterator[Callable[[Answer], asyncio.Future[str]]]:
    runners: list[web.AppRunner] = []

    async def start(answer: Answer) -> str:
        async def cbor(request: web.Request) -> web.Response:
            status, body = answer(request.match_info["op"])
            return web.Response(status=status, body=cbor_map(body), headers={
                "Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"})

        async def json_route(request: web.Request) -> web.Response:
            operation = request.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
            status, body = answer(operation)
            return web.Response(status=status, text=json.dumps(body),
                                content_type="application/x-amz-json-1.0")

        app = web.Application()
        app.router.add_post("/service/MailManagerSvc/operation/{op}", cbor)
        app.router.add_post("/", json_route)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


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


async def test_access_denied_is_one_line(
        tmp_path: Path, fake_api: Callable[..., asyncio.Future[str]]) -> None:
    url = await fake_api(lambda op: (403, {"__type": "AccessDeniedException",
                                           "message": f"not allowed to call {op}"}))
    code, out, err = await pull(aws_env(tmp_path), "--endpoint-url", url)
    assert code == 1 and out == ""
    line = one_line(err)
    assert line.startswith("mailmgr: config pull: List")
    assert line.endswith("AccessDeniedException: not allowed to call "
                         + line.split(": ")[2])  # the operation named is the one refused


async def test_throttling_after_botocores_retries_is_one_line(
        tmp_path: Path, fake_api: Callable[..., asyncio.Future[str]]) -> None:
    calls: dict[str, int] = {}

    def answer(operation: str) -> tuple[int, dict[str, str]]:
        calls[operation] = calls.get(operation, 0) + 1
        if operation == "ListRuleSets":
            return 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
        return 200, {}  # an empty page: no items, no NextToken

    url = await fake_api(answer)
    code, out, err = await pull(aws_env(tmp_path), "--endpoint-url", url)
    assert code == 1 and out == ""
    assert one_line(err) == "mailmgr: config pull: ListRuleSets: ThrottlingException: Rate exceeded"
    assert calls["ListRuleSets"] == MAX_ATTEMPTS  # botocore retried before giving up


async def test_an_empty_account_pulls_a_server_section(
        tmp_path: Path, fake_api: Callable[..., asyncio.Future[str]]) -> None:
    calls: list[str] = []

    def answer(operation: str) -> tuple[int, dict[str, str]]:
        calls.append(operation)
        return 200, {}

    url = await fake_api(answer)
    env = {**aws_env(tmp_path), "AWS_DEFAULT_REGION": "eu-central-1"}
    code, out, err = await pull(env, "--endpoint-url", url)
    assert code == 0, err
    assert sorted(calls) == ["ListAddressLists", "ListArchives", "ListIngressPoints",
                             "ListRelays", "ListRuleSets", "ListTrafficPolicies"]
    assert f"region eu-central-1, {url}, at " in out
    assert "\nServer:\n" in out and "Region: eu-central-1" in out
    assert "IngressPoints" not in out
