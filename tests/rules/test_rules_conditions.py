"""Every condition attribute and operator, table-driven, through compiled predicates."""

from __future__ import annotations

import pytest
from rules_samples import CERT, CONTENT, make_facts

from mailmgr.config.models import (
    BooleanCondition,
    BooleanOperator,
    DmarcCondition,
    IpCondition,
    IpOperator,
    NumberCondition,
    NumberOperator,
    RuleCondition,
    StringCondition,
    StringOperator,
    VerdictCondition,
    VerdictOperator,
)
from mailmgr.message import DmarcPolicy, Verdict, Verdicts
from mailmgr.rules.conditions import RuleCompileError, compile_condition
from mailmgr.rules.facts import MessageFacts

S = StringOperator
RCPT = "a+tag@x.test"


def s(attr: str, op: StringOperator, *values: str) -> StringCondition:
    return StringCondition(operator=op, values=values, attribute=attr)


def mime(header: str, op: StringOperator, *values: str) -> StringCondition:
    return StringCondition(operator=op, values=values, mime_header=header)


def cert(attr: str, op: StringOperator, *values: str) -> StringCondition:
    return StringCondition(operator=op, values=values, client_certificate_attribute=attr)


def check(condition: RuleCondition, facts: MessageFacts, expected: bool) -> None:
    compiled = compile_condition(condition, {})
    assert compiled(facts, RCPT) is expected, compiled.description


STRING_CASES = [
    (s("MAIL_FROM", S.EQUALS, "SENDER@example.com"), True),
    (s("MAIL_FROM", S.EQUALS, "sender@example"), False),
    (s("HELO", S.STARTS_WITH, "MX."), True),
    (s("HELO", S.ENDS_WITH, ".client.test"), True),
    (s("HELO", S.CONTAINS, "other"), False),
    (s("RECIPIENT", S.EQUALS, "A+TAG@x.test"), True),
    (s("RECIPIENT", S.EQUALS, "a@x.test"), False),  # +tag kept as received
    (s("RECIPIENT", S.CONTAINS, "+tag"), True),
    (s("FROM", S.EQUALS, "alice@example.com"), True),
    (s("FROM", S.CONTAINS, "Alice Example"), False),  # display name is no candidate
    (s("SENDER", S.ENDS_WITH, "@EXAMPLE.COM"), True),
    (s("TO", S.EQUALS, "carol@example.org"), True),  # second candidate
    (s("TO", S.EQUALS, "nobody@x", "bob@example.net"), True),  # any value
    (s("TO", S.NOT_EQUALS, "carol@example.org"), False),
    (s("TO", S.NOT_EQUALS, "zed@example.org", "x@y"), True),
    (s("TO", S.STARTS_WITH, "bob@"), True),
    (s("CC", S.EQUALS, "john@example.com"), True),  # quoted comma in display name
    (s("CC", S.CONTAINS, "Doe"), False),
    (s("SUBJECT", S.EQUALS, "café report for münchen"), True),  # RFC 2047, folded
    (s("SUBJECT", S.CONTAINS, "=?utf-8?"), False),
    (s("SUBJECT", S.STARTS_WITH, "CAFÉ"), True),
    (mime("X-Tag", S.EQUALS, "two"), True),  # second occurrence, other name case
    (mime("x-tag", S.EQUALS, "one"), True),
    (mime("X-Tag", S.EQUALS, "body"), False),  # the body is never parsed
    (mime("X-Spam-Score", S.EQUALS, "5"), True),
    (mime("X-Missing", S.EQUALS, "a"), False),
    (mime("X-Missing", S.NOT_EQUALS, "a"), True),
    (mime("X-Missing", S.CONTAINS, ""), False),
]


@pytest.mark.parametrize(("condition", "expected"), STRING_CASES)
def test_string_attributes(condition: StringCondition, expected: bool) -> None:
    check(condition, make_facts(), expected)


ABSENT = b"Subject: only\r\n\r\nbody From: a@b.c\r\n"


@pytest.mark.parametrize("attr", ["FROM", "SENDER", "TO", "CC"])
def test_absent_header_attribute_matches_only_not_equals(attr: str) -> None:
    facts = make_facts(ABSENT)
    for op in (S.EQUALS, S.STARTS_WITH, S.ENDS_WITH, S.CONTAINS):
        check(s(attr, op, ""), facts, False)
    check(s(attr, S.NOT_EQUALS, "a@b.c"), facts, True)


def test_null_sender_and_empty_helo_are_absent() -> None:
    facts = make_facts(mail_from="", helo="")
    check(s("MAIL_FROM", S.EQUALS, ""), facts, False)
    check(s("MAIL_FROM", S.NOT_EQUALS, "x@y"), facts, True)
    check(s("HELO", S.CONTAINS, ""), facts, False)


