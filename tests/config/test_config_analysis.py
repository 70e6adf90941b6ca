"""`Analysis` conditions in rules and traffic policies: references resolved to the analyzer's Name,
result fields and their types checked, Dnsbl only at RCPT time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from config_helpers import Problems, base, find, write

from mailmgr import config
from mailmgr.config.models import (
    Analysis,
    BooleanCondition,
    BooleanOperator,
    IngressBooleanCondition,
    IngressStringCondition,
    StringCondition,
    StringOperator,
    VerdictCondition,
    VerdictOperator,
)

ARN = "arn:aws:ses:us-east-1:123456789012:addon-instance/ai-spamhaus"
VADE_ARN = "arn:aws:ses:eu-west-1:123456789012:addon-instance/ai-vade"
ANALYZERS: list[dict[str, Any]] = [
    {"Name": "spamhaus", "AnalyzerArn": ARN,
     "Dnsbl": {"Zones": [{"Zone": "zen.example.test", "Type": "IP"}]}},
    {"Name": "vade", "AnalyzerArn": VADE_ARN, "Rspamd": {"Url": "http://127.0.0.1:11333"}},
    {"Name": "trendmicro", "Clamav": {"Address": "127.0.0.1:3310"}},
]
RULE = "$.RuleSets[0].Rules[0].Conditions[0]"
POLICY = "$.TrafficPolicies[0].PolicyStatements[0].Conditions[0]"


def _expr(kind: str, analyzer: str, field: str) -> dict[str, Any]:
    evaluate = {"Analysis": {"Analyzer": analyzer, "ResultField": field}}
    if kind == "BooleanExpression":
        return {kind: {"Evaluate": evaluate, "Operator": "IS_TRUE"}}
    values = ["FAIL"] if kind == "VerdictExpression" else ["x"]
    return {kind: {"Evaluate": evaluate, "Operator": "EQUALS", "Values": values}}


def with_rule(*conditions: dict[str, Any], analyzers: Any = None) -> dict[str, Any]:
    data = base()
    data["Analyzers"] = ANALYZERS if analyzers is None else analyzers
    data["RuleSets"][0]["Rules"][0]["Conditions"] = list(conditions)
    return data


def with_policy(*conditions: dict[str, Any]) -> dict[str, Any]:
    data = base()
    data["Analyzers"] = ANALYZERS
    data["TrafficPolicies"][0]["PolicyStatements"] = [
        {"Action": "DENY", "Conditions": list(conditions)}]
    return data


def test_rule_references_by_name_arn_and_other_region_resolve_to_the_name(
    tmp_path: Path,
) -> None:
    other_region = VADE_ARN.replace("eu-west-1", "us-west-2").replace("123456789012",
                                                                      "000000000000")
    data = with_rule(
        _expr("BooleanExpression", "trendmicro", "isPassed"),
        _expr("VerdictExpression", VADE_ARN, "addon.verdict"),
        _expr("StringExpression", other_region, "category"),
        _expr("StringExpression", "vade", "addon.score"),
        _expr("StringExpression", ARN, "listedOn"),
    )
    rule = config.load(write(tmp_path, data)).rule_sets[0].rules[0]
    assert rule.conditions == (
        BooleanCondition(BooleanOperator.IS_TRUE, analysis=Analysis("trendmicro", "isPassed")),
        VerdictCondition(VerdictOperator.EQUALS, ("FAIL",), analysis=Analysis("vade", "verdict")),
        StringCondition(StringOperator.EQUALS, ("x",), analysis=Analysis("vade", "category")),
        StringCondition(StringOperator.EQUALS, ("x",), analysis=Analysis("vade", "score")),
        StringCondition(StringOperator.EQUALS, ("x",),
                        analysis=Analysis("spamhaus", "listedOn")),
    )


def test_traffic_policy_dnsbl_by_name_and_arn(tmp_path: Path) -> None:
    data = with_policy(_expr("BooleanExpression", ARN, "addon.isListed"),
                       _expr("StringExpression", "spamhaus", "listedOn"))
    (statement,) = config.load(write(tmp_path, data)).traffic_policies[0].statements
    first, second = statement.conditions
    assert isinstance(first, IngressBooleanCondition)
    assert first.analysis == Analysis("spamhaus", "isListed")
    assert isinstance(second, IngressStringCondition)
    assert second.analysis == Analysis("spamhaus", "listedOn")


@pytest.mark.parametrize("ref", [
    "Spamhaus",  # names are case-sensitive
    "arn:aws:ses:us-east-1:123456789012:addon-instance/ai-other",
    "arn:aws:ses:us-east-1:123456789012:addon-subscription/ai-spamhaus",
])
def test_unknown_analyzer_names_it_and_lists_the_configured_ones(
    problems: Problems, ref: str
) -> None:
    found = problems(with_rule(_expr("BooleanExpression", ref, "isListed")))
    find(found, f"{RULE}.BooleanExpression.Evaluate.Analysis.Analyzer",
         f"analyzer '{ref}' not found by Name or AnalyzerArn (configured: spamhaus [{ARN}], "
         f"vade [{VADE_ARN}], trendmicro)")


def test_analysis_without_analyzers_in_rule_and_policy(problems: Problems) -> None:
    ref = "arn:aws:ses:us-east-1:123456789012:addon-instance/ai-1"
    data = with_rule(_expr("VerdictExpression", ref, "addon.verdict"), analyzers=[])
    data["TrafficPolicies"][0]["PolicyStatements"] = [{"Action": "DENY", "Conditions": [
        _expr("BooleanExpression", ref, "isListed")]}]
    found = problems(data)
    message = (f"analyzer '{ref}' not found by Name or AnalyzerArn (no analyzer is configured: "
               "add it under Analyzers)")
    assert {p.path for p in found if p.message == message} == {
        f"{RULE}.VerdictExpression.Evaluate.Analysis.Analyzer",
        f"{POLICY}.BooleanExpression.Evaluate.Analysis.Analyzer",
    }


@pytest.mark.parametrize(("kind", "analyzer", "field", "reason"), [
    ("BooleanExpression", "spamhaus", "isPassed",
     "'isPassed' is not a result field of Dnsbl analyzer 'spamhaus' (fields: isListed, "
     "listedOn)"),
    ("StringExpression", "trendmicro", "addon.verdict",
     "'verdict' is not a result field of Clamav analyzer 'trendmicro' (fields: isPassed, "
     "category)"),
    ("StringExpression", "vade", "IsPassed", "'IsPassed' is not a result field"),
    ("StringExpression", "vade", "addon.addon.score", "does not match pattern"),  # botocore's
    ("StringExpression", "vade", "addon.is Passed", "'is Passed' is not a result field"),
    ("BooleanExpression", "vade", "category",
     "a BooleanExpression needs a boolean result field (isPassed for Rspamd analyzer 'vade'); "
     "'category' is a string"),
    ("StringExpression", "trendmicro", "isPassed",
     "a StringExpression needs a string result field (category for Clamav analyzer "
     "'trendmicro'); 'isPassed' is a boolean"),
    ("VerdictExpression", "vade", "isPassed",
     "a VerdictExpression needs the 'verdict' result field (Rspamd analyzers); 'isPassed' of "
     "Rspamd analyzer 'vade' is a boolean"),
    ("VerdictExpression", "vade", "category", "'category' of Rspamd analyzer 'vade' is a string"),
    ("VerdictExpression", "trendmicro", "category", "needs the 'verdict' result field"),
    ("VerdictExpression", "spamhaus", "verdict", "'verdict' is not a result field of Dnsbl"),
])
def test_wrong_result_field_or_type(
    problems: Problems, kind: str, analyzer: str, field: str, reason: str
) -> None:
    found = problems(with_rule(_expr(kind, analyzer, field)))
    find(found, f"{RULE}.{kind}.Evaluate.Analysis.ResultField", reason)


@pytest.mark.parametrize(("kind", "analyzer", "field"), [
    ("BooleanExpression", "vade", "isPassed"),
    ("BooleanExpression", "trendmicro", "addon.isPassed"),
    ("StringExpression", VADE_ARN, "category"),
])
def test_traffic_policy_refuses_analyzers_that_need_the_message(
    problems: Problems, kind: str, analyzer: str, field: str
) -> None:
    found = problems(with_policy(_expr(kind, analyzer, field)))
    name = "trendmicro" if "trend" in analyzer else "vade"
    engine = "Clamav" if name == "trendmicro" else "Rspamd"
    p = find(found, f"{POLICY}.{kind}.Evaluate.Analysis.Analyzer",
             f"{engine} analyzer '{name}': only Dnsbl analyzers can be evaluated at RCPT time "
             "(no message yet)")
    assert p.file.endswith("mailmgr.yaml")
    assert len(found) == 1


def test_traffic_policy_wrong_dnsbl_field(problems: Problems) -> None:
    found = problems(with_policy(_expr("BooleanExpression", "spamhaus", "listedOn")))
    find(found, f"{POLICY}.BooleanExpression.Evaluate.Analysis.ResultField",
         "a BooleanExpression needs a boolean result field (isListed for Dnsbl analyzer "
         "'spamhaus'); 'listedOn' is a string")


def test_reference_to_a_broken_analyzer_is_not_reported_twice(problems: Problems) -> None:
    analyzers = [{"Name": "vade", "Rspamd": {"Url": "ftp://x"}}]
    found = problems(with_rule(_expr("BooleanExpression", "vade", "isPassed"),
                               analyzers=analyzers))
    assert [p.path for p in found] == ["$.Analyzers[0].Rspamd.Url"]


def test_exported_rule_set_file_resolves_analyzers(tmp_path: Path) -> None:
    """A rule set from `aws mailmanager get-rule-set`, referencing an add-on by ARN."""
    exported = {"RuleSetId": "rs-1", "RuleSetName": "exported", "Rules": [{
        "Name": "drop-virus",
        "Conditions": [{"BooleanExpression": {
            "Evaluate": {"Analysis": {"Analyzer": VADE_ARN, "ResultField": "addon.isPassed"}},
            "Operator": "IS_FALSE"}}],
        "Actions": [{"Drop": {}}]}]}
    write(tmp_path, exported, "exported.json")
    data = with_rule()
    data["RuleSets"][0]["Rules"][0].pop("Conditions")
    data["RuleSets"].append({"File": "exported.json"})
    cfg = config.load(write(tmp_path, data))
    condition = cfg.rule_set("rs-1").rules[0].conditions[0]
    assert getattr(condition, "analysis", None) == Analysis("vade", "isPassed")
