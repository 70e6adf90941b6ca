"""Builders for the AWS action tests: messages, inputs, clients, a recording fake AWS server."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from aiohttp import web

from mailmgr.actions.base import Action, ActionInput, Resources
from mailmgr.actions.executor import execute
from mailmgr.aws import AwsClients, AwsSettings
from mailmgr.config.models import (
    Config,
    Mailbox,
    RetryPolicy,
    Rule,
    RuleAction,
    RuleSet,
    ServerConfig,
)
from mailmgr.message import (
    Envelope,
    InboundMessage,
    ProcessingState,
    SessionFacts,
    Verdict,
    Verdicts,
)
from mailmgr.rules.engine import CompiledRuleSet

ACCOUNT = "123456789012"
ROLE_A = f"arn:aws:iam::{ACCOUNT}:role/mail-a"
ROLE_B = f"arn:aws:iam::{ACCOUNT}:role/mail-b"
RETRY = RetryPolicy(initial_delay=10.0, max_delay=60.0, max_age=3600.0)

CONTENT = (
    b"Return-Path: <alice@example.com>\r\n"
    b'From: "Alice Example" <alice@example.com>\r\n'
    b"To: Bob <bob@example.net>, carol@example.org\r\n"
    b"Cc: dave@example.org\r\n"
    b"Subject: =?utf-8?q?Caf=C3=A9?= report\r\n"
    b"Date: Mon, 5 Dec 2016 18:40:08 -0800\r\n"
    b"Message-ID: <orig-1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"X-Long: folded\r\n  continuation\r\n"
    b"\r\n"
    b"Hello Bob,\r\n.leading dot\r\nCaf\xc3\xa9\r\n"
)


def make_message(
    content: bytes = CONTENT,
    rcpts: tuple[str, ...] = ("bob@example.net", "carol@example.org"),
    mail_from: str = "alice@example.com",
    message_id: str = "0abc123def456ghi789",
) -> InboundMessage:
    return InboundMessage(
        id=message_id,
        received_at=1_700_000_000.25,
        envelope=Envelope(mail_from=mail_from, rcpt_to=rcpts),
        session=SessionFacts(ingress_point_id="inp-1", ingress_point_name="in",
                             peer_ip="192.0.2.1", helo="client.test"),
        content=content,
    )


VERDICTS = Verdicts(spf=Verdict.PASS, dkim=Verdict.GRAY, dmarc=Verdict.PASS)


def make_input(
    message: InboundMessage | None = None,
    recipients: tuple[str, ...] | None = None,
    verdicts: Verdicts = VERDICTS,
    resume: str | None = None,
    content: bytes | None = None,
) -> ActionInput:
    message = message or make_message()
    return ActionInput(
        message=message,
        content=message.content if content is None else content,
        recipients=message.envelope.rcpt_to if recipients is None else recipients,
        verdicts=verdicts,
        rule_set_id="rs-1",
        rule_set_name="main",
        rule_index=1,
        rule_name="r1",
        action_index=1,
        resume=resume,
    )


def make_config(mailboxes: tuple[Mailbox, ...] = ()) -> Config:
    return Config(
        source=Path("mailmgr.yaml"),
        server=ServerConfig(hostname="mx.test.example", data_directory=Path("var")),
        ingress_points=(), traffic_policies=(), rule_sets=(), mailboxes=mailboxes,
    )


def clients_for(moto: str, fake: str | None = None, lambda_timeout: float = 30.0) -> AwsClients:
    urls = {"lambda": fake, "qbusiness": fake} if fake else {}
    # botocore counts `max_attempts` as retries after the first try: 0 = one try only.
    return AwsClients(AwsSettings(region="us-east-1", endpoint_url=moto, max_attempts=0,
                                  endpoint_urls=urls, read_timeouts={"lambda": lambda_timeout}))


def resources(clients: AwsClients | None, mailboxes: tuple[Mailbox, ...] = ()) -> Resources:
    return Resources(config=make_config(mailboxes), aws=clients)


def boto(endpoint: str, service: str) -> Any:
    return boto3.client(service, region_name="us-east-1", endpoint_url=endpoint)


def rule_set(*rules: tuple[str, Sequence[RuleAction]]) -> RuleSet:
    return RuleSet(id="rs-1", name="main", arn="arn:rs",
                   rules=tuple(Rule(name=n, conditions=(), unless=(), actions=tuple(a))
                               for n, a in rules))


@dataclass
class Walk:
    """The real executor over a rule set, with a settable clock."""

    rules: RuleSet
    actions: Sequence[Sequence[Action]]
    clock: float = 1_700_000_100.0
    checkpoints: list[ProcessingState] = field(default_factory=list)

    async def _checkpoint(self, state: ProcessingState) -> None:
        self.checkpoints.append(state)

    async def __call__(
        self, message: InboundMessage, state: ProcessingState | None = None
    ) -> ProcessingState:
        return await execute(
            message, state or ProcessingState(verdicts=VERDICTS),
            CompiledRuleSet.compile(self.rules, {}), self.actions, retry=RETRY,
            checkpoint=self._checkpoint, now=lambda: self.clock, log=False,
        )


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def access_key(self) -> str:
        match = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", ""))
        return match.group(1) if match else ""


@dataclass
class Scripted:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def function_error(message: str = "boom") -> Scripted:
    body = json.dumps({"errorMessage": message, "errorType": "Exception"}).encode()
    return Scripted(200, body, {"X-Amz-Function-Error": "Unhandled"})


def aws_error(status: int, code: str) -> Scripted:
    return Scripted(status, json.dumps({"message": code}).encode(),
                    {"x-amzn-ErrorType": code, "Content-Type": "application/json"})


class FakeAws:
    """Serves Lambda `Invoke` and Q Business `BatchPutDocument` on 127.0.0.1:<ephemeral>,
    records every request, answers from per-route scripts (default: success)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.lambda_script: deque[Scripted] = deque()
        self.q_script: deque[Scripted] = deque()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/2015-03-31/functions/{name}/invocations", self._invoke)
        app.router.add_post("/applications/{app}/indices/{idx}/documents", self._documents)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> Recorded:
        rec = Recorded(request.method, request.path, dict(request.headers), await request.read())
        self.requests.append(rec)
        return rec

    async def _answer(self, scripted: Scripted) -> web.Response:
        if scripted.delay:
            await asyncio.sleep(scripted.delay)
        return web.Response(status=scripted.status, body=scripted.body, headers=scripted.headers)

    async def _invoke(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        if self.lambda_script:
            return await self._answer(self.lambda_script.popleft())
        if rec.headers.get("X-Amz-Invocation-Type") == "Event":
            return web.Response(status=202)
        return web.json_response({"disposition": "CONTINUE"})

    async def _documents(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.q_script:
            return await self._answer(self.q_script.popleft())
        return web.json_response({"failedDocuments": []})

    def invocations(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/2015-03-31/")]

    def documents(self) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        for r in self.requests:
            if r.path.startswith("/applications/"):
                docs.extend(r.json()["documents"])
        return docs


def blob_text(document: dict[str, Any]) -> str:
    return base64.b64decode(document["content"]["blob"]).decode("utf-8")