CERT_CASES = [
    (cert("CN", S.EQUALS, "CLIENT.example"), True),
    (cert("SAN_DNS_NAME", S.EQUALS, "b.example"), True),  # any value of the attribute
    (cert("SAN_DNS_NAME", S.NOT_EQUALS, "b.example"), False),
    (cert("SERIAL_NUMBER", S.STARTS_WITH, "0a:de"), True),
    (cert("SAN_RFC822_NAME", S.CONTAINS, ""), False),
    (cert("SAN_RFC822_NAME", S.NOT_EQUALS, "x"), True),
]


@pytest.mark.parametrize(("condition", "expected"), CERT_CASES)
def test_client_certificate_attributes(condition: StringCondition, expected: bool) -> None:
    check(condition, make_facts(cert=CERT), expected)


def test_no_client_certificate_has_no_candidates() -> None:
    facts = make_facts()
    check(cert("CN", S.EQUALS, "client.example"), facts, False)
    check(cert("CN", S.NOT_EQUALS, "client.example"), facts, True)


def b(attr: str, op: BooleanOperator = BooleanOperator.IS_TRUE) -> BooleanCondition:
    return BooleanCondition(operator=op, attribute=attr)


T, F = BooleanOperator.IS_TRUE, BooleanOperator.IS_FALSE
BOOLEAN_CASES = [
    (b("TLS"), {}, False),
    (b("TLS", F), {}, True),
    (b("TLS"), {"tls": True}, True),
    (b("TLS_WRAPPED"), {"tls": True}, False),
    (b("TLS"), {"tls_wrapped": True}, True),  # implicit TLS is TLS too
    (b("TLS_WRAPPED"), {"tls_wrapped": True}, True),
    (b("TLS_WRAPPED", F), {"tls_wrapped": True}, False),
    (b("READ_RECEIPT_REQUESTED"), {}, True),
    (b("READ_RECEIPT_REQUESTED"), {"content": ABSENT}, False),
    (b("READ_RECEIPT_REQUESTED", F), {"content": ABSENT}, True),
    (b("READ_RECEIPT_REQUESTED"), {"content": b"Return-Receipt-To: a@b.c\n\nx"}, True),
]


@pytest.mark.parametrize(("condition", "kwargs", "expected"), BOOLEAN_CASES)
def test_boolean_attributes(
    condition: BooleanCondition, kwargs: dict[str, object], expected: bool
) -> None:
    check(condition, make_facts(**kwargs), expected)  # type: ignore[arg-type]


N = NumberOperator
SIZE = len(CONTENT)
NUMBER_CASES = [
    (N.EQUALS, SIZE, True),
    (N.EQUALS, SIZE + 1, False),
    (N.NOT_EQUALS, SIZE, False),
    (N.NOT_EQUALS, SIZE - 1, True),
    (N.LESS_THAN, SIZE, False),
    (N.LESS_THAN, SIZE + 1, True),
    (N.GREATER_THAN, SIZE - 1, True),
    (N.GREATER_THAN, SIZE, False),
    (N.LESS_THAN_OR_EQUAL, SIZE, True),
    (N.LESS_THAN_OR_EQUAL, SIZE - 1, False),
    (N.GREATER_THAN_OR_EQUAL, SIZE, True),
    (N.GREATER_THAN_OR_EQUAL, SIZE + 1, False),
]


@pytest.mark.parametrize(("op", "value", "expected"), NUMBER_CASES)
def test_message_size(op: NumberOperator, value: float, expected: bool) -> None:
    check(NumberCondition(operator=op, value=value), make_facts(), expected)


M, NM = IpOperator.CIDR_MATCHES, IpOperator.NOT_CIDR_MATCHES
IP_CASES = [
    ("192.0.2.10", M, ("192.0.2.0/24",), True),
    ("192.0.2.10", M, ("198.51.100.0/24", "192.0.2.10/32"), True),
    ("192.0.2.10", M, ("198.51.100.0/24",), False),
    ("192.0.2.10", NM, ("198.51.100.0/24",), True),
    ("192.0.2.10", NM, ("192.0.2.0/24",), False),
    ("2001:db8::5", M, ("2001:db8::/32",), True),
    ("2001:db8::5", M, ("2001:db9::/32",), False),
    ("2001:db8::5", NM, ("2001:db8::/32",), False),
    ("2001:db8::5", M, ("0.0.0.0/0",), False),  # other family never matches
    ("192.0.2.10", M, ("::/0",), False),
    ("192.0.2.10", NM, ("::/0",), True),
    ("::ffff:192.0.2.10", M, ("192.0.2.0/24",), True),  # IPv4-mapped from a dual-stack socket
]


@pytest.mark.parametrize(("ip", "op", "cidrs", "expected"), IP_CASES)
def test_source_ip(ip: str, op: IpOperator, cidrs: tuple[str, ...], expected: bool) -> None:
    check(IpCondition(operator=op, values=cidrs), make_facts(ip=ip), expected)


