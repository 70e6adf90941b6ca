"""CompiledTrafficPolicy: every attribute and operator, DENY before ALLOW, the default action,
and the `traffic_policy.evaluated` debug record."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from mailmgr import logs
from mailmgr.config.models import (
    AcceptAction,
    BooleanOperator,
    IngressBooleanCondition,
    IngressIpCondition,
    IngressStringCondition,
    IngressTlsCondition,
    IpOperator,
    PolicyCondition,
    PolicyStatement,
    StringOperator,
    TlsProtocolOperator,
    TrafficPolicy,
)
from mailmgr.message import SessionFacts
from mailmgr.rules.address_lists import AddressListIndex
from mailmgr.rules.traffic_policy import CompiledTrafficPolicy, PolicyDecision, decide

ALLOW, DENY = AcceptAction.ALLOW, AcceptAction.DENY


def session(ip: str = "192.0.2.10", tls: str | None = None) -> SessionFacts:
    return SessionFacts(
        ingress_point_id="inp-1", ingress_point_name="inbound", peer_ip=ip,
        tls=tls is not None, tls_protocol=tls,
    )


def policy(default: AcceptAction, *statements: PolicyStatement) -> TrafficPolicy:
    return TrafficPolicy("tp-1", "gate", "arn:tp", default, statements)


def only(condition: PolicyCondition) -> CompiledTrafficPolicy:
    """ALLOW when the condition matches, DENY otherwise."""
    return CompiledTrafficPolicy.compile(
        policy(DENY, PolicyStatement(ALLOW, (condition,))),
        {"al-vip": AddressListIndex(["ceo@example.test", "*@board.example.test"])},
    )


def matches(condition: PolicyCondition, recipient: str = "a@x.test", **facts: str | None) -> bool:
    decision = only(condition).decide(session(**facts), recipient)  # type: ignore[arg-type]
    return decision.decision is ALLOW


def rcpt(op: StringOperator, *values: str) -> IngressStringCondition:
    return IngressStringCondition(op, values, attribute="RECIPIENT")


S = StringOperator


@pytest.mark.parametrize(("condition", "recipient", "expected"), [
    (rcpt(S.EQUALS, "Alice@Example.test"), "alice@EXAMPLE.test", True),
    (rcpt(S.EQUALS, "alice@example.test", "bob@example.test"), "bob@example.test", True),
    (rcpt(S.EQUALS, "alice@example.test"), "alice+tag@example.test", False),
    (rcpt(S.NOT_EQUALS, "alice@example.test"), "bob@example.test", True),
    (rcpt(S.NOT_EQUALS, "alice@example.test", "bob@example.test"), "BOB@example.test", False),
    (rcpt(S.STARTS_WITH, "postmaster@"), "PostMaster@example.test", True),
    (rcpt(S.STARTS_WITH, "postmaster@", "abuse@"), "abuse@example.test", True),
    (rcpt(S.STARTS_WITH, "postmaster@"), "x.postmaster@example.test", False),
    (rcpt(S.ENDS_WITH, "@Example.TEST"), "a@example.test", True),
    (rcpt(S.ENDS_WITH, "@example.test"), "a@example.test.evil", False),
    (rcpt(S.CONTAINS, "+"), "a+tag@example.test", True),
    (rcpt(S.CONTAINS, "SALES", "billing"), "team-sales@example.test", True),
    (rcpt(S.CONTAINS, "sales"), "a@example.test", False),
])
def test_recipient_string_operators(
    condition: IngressStringCondition, recipient: str, expected: bool
) -> None:
    assert matches(condition, recipient) is expected


def ipv4(op: IpOperator, *cidrs: str) -> IngressIpCondition:
    return IngressIpCondition("SENDER_IP", op, cidrs)


def ipv6(op: IpOperator, *cidrs: str) -> IngressIpCondition:
    return IngressIpCondition("SENDER_IPV6", op, cidrs)


IN, OUT = IpOperator.CIDR_MATCHES, IpOperator.NOT_CIDR_MATCHES


@pytest.mark.parametrize(("condition", "ip", "expected"), [
    (ipv4(IN, "192.0.2.0/24"), "192.0.2.10", True),
    (ipv4(IN, "192.0.2.0/24"), "192.0.3.10", False),
    (ipv4(IN, "10.0.0.0/8", "192.0.2.10/32"), "192.0.2.10", True),
    (ipv4(IN, "192.0.2.0/24"), "::ffff:192.0.2.10", True),  # IPv4-mapped counts as IPv4
    (ipv4(IN, "0.0.0.0/0"), "2001:db8::1", False),  # an IPv6 client never matches SENDER_IP
    (ipv4(OUT, "192.0.2.0/24"), "192.0.3.1", True),
    (ipv4(OUT, "192.0.2.0/24"), "192.0.2.1", False),
    (ipv4(OUT, "192.0.2.0/24"), "::ffff:192.0.2.1", False),
    (ipv4(OUT, "0.0.0.0/0"), "2001:db8::1", True),  # decision: no IPv4 value, not inside
    (ipv6(IN, "2001:db8::/32"), "2001:DB8:0:1::5", True),
    (ipv6(IN, "2001:db8::/32"), "2001:db9::1", False),
    (ipv6(IN, "::1/128"), "::1", True),
    (ipv6(IN, "2001:db8::/32", "fd00::/8"), "fd12::1", True),
    (ipv6(IN, "::/0"), "192.0.2.10", False),  # an IPv4 client never matches SENDER_IPV6
    (ipv6(IN, "::/0"), "::ffff:192.0.2.10", False),  # nor does an IPv4-mapped one
    (ipv6(OUT, "2001:db8::/32"), "2001:db9::1", True),
    (ipv6(OUT, "2001:db8::/32"), "2001:db8::1", False),
    (ipv6(OUT, "::/0"), "192.0.2.10", True),  # decision: no IPv6 value, not inside
    (ipv4(IN, "0.0.0.0/0"), "not-an-ip", False),
])
def test_sender_ip_operators(condition: IngressIpCondition, ip: str, expected: bool) -> None:
    assert matches(condition, ip=ip) is expected


MIN, IS = TlsProtocolOperator.MINIMUM_TLS_VERSION, TlsProtocolOperator.IS


@pytest.mark.parametrize(("operator", "value", "tls", "expected"), [
    (MIN, "TLS1_2", "TLSv1.2", True),
    (MIN, "TLS1_2", "TLSv1.3", True),
    (MIN, "TLS1_3", "TLSv1.2", False),
    (MIN, "TLS1_3", "TLSv1.3", True),
    (IS, "TLS1_2", "TLSv1.2", True),
    (IS, "TLS1_2", "TLSv1.3", False),
    (IS, "TLS1_3", "TLSv1.3", True),
    (IS, "TLS1_3", "TLSv1.2", False),
    (MIN, "TLS1_2", None, False),  # a plaintext session matches neither operator
    (IS, "TLS1_2", None, False),
    (IS, "TLS1_3", None, False),
])
def test_tls_protocol(
    operator: TlsProtocolOperator, value: str, tls: str | None, expected: bool
) -> None:
    assert matches(IngressTlsCondition(operator, value), tls=tls) is expected


@pytest.mark.parametrize(("operator", "recipient", "expected"), [
    (BooleanOperator.IS_TRUE, "CEO@example.test", True),
    (BooleanOperator.IS_TRUE, "anyone@board.example.test", True),
    (BooleanOperator.IS_TRUE, "cfo@example.test", False),
    (BooleanOperator.IS_FALSE, "cfo@example.test", True),
    (BooleanOperator.IS_FALSE, "ceo@example.test", False),
])
def test_is_in_address_list(operator: BooleanOperator, recipient: str, expected: bool) -> None:
    condition = IngressBooleanCondition(operator, address_list_id="al-vip")
    assert matches(condition, recipient) is expected


DENY_BAD = PolicyStatement(DENY, (rcpt(S.STARTS_WITH, "bad"),))
ALLOW_X = PolicyStatement(ALLOW, (rcpt(S.ENDS_WITH, "@x.test"),))
ALLOW_NET = PolicyStatement(ALLOW, (
    ipv4(IN, "192.0.2.0/24"), rcpt(S.NOT_EQUALS, "nobody@y.test"),
))


def test_deny_wins_over_an_earlier_allow() -> None:
    compiled = CompiledTrafficPolicy.compile(policy(ALLOW, ALLOW_X, DENY_BAD))
    assert compiled.decide(session(), "bad@x.test") == PolicyDecision(DENY, 2)
    assert compiled.decide(session(), "good@x.test") == PolicyDecision(ALLOW, 1)


def test_statement_needs_all_conditions_then_default() -> None:
    compiled = CompiledTrafficPolicy.compile(policy(DENY, DENY_BAD, ALLOW_X, ALLOW_NET))
    assert compiled.decide(session(), "a@y.test") == PolicyDecision(ALLOW, 3)
    assert compiled.decide(session(), "nobody@y.test") == PolicyDecision(DENY, None)
    assert compiled.decide(session("198.51.100.1"), "a@y.test") == PolicyDecision(DENY, None)
    allow_default = CompiledTrafficPolicy.compile(policy(ALLOW, DENY_BAD))
    assert allow_default.decide(session(), "a@y.test") == PolicyDecision(ALLOW, None)
    assert allow_default.decide(session(), "bad@y.test") == PolicyDecision(DENY, 1)


def test_one_off_decide_matches_the_compiled_policy() -> None:
    p = policy(DENY, DENY_BAD, ALLOW_X)
    compiled = CompiledTrafficPolicy.compile(p)
    for recipient in ("bad@x.test", "ok@x.test", "ok@y.test"):
        assert decide(p, session(), recipient) == compiled.decide(session(), recipient)
        assert compiled.evaluate(session(), recipient).decision == compiled.decide(
            session(), recipient
        )


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    logger = logging.getLogger(logs.LOGGER_NAME)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    stream = io.StringIO()
    logs.setup("json", "DEBUG", stream)
    yield stream
    logger.handlers[:], logger.propagate = saved[0], saved[2]
    logger.setLevel(saved[1])  # setLevel, not assignment: it clears the isEnabledFor cache


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_debug_record_shows_every_statement_and_condition(log_stream: io.StringIO) -> None:
    compiled = CompiledTrafficPolicy.compile(policy(DENY, DENY_BAD, ALLOW_X, ALLOW_NET))
    decision = compiled.check(session("198.51.100.7", tls="TLSv1.3"), "bad@x.test")
    assert decision == PolicyDecision(DENY, 1)
    (record,) = records(log_stream)
    assert record["event"] == "traffic_policy.evaluated"
    assert record["level"] == "DEBUG"
    assert record["recipient"] == "bad@x.test"
    assert record["traffic_policy"] == "gate"
    assert (record["peer_ip"], record["tls_protocol"]) == ("198.51.100.7", "TLSv1.3")
    assert (record["decision"], record["statement"], record["verdict"]) == ("DENY", 1, "REJECT")
    assert record["statements"] == [
        {"index": 1, "action": "DENY", "matched": True, "conditions": [
            {"expression": "StringExpression", "attribute": "RECIPIENT",
             "operator": "STARTS_WITH", "values": ["bad"], "result": True}]},
        {"index": 2, "action": "ALLOW", "matched": True, "conditions": [
            {"expression": "StringExpression", "attribute": "RECIPIENT",
             "operator": "ENDS_WITH", "values": ["@x.test"], "result": True}]},
        {"index": 3, "action": "ALLOW", "matched": False, "conditions": [
            {"expression": "IpExpression", "attribute": "SENDER_IP",
             "operator": "CIDR_MATCHES", "values": ["192.0.2.0/24"], "result": False},
            {"expression": "StringExpression", "attribute": "RECIPIENT",
             "operator": "NOT_EQUALS", "values": ["nobody@y.test"], "result": True}]},
    ]


def test_debug_record_for_default_action_and_address_list(log_stream: io.StringIO) -> None:
    listed = PolicyStatement(DENY, (
        IngressBooleanCondition(BooleanOperator.IS_TRUE, address_list_id="al-vip"),
        IngressTlsCondition(MIN, "TLS1_2"),
    ))
    compiled = CompiledTrafficPolicy.compile(
        policy(ALLOW, listed), {"al-vip": AddressListIndex(["ceo@example.test"])}
    )
    assert compiled.check(session(), "ceo@example.test") == PolicyDecision(ALLOW, None)
    (record,) = records(log_stream)
    assert (record["decision"], record["statement"], record["verdict"]) == ("ALLOW", None, "ACCEPT")
    assert record["default_action"] == "ALLOW"
    assert record["statements"] == [{"index": 1, "action": "DENY", "matched": False, "conditions": [
        {"expression": "BooleanExpression", "attribute": "RECIPIENT",
         "operator": "IsInAddressList IS_TRUE", "address_list": "al-vip", "result": True},
        {"expression": "TlsExpression", "attribute": "TLS_PROTOCOL",
         "operator": "MINIMUM_TLS_VERSION", "values": ["TLS1_2"], "result": False}]}]


def test_no_debug_record_above_debug(log_stream: io.StringIO) -> None:
    logging.getLogger(logs.LOGGER_NAME).setLevel(logging.INFO)
    compiled = CompiledTrafficPolicy.compile(policy(DENY, DENY_BAD))
    assert compiled.check(session(), "bad@x.test") == PolicyDecision(DENY, 1)
    assert log_stream.getvalue() == ""
