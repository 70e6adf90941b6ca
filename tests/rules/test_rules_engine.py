"""Rule evaluation per recipient (conditions, unless, reasons) and traffic-policy decisions."""

from __future__ import annotations

import pytest
from rules_samples import make_facts, make_message, rule, rule_set

from mailmgr.config.models import (
    AcceptAction,
    AddressList,
    BooleanOperator,
    DropAction,
    IngressBooleanCondition,
    IngressIpCondition,
    IngressStringCondition,
    IngressTlsCondition,
    IpOperator,
    PolicyStatement,
    StringCondition,
    StringOperator,
    TlsProtocolOperator,
    TrafficPolicy,
)
from mailmgr.rules.address_lists import build_indexes
from mailmgr.rules.engine import CompiledRuleSet, RecipientMatch
from mailmgr.rules.traffic_policy import PolicyDecision, decide

S = StringOperator


def rcpt(op: StringOperator, *values: str) -> StringCondition:
    return StringCondition(operator=op, values=values, attribute="RECIPIENT")


def test_conditions_and_unless_with_reasons() -> None:
    rules = rule_set(
        rule("all", (DropAction(),)),
        rule(
            "x-only",
            (DropAction(),),
            conditions=(
                StringCondition(S.EQUALS, ("alice@example.com",), attribute="FROM"),
                rcpt(S.ENDS_WITH, "@x.test"),
            ),
            unless=(rcpt(S.EQUALS, "nobody@x.test"), rcpt(S.STARTS_WITH, "vip")),
        ),
    )
    compiled = CompiledRuleSet.compile(rules, {})
    facts = make_facts()
    recipients = ("vip@x.test", "a@x.test", "b@y.test", "c@x.test")
    first = compiled.evaluate(0, facts, recipients)
    assert first.matched == recipients
    second = compiled.evaluate(1, facts, recipients)
    assert second.rule_name == "x-only"
    assert second.matched == ("a@x.test", "c@x.test")  # order kept
    assert second.results == (
        RecipientMatch(
            "vip@x.test", False, "unless condition 2 (StringExpression RECIPIENT) matched"
        ),
        RecipientMatch("a@x.test", True),
        RecipientMatch("b@y.test", False, "condition 2 (StringExpression RECIPIENT) did not match"),
        RecipientMatch("c@x.test", True),
    )


def test_condition_reason_names_the_first_failing_condition() -> None:
    rules = rule_set(
        rule(
            "vip",
            (DropAction(),),
            conditions=(StringCondition(S.EQUALS, ("ceo@example.com",), attribute="FROM"),),
        )
    )
    result = CompiledRuleSet.compile(rules, {}).evaluate(0, make_facts(), ("a@x.test",))
    assert result.matched == ()
    assert result.results[0].reason == "condition 1 (StringExpression FROM) did not match"


def test_failure_policies_and_action_names_compiled() -> None:
    from mailmgr.config.models import ActionFailurePolicy, ArchiveAction

    rules = rule_set(
        rule("r", (DropAction(), ArchiveAction(failure_policy=ActionFailurePolicy.DROP)))
    )
    compiled = CompiledRuleSet.compile(rules, {}).rules[0]
    assert compiled.index == 1
    assert compiled.action_names == ("Drop", "Archive")
    assert compiled.failure_policies == (ActionFailurePolicy.CONTINUE, ActionFailurePolicy.DROP)


def policy(default: AcceptAction, *statements: PolicyStatement) -> TrafficPolicy:
    return TrafficPolicy("tp-1", "p", "arn:tp", default, statements)


def test_default_action_without_statements() -> None:
    session = make_message().session
    assert decide(policy(AcceptAction.ALLOW), session, "a@x") == PolicyDecision(
        AcceptAction.ALLOW, None
    )
    assert decide(policy(AcceptAction.DENY), session, "a@x").decision is AcceptAction.DENY


def test_statements_deny_first_then_allow() -> None:
    allow_x = PolicyStatement(
        AcceptAction.ALLOW, (IngressStringCondition(S.ENDS_WITH, ("@x.test",), "RECIPIENT"),)
    )
    deny_bad = PolicyStatement(
        AcceptAction.DENY,
        (
            IngressStringCondition(S.STARTS_WITH, ("bad",), "RECIPIENT"),
            IngressIpCondition("SENDER_IP", IpOperator.CIDR_MATCHES, ("192.0.2.0/24",)),
        ),
    )
    p = policy(AcceptAction.DENY, allow_x, deny_bad)
    session = make_message().session
    assert decide(p, session, "good@x.test") == PolicyDecision(AcceptAction.ALLOW, 1)
    assert decide(p, session, "bad@x.test") == PolicyDecision(AcceptAction.DENY, 2)
    assert decide(p, session, "good@y.test") == PolicyDecision(AcceptAction.DENY, None)
    other_ip = make_message(ip="2001:db8::1").session
    assert decide(p, other_ip, "bad@x.test") == PolicyDecision(AcceptAction.ALLOW, 1)


@pytest.mark.parametrize(
    ("operator", "value", "tls", "expected"),
    [
        (TlsProtocolOperator.MINIMUM_TLS_VERSION, "TLS1_2", True, True),
        (TlsProtocolOperator.MINIMUM_TLS_VERSION, "TLS1_3", True, True),
        (TlsProtocolOperator.IS, "TLS1_2", True, False),
        (TlsProtocolOperator.IS, "TLS1_3", True, True),
        (TlsProtocolOperator.MINIMUM_TLS_VERSION, "TLS1_2", False, False),
        (TlsProtocolOperator.IS, "TLS1_2", False, False),
    ],
)
def test_tls_protocol_condition(
    operator: TlsProtocolOperator, value: str, tls: bool, expected: bool
) -> None:
    p = policy(
        AcceptAction.DENY,
        PolicyStatement(AcceptAction.ALLOW, (IngressTlsCondition(operator, value),)),
    )
    decision = decide(p, make_message(tls=tls).session, "a@x")
    assert (decision.decision is AcceptAction.ALLOW) is expected


def test_ipv6_and_address_list_conditions() -> None:
    lists = build_indexes([AddressList("al-1", "l", "arn:al", ("*@x.test",))])
    p = policy(
        AcceptAction.ALLOW,
        PolicyStatement(
            AcceptAction.DENY,
            (
                IngressIpCondition("SENDER_IPV6", IpOperator.CIDR_MATCHES, ("2001:db8::/32",)),
                IngressBooleanCondition(BooleanOperator.IS_FALSE, address_list_id="al-1"),
            ),
        ),
    )
    v6 = make_message(ip="2001:db8::7").session
    assert decide(p, v6, "a@y.test", lists) == PolicyDecision(AcceptAction.DENY, 1)
    assert decide(p, v6, "a@x.test", lists) == PolicyDecision(AcceptAction.ALLOW, None)
    v4 = make_message(ip="192.0.2.1").session
    assert decide(p, v4, "a@y.test", lists) == PolicyDecision(AcceptAction.ALLOW, None)