V = VerdictOperator
VERDICTS = Verdicts(spf=Verdict.PASS, dkim=Verdict.FAIL, dmarc=Verdict.PASS)
VERDICT_CASES = [
    ("SPF", V.EQUALS, ("PASS",), True),
    ("SPF", V.EQUALS, ("FAIL", "GRAY"), False),
    ("SPF", V.NOT_EQUALS, ("FAIL", "GRAY"), True),
    ("SPF", V.NOT_EQUALS, ("GRAY", "PASS"), False),
    ("DKIM", V.EQUALS, ("GRAY", "FAIL"), True),
    ("DKIM", V.NOT_EQUALS, ("FAIL",), False),
    ("DKIM", V.EQUALS, ("PROCESSING_FAILED",), False),
]


@pytest.mark.parametrize(("attr", "op", "values", "expected"), VERDICT_CASES)
def test_verdicts(attr: str, op: VerdictOperator, values: tuple[str, ...], expected: bool) -> None:
    condition = VerdictCondition(operator=op, values=values, attribute=attr)
    check(condition, make_facts(verdicts=VERDICTS), expected)


def test_default_verdicts_are_processing_failed() -> None:
    condition = VerdictCondition(V.EQUALS, ("PROCESSING_FAILED",), attribute="SPF")
    check(condition, make_facts(), True)


ALL = ("NONE", "QUARANTINE", "REJECT")
DMARC_CASES = [
    (None, V.EQUALS, ALL, False),  # no policy: EQUALS never matches
    (None, V.NOT_EQUALS, ALL, True),  # and NOT_EQUALS always matches
    (DmarcPolicy.REJECT, V.EQUALS, ("REJECT",), True),
    (DmarcPolicy.REJECT, V.EQUALS, ("NONE", "QUARANTINE"), False),
    (DmarcPolicy.REJECT, V.NOT_EQUALS, ("REJECT",), False),
    (DmarcPolicy.NONE, V.NOT_EQUALS, ("REJECT", "QUARANTINE"), True),
    (DmarcPolicy.NONE, V.EQUALS, ("NONE",), True),
]


@pytest.mark.parametrize(("policy", "op", "values", "expected"), DMARC_CASES)
def test_dmarc(
    policy: DmarcPolicy | None, op: VerdictOperator, values: tuple[str, ...], expected: bool
) -> None:
    dmarc = Verdict.FAIL if policy else Verdict.PASS
    verdicts = Verdicts(Verdict.PASS, Verdict.PASS, dmarc, policy)
    check(DmarcCondition(operator=op, values=values), make_facts(verdicts=verdicts), expected)


GARBAGE = [
    b"",
    b"\x00\xff\xfe garbage without colon\r\n\r\nbody",
    b'From: <<<@@@>>>\r\nTo: ,,,;;;\r\nCc: "unterminated\r\nSubject: =?utf-8?b?!!!?=\r\n\r\n',
    b"From: \xff\xfe@\xc3\r\nSubject: =?bogus-charset?q?x?=\r\n\r\n",
    b"To: undisclosed-recipients:;\r\nSubject: \r\n\r\n",
    b"X-Broken\r\n: value\r\n\r\n",
]


@pytest.mark.parametrize("content", GARBAGE)
def test_malformed_headers_give_no_candidates_and_never_crash(content: bytes) -> None:
    facts = make_facts(content)
    assert facts.from_ == facts.to == facts.cc == facts.sender == ()
    check(s("FROM", S.NOT_EQUALS, "x@y"), facts, True)
    check(s("SUBJECT", S.EQUALS, "never"), facts, False)


def test_utf8_headers_are_read() -> None:
    content = "From: Jörg <jörg@exämple.de>\r\nSubject: grüße\r\n\r\nx".encode()
    facts = make_facts(content)
    assert facts.from_ == ("jörg@exämple.de",)
    assert facts.subject == ("grüße",)


def test_headers_without_body_separator() -> None:
    facts = make_facts(b"From: a@b.c\r\nTo: d@e.f")
    assert facts.from_ == ("a@b.c",)
    assert facts.to == ("d@e.f",)


@pytest.mark.parametrize(
    "condition",
    [
        BooleanCondition(T, address_list_attribute="RECIPIENT", address_list_id="al-missing"),
        StringCondition(S.EQUALS, ("x",), attribute="BOGUS"),
        IpCondition(M, ("not-a-cidr",)),
    ],
)
def test_uncompilable_conditions_fail_at_compile_time(condition: RuleCondition) -> None:
    with pytest.raises(RuleCompileError):
        compile_condition(condition, {})


def test_descriptions() -> None:
    assert compile_condition(s("FROM", S.EQUALS, "x"), {}).description == "StringExpression FROM"
    assert (
        compile_condition(mime("X-A", S.EQUALS, "x"), {}).description
        == "StringExpression MimeHeaderAttribute X-A"
    )
    assert compile_condition(b("TLS"), {}).description == "BooleanExpression TLS"
    assert (
        compile_condition(DmarcCondition(V.EQUALS, ("NONE",)), {}).description == "DmarcExpression"
    )
