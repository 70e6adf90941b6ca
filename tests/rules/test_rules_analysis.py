"""Analysis conditions (Email Add-ons) in rules and traffic policies, on stored results: a listed
or failed scan matches as configured; an engine failure (no value) never decides."""

from __future__ import annotations

import pytest
from rules_samples import make_facts

from mailmgr.config.models import (
    AcceptAction,
    Analysis,
    BooleanCondition,
    BooleanOperator,
    IngressBooleanCondition,
    IngressStringCondition,
    PolicyStatement,
    RuleCondition,
    StringCondition,
    StringOperator,
    TrafficPolicy,
    VerdictCondition,
    VerdictOperator,
)
from mailmgr.message import (
    AnalysisResult,
    AnalysisResults,
    AnalysisStatus,
    SessionFacts,
    Verdict,
    Verdicts,
)
from mailmgr.rules.conditions import compile_condition
from mailmgr.rules.traffic_policy import CompiledTrafficPolicy

T, F = BooleanOperator.IS_TRUE, BooleanOperator.IS_FALSE
S, V = StringOperator, VerdictOperator


def result(name: str, engine: str, overall: Verdict, **fields: bool | str) -> AnalysisResult:
    return AnalysisResult(name, engine, AnalysisStatus.OK, overall, tuple(fields.items()))


def failed(name: str, engine: str) -> AnalysisResult:
    return AnalysisResult(name, engine, AnalysisStatus.FAILED, Verdict.PROCESSING_FAILED,
                          detail="connect: refused")


LISTED = result("spamhaus", "Dnsbl", Verdict.FAIL, isListed=True, listedOn="spam-domain,zen")
CLEAN = result("spamhaus", "Dnsbl", Verdict.PASS, isListed=False, listedOn="")
VIRUS = result("clam", "Clamav", Verdict.FAIL, isPassed=False, category="Eicar.UNOFFICIAL")
SPAM = result("vade", "Rspamd", Verdict.FAIL, isPassed=False, verdict="FAIL",
              category="spam", score="15.00")


def facts(*results: AnalysisResult) -> object:
    return make_facts(verdicts=Verdicts(analysis=AnalysisResults(results)))


def matches(condition: RuleCondition, *results: AnalysisResult) -> bool:
    return compile_condition(condition, {})(facts(*results), "a@x.test")  # type: ignore[arg-type]


def a(name: str, field: str) -> Analysis:
    return Analysis(name, field)


@pytest.mark.parametrize(("condition", "results", "expected"), [
    (BooleanCondition(T, analysis=a("spamhaus", "isListed")), (LISTED,), True),
    (BooleanCondition(F, analysis=a("spamhaus", "isListed")), (LISTED,), False),
    (BooleanCondition(F, analysis=a("spamhaus", "isListed")), (CLEAN,), True),
    (BooleanCondition(F, analysis=a("clam", "isPassed")), (VIRUS,), True),
    (BooleanCondition(T, analysis=a("clam", "isPassed")), (VIRUS,), False),
    # failed engine: neither IS_TRUE nor IS_FALSE
    (BooleanCondition(T, analysis=a("clam", "isPassed")), (failed("clam", "Clamav"),), False),
    (BooleanCondition(F, analysis=a("clam", "isPassed")), (failed("clam", "Clamav"),), False),
    # no result at all (analyzer added after the message was analysed)
    (BooleanCondition(F, analysis=a("clam", "isPassed")), (), False),
    # each listed name is a candidate
    (StringCondition(S.EQUALS, ("ZEN",), analysis=a("spamhaus", "listedOn")), (LISTED,), True),
    (StringCondition(S.EQUALS, ("spam",), analysis=a("spamhaus", "listedOn")), (LISTED,), False),
    (StringCondition(S.NOT_EQUALS, ("zen",), analysis=a("spamhaus", "listedOn")), (CLEAN,),
     True),
    (StringCondition(S.CONTAINS, ("eicar",), analysis=a("clam", "category")), (VIRUS,), True),
    (StringCondition(S.EQUALS, ("x",), analysis=a("clam", "category")),
     (failed("clam", "Clamav"),), False),
    (VerdictCondition(V.EQUALS, ("FAIL",), analysis=a("vade", "verdict")), (SPAM,), True),
    (VerdictCondition(V.NOT_EQUALS, ("PASS",), analysis=a("vade", "verdict")), (SPAM,), True),
    (VerdictCondition(V.EQUALS, ("PROCESSING_FAILED",), analysis=a("vade", "verdict")),
     (failed("vade", "Rspamd"),), True),
    (VerdictCondition(V.EQUALS, ("FAIL",), analysis=a("vade", "verdict")),
     (failed("vade", "Rspamd"),), False),
])
def test_rule_analysis_conditions(condition: RuleCondition, results: tuple[AnalysisResult, ...],
                                  expected: bool) -> None:
    assert matches(condition, *results) is expected


def test_rule_analysis_description() -> None:
    compiled = compile_condition(BooleanCondition(T, analysis=a("spamhaus", "isListed")), {})
    assert compiled.description == "BooleanExpression Analysis spamhaus isListed"


SESSION = SessionFacts("inp-1", "in", "192.0.2.7")


def policy(*conditions: IngressBooleanCondition | IngressStringCondition) -> CompiledTrafficPolicy:
    return CompiledTrafficPolicy.compile(TrafficPolicy(
        id="tp-1", name="tp", arn="arn:aws:ses:us-east-1:0:mailmanager-traffic-policy/tp-1",
        default_action=AcceptAction.ALLOW,
        statements=(PolicyStatement(AcceptAction.DENY, conditions),),
    ))


def test_traffic_policy_denies_listed_and_ignores_failures() -> None:
    deny = policy(IngressBooleanCondition(T, analysis=a("spamhaus", "isListed")))
    assert deny.needs_analysis
    listed, clean = AnalysisResults((LISTED,)), AnalysisResults((CLEAN,))
    broken = AnalysisResults((failed("spamhaus", "Dnsbl"),))
    assert deny.decide(SESSION, "a@x.test", listed).decision is AcceptAction.DENY
    assert deny.decide(SESSION, "a@x.test", listed).statement == 1
    assert deny.decide(SESSION, "a@x.test", clean).decision is AcceptAction.ALLOW
    # a DNS outage never rejects by itself
    assert deny.decide(SESSION, "a@x.test", broken).decision is AcceptAction.ALLOW
    assert deny.decide(SESSION, "a@x.test").decision is AcceptAction.ALLOW


def test_traffic_policy_listed_on_and_debug_record_shape() -> None:
    deny = policy(IngressStringCondition(S.EQUALS, ("spam-domain",),
                                         analysis=a("spamhaus", "listedOn")))
    results = AnalysisResults((LISTED,))
    assert deny.decide(SESSION, "a@x.test", results).decision is AcceptAction.DENY
    evaluation = deny.evaluate(SESSION, "a@x.test", results)
    condition = evaluation.statements[0].statement.conditions[0]
    assert condition.to_expression() == {
        "analysis": {"analyzer": "spamhaus", "resultField": "listedOn"},
        "operator": "EQUALS", "value": ["spam-domain"],
    }
    assert condition.to_log(True)["analysis"] == {"analyzer": "spamhaus",
                                                  "result_field": "listedOn"}


def test_policy_without_analysis_does_not_wait() -> None:
    plain = policy(IngressStringCondition(S.EQUALS, ("x",), attribute="RECIPIENT"))
    assert not plain.needs_analysis
