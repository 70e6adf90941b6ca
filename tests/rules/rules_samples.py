"""Builders for rule-engine tests: messages, facts, rule sets, configs, a scriptable action."""

from __future__ import annotations

from pathlib import Path

from mailmgr.actions.base import ActionInput, ActionResult
from mailmgr.config.models import (
    AcceptAction,
    AddressList,
    Config,
    IngressPoint,
    IngressPointType,
    ListenAddress,
    Rule,
    RuleAction,
    RuleCondition,
    RuleSet,
    ServerConfig,
    TlsPolicy,
    TrafficPolicy,
)
from mailmgr.message import (
    ClientCertificate,
    Envelope,
    InboundMessage,
    SessionFacts,
    Verdicts,
)
from mailmgr.rules.facts import MessageFacts

HEADERS = (
    b'From: "Alice Example" <Alice@Example.com>\r\n'
    b"Sender: sec@example.com\r\n"
    b"To: Bob <bob@example.net>, carol@example.org\r\n"
    b'Cc: "Doe, John" <john@example.com>\r\n'
    b"Subject: =?utf-8?q?Caf=C3=A9_report?= for\r\n =?utf-8?b?TcO8bmNoZW4=?=\r\n"
    b"X-Tag: one\r\n"
    b"X-TAG: Two\r\n"
    b"x-spam-score: 5\r\n"
    b"Disposition-Notification-To: alice@example.com\r\n"
)
BODY = b"\r\nHello\r\nFrom: body@example.com\r\nX-Tag: body\r\n"
CONTENT = HEADERS + BODY

CERT = ClientCertificate(
    attributes=(
        ("CN", ("client.example",)),
        ("SAN_DNS_NAME", ("a.example", "b.example")),
        ("SERIAL_NUMBER", ("0A:DE:EB:89",)),
    )
)


def make_message(
    content: bytes = CONTENT,
    rcpts: tuple[str, ...] = ("a@x.test",),
    *,
    mail_from: str = "sender@example.com",
    helo: str = "mx.client.test",
    ip: str = "192.0.2.10",
    tls: bool = False,
    tls_wrapped: bool = False,
    cert: ClientCertificate | None = None,
) -> InboundMessage:
    session = SessionFacts(
        ingress_point_id="inp-in",
        ingress_point_name="in",
        peer_ip=ip,
        helo=helo,
        tls=tls,
        tls_wrapped=tls_wrapped,
        tls_protocol="TLSv1.3" if tls or tls_wrapped else None,
        client_certificate=cert,
    )
    return InboundMessage(
        id="msg0000000001",
        received_at=1000.0,
        envelope=Envelope(mail_from=mail_from, rcpt_to=rcpts),
        session=session,
        content=content,
    )


def make_facts(
    content: bytes = CONTENT, verdicts: Verdicts | None = None, **kwargs: object
) -> MessageFacts:
    return MessageFacts.build(make_message(content, **kwargs), (), verdicts)  # type: ignore[arg-type]


def rule(
    name: str,
    actions: tuple[RuleAction, ...],
    conditions: tuple[RuleCondition, ...] = (),
    unless: tuple[RuleCondition, ...] = (),
) -> Rule:
    return Rule(name=name, conditions=conditions, unless=unless, actions=actions)


def rule_set(*rules: Rule) -> RuleSet:
    return RuleSet(
        id="rs-main",
        name="main",
        arn="arn:aws:ses:us-east-1:0:mailmanager-rule-set/rs-main",
        rules=rules,
    )


def make_config(
    rules: RuleSet,
    policy: TrafficPolicy | None = None,
    address_lists: tuple[AddressList, ...] = (),
) -> Config:
    policy = policy or TrafficPolicy(
        id="tp-default",
        name="default",
        arn="arn:tp",
        default_action=AcceptAction.ALLOW,
        statements=(),
    )
    point = IngressPoint(
        id="inp-inbound",
        name="inbound",
        arn="arn:inp",
        type=IngressPointType.OPEN,
        rule_set_id=rules.id,
        traffic_policy_id=policy.id,
        tls_policy=TlsPolicy.OPTIONAL,
        listen=(ListenAddress("127.0.0.1", 0),),
    )
    return Config(
        source=Path("mailmgr.yaml"),
        server=ServerConfig(hostname="mx.test", data_directory=Path("var")),
        ingress_points=(point,),
        traffic_policies=(policy,),
        rule_sets=(rules,),
        address_lists=address_lists,
    )


class Scripted:
    """A test action: records every run; answers from a script (results or exceptions)."""

    def __init__(self, name: str = "Scripted", *script: ActionResult | Exception) -> None:
        self.name = name
        self.script = list(script)
        self.runs: list[ActionInput] = []

    async def run(self, item: ActionInput) -> ActionResult:
        self.runs.append(item)
        outcome = self.script.pop(0) if self.script else ActionResult()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
