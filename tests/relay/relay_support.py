"""Builders for relay tests: a scriptable aiosmtpd relay, configs, messages, action inputs."""


from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailmgr.actions.base import ActionInput, Resources
from mailmgr.actions.executor import execute
from mailmgr.actions.relay import RelayDelivery
from mailmgr.aws import SecretStore
from mailmgr.config.models import (
    ActionFailurePolicy,
    Config,
    MailFrom,
    Relay,
    RelayAction,
    RetryPolicy,
    Rule,
    RuleSet,
    ServerConfig,
)
from mailmgr.message import Envelope as MessageEnvelope
from mailmgr.message import InboundMessage, ProcessingState, SessionFacts, Verdicts
from mailmgr.rules.engine import CompiledRuleSet
from mailmgr.smtpclient import SmtpTimeouts

HOSTNAME = "mx.test.example"
FAST = SmtpTimeouts(connect=5, greeting=5, command=5, mail=5, rcpt=5, data_init=5,
                    data_block=5, data_end=5)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]
    auth_user: str | None
    tls: bool


@dataclass
class Handler:
    """Records every message; RCPT/DATA replies can be scripted per recipient (one per try)."""

    received: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    connections: int = 0

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        script = self.rcpt_replies.get(address)
        if script:
            reply = script.pop(0)
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        content = envelope.original_content or b""
        auth = session.auth_data.login.decode() if isinstance(
            session.auth_data, LoginPassword) else None
        self.received.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos),
                                      content, list(envelope.mail_options), auth,
                                      session.ssl is not None))
        return "250 2.0.0 queued"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.commands.append("RSET")
        return "250 OK"

    def delivered_to(self) -> list[str]:
        return [r for msg in self.received for r in msg.rcpt_tos]


class RelayServer:
    """aiosmtpd on 127.0.0.1 in the running loop; `port` may be chosen before it listens."""

    def __init__(self, handler: Handler, port: int = 0, **smtp: Any) -> None:
        self.handler = handler
        self.port = port
        self._smtp = smtp
        self._server: asyncio.Server | None = None
        self._sessions: list[SMTP] = []

    def _factory(self) -> SMTP:
        self.handler.connections += 1
        session = SMTP(self.handler, hostname="relay.test", **self._smtp)
        self._sessions.append(session)
        return session

    async def start(self) -> RelayServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._factory, "127.0.0.1", self.port,
                                                reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for session in self._sessions:  # Python 3.11's Server has no close_clients()
            if session.transport is not None:
                session.transport.close()
        self._sessions.clear()
        await asyncio.sleep(0.01)  # let the sessions see connection_lost


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server_context: ssl.SSLContext


def authenticator(users: dict[str, str]) -> Callable[..., AuthResult]:
    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
              auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword)
              and users.get(auth_data.login.decode()) == auth_data.password.decode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data)
    return check


def make_relay(port: int, **changes: Any) -> Relay:
    values: dict[str, Any] = {"id": "r-up", "name": "upstream", "arn": "arn:relay/r-up",
                              "server_name": "127.0.0.1", "server_port": port}
    values.update(changes)
    return Relay(**values)


def make_config(relay: Relay, retry: RetryPolicy | None = None) -> Config:
    server = ServerConfig(hostname=HOSTNAME, data_directory=Path("/nonexistent"),
                          retry=retry or RetryPolicy(initial_delay=1, max_delay=2, max_age=60))
    return Config(source=Path("test.yaml"), server=server, ingress_points=(),
                  traffic_policies=(), rule_sets=(), relays=(relay,))


def make_action(relay: Relay, *, mail_from: MailFrom = MailFrom.PRESERVE,
                policy: ActionFailurePolicy = ActionFailurePolicy.CONTINUE,
                retry: RetryPolicy | None = None, secrets: SecretStore | None = None,
                **settings: Any) -> RelayDelivery:
    model = RelayAction(failure_policy=policy, relay_id=relay.id, mail_from=mail_from)
    resources = Resources(config=make_config(relay, retry), secrets=secrets)
    settings.setdefault("timeouts", FAST)
    return RelayDelivery(model, relay, resources, **settings)


CONTENT = (b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: hello\r\n\r\n"
           b"Hello,\r\n.leading dot\r\nbye\r\n")


def make_message(content: bytes = CONTENT, rcpts: tuple[str, ...] = ("bob@example.net",),
                 mail_from: str = "alice@example.com", *, smtputf8: bool = False,
                 message_id: str = "relaytest00000001") -> InboundMessage:
    return InboundMessage(
        id=message_id, received_at=1000.0,
        envelope=MessageEnvelope(mail_from=mail_from, rcpt_to=rcpts, smtputf8=smtputf8),
        session=SessionFacts(ingress_point_id="inp-1", ingress_point_name="in",
                             peer_ip="192.0.2.1"),
        content=content)


def make_input(message: InboundMessage, recipients: tuple[str, ...] | None = None, *,
               content: bytes | None = None, resume: str | None = None) -> ActionInput:
    return ActionInput(message=message, content=content if content is not None
                       else message.content, recipients=recipients or message.envelope.rcpt_to,
                       verdicts=Verdicts(), rule_set_id="rs-1", rule_set_name="main",
                       rule_index=1, rule_name="relay-all", action_index=1, resume=resume)




class Walk:
    """The real executor over one rule whose only action is a Relay (policy as given)."""

    def __init__(self, relay: Relay, *, policy: ActionFailurePolicy,
                 retry: RetryPolicy | None = None) -> None:
        self.retry = retry or RetryPolicy(initial_delay=1, max_delay=2, max_age=60)
        model = RelayAction(failure_policy=policy, relay_id=relay.id)
        self.action = RelayDelivery(model, relay, Resources(config=make_config(relay, self.retry)),
                                    timeouts=FAST)
        rules = (Rule(name="relay-all", conditions=(), unless=(), actions=(model,)),)
        self.rule_set = CompiledRuleSet.compile(
            RuleSet(id="rs-1", name="main", arn="arn:rs-1", rules=rules), {})
        self.checkpoints: list[ProcessingState] = []

    async def _checkpoint(self, state: ProcessingState) -> None:
        self.checkpoints.append(state)

    async def __call__(self, message: InboundMessage,
                       state: ProcessingState | None = None) -> ProcessingState:
        return await execute(message, state or ProcessingState(verdicts=Verdicts()),
                             self.rule_set, [[self.action]], retry=self.retry,
                             checkpoint=self._checkpoint)
