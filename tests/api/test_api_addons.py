"""Mail Manager's add-on operations on the analyzer registry, on a running server: analyzers as
add-on instances (their AnalyzerArn, or a derived ARN that `Analysis.Analyzer` accepts), the
add-ons they run as subscriptions, and Create/Delete refused with the reason."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailmgr.config.analyzers import derived_instance_id, find_analyzer
from mailmgr.config.models import Analyzer, AnalyzerEngine, RspamdSettings
from tests.api.conftest import ApiServer
from tests.support import basic_config

SPAMHAUS_ARN = "arn:aws:ses:us-east-1:123456789012:addon-instance/ai-spamhaus"


def _config(tmp_path: Path) -> dict[str, Any]:
    config = basic_config(tmp_path)
    config["Analyzers"] = [
        {"Name": "spamhaus", "AnalyzerArn": SPAMHAUS_ARN,
         "Dnsbl": {"Zones": [{"Zone": "zen.spamhaus.example", "Type": "IP"}]}},
        {"Name": "vade", "Rspamd": {"Url": "http://127.0.0.1:9"}},
        {"Name": "trendmicro", "Clamav": {"Address": "unix:/nonexistent/clamd.ctl"}},
        {"Name": "abusix", "Dnsbl": {"Zones": [
            {"Zone": "combined.mail.abusix.zone", "Type": "IP"},
            {"Zone": "dblack.mail.abusix.zone", "Type": "DOMAIN"}]}},
        {"Name": "vade-2", "Rspamd": {"Url": "http://127.0.0.1:10"}},
    ]
    return config


@pytest.mark.slow
def test_analyzers_are_addon_instances_and_subscriptions(
        api_server_factory: Callable[[dict[str, Any]], ApiServer], tmp_path: Path) -> None:
    client = api_server_factory(_config(tmp_path)).client()
    instances = [i for page in client.get_paginator("list_addon_instances").paginate(
        PaginationConfig={"PageSize": 2}) for i in page["AddonInstances"]]
    assert [i["AddonName"] for i in instances] == [
        "SPAMHAUS_DBL", "VADE_ADVANCED_EMAIL_SECURITY", "TRENDMICRO_VSAPI",
        "ABUSIX_MAIL_INTELLIGENCE", "VADE_ADVANCED_EMAIL_SECURITY"]
    spamhaus, vade, _, _, vade2 = instances
    assert spamhaus["AddonInstanceId"] == "ai-spamhaus"
    assert spamhaus["AddonInstanceArn"] == SPAMHAUS_ARN
    # Without AnalyzerArn: a stable derived ID in AWS's pattern, and the server's ARN.
    assert vade["AddonInstanceId"].startswith("ai-") and vade["AddonInstanceId"][3:].isalnum()
    assert vade["AddonInstanceArn"] == (
        f"arn:aws:ses:us-east-1:000000000000:addon-instance/{vade['AddonInstanceId']}")
    assert vade["AddonInstanceId"] != vade2["AddonInstanceId"]
    assert vade["AddonSubscriptionId"] == vade2["AddonSubscriptionId"]

    got = client.get_addon_instance(AddonInstanceId=vade["AddonInstanceId"])
    assert got["AddonName"] == "VADE_ADVANCED_EMAIL_SECURITY"
    assert got["AddonInstanceArn"] == vade["AddonInstanceArn"]
    assert got["AddonSubscriptionId"] == vade["AddonSubscriptionId"]
    assert got["CreatedTimestamp"].year >= 2024
    with pytest.raises(client.exceptions.ResourceNotFoundException) as missing:
        client.get_addon_instance(AddonInstanceId="ai-nosuchanalyzer")
    assert "Analyzers" in missing.value.response["Error"]["Message"]

    subscriptions = client.list_addon_subscriptions()["AddonSubscriptions"]
    assert [s["AddonName"] for s in subscriptions] == [
        "SPAMHAUS_DBL", "VADE_ADVANCED_EMAIL_SECURITY", "TRENDMICRO_VSAPI",
        "ABUSIX_MAIL_INTELLIGENCE"]
    vade_subscription = subscriptions[1]
    assert vade_subscription["AddonSubscriptionId"] == vade["AddonSubscriptionId"]
    assert vade_subscription["AddonSubscriptionArn"].endswith(
        f":addon-subscription/{vade['AddonSubscriptionId']}")
    got_subscription = client.get_addon_subscription(
        AddonSubscriptionId=vade["AddonSubscriptionId"])
    assert got_subscription["AddonName"] == "VADE_ADVANCED_EMAIL_SECURITY"
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_addon_subscription(AddonSubscriptionId="as-nosuchaddon")

    # Create/Delete: configured in the file, answered with the reason.
    for call in (lambda: client.create_addon_subscription(AddonName="SPAMHAUS_DBL"),
                 lambda: client.create_addon_instance(
                     AddonSubscriptionId=vade["AddonSubscriptionId"]),
                 lambda: client.delete_addon_instance(AddonInstanceId="ai-spamhaus"),
                 lambda: client.delete_addon_subscription(
                     AddonSubscriptionId=vade["AddonSubscriptionId"])):
        with pytest.raises(client.exceptions.ValidationException) as refused:
            call()
        assert "Analyzers section of the config file" in refused.value.response["Error"][
            "Message"]
    assert len(client.list_addon_instances()["AddonInstances"]) == 5

    # The ARNs answered are what a rule's Analysis condition accepts.
    for arn, field, kind in ((vade["AddonInstanceArn"], "addon.verdict", "VerdictExpression"),
                             (SPAMHAUS_ARN, "isListed", "BooleanExpression")):
        condition: dict[str, Any] = {"Evaluate": {"Analysis": {"Analyzer": arn,
                                                               "ResultField": field}}}
        if kind == "VerdictExpression":
            condition.update(Operator="EQUALS", Values=["FAIL"])
        else:
            condition.update(Operator="IS_TRUE")
        created = client.create_rule_set(RuleSetName=f"by-{field}", Rules=[{
            "Name": "r", "Conditions": [{kind: condition}], "Actions": [{"Drop": {}}]}])
        rules = client.get_rule_set(RuleSetId=created["RuleSetId"])["Rules"]
        assert rules[0]["Conditions"][0][kind]["Evaluate"]["Analysis"]["Analyzer"] == arn
    with pytest.raises(client.exceptions.ValidationException) as unknown:
        client.create_rule_set(RuleSetName="unknown-addon", Rules=[{
            "Name": "r", "Actions": [{"Drop": {}}], "Conditions": [{"BooleanExpression": {
                "Evaluate": {"Analysis": {
                    "Analyzer": "arn:aws:ses:us-east-1:000000000000:addon-instance/ai-gone",
                    "ResultField": "isPassed"}},
                "Operator": "IS_TRUE"}}]}])
    assert "Rules[0]" in unknown.value.response["Error"]["Message"]


def test_derived_instance_ids_resolve_only_their_analyzer() -> None:
    plain = Analyzer("vade", "", AnalyzerEngine.RSPAMD, RspamdSettings(url="http://x"))
    with_arn = Analyzer("spamhaus", SPAMHAUS_ARN, AnalyzerEngine.RSPAMD,
                        RspamdSettings(url="http://y"))
    derived = derived_instance_id("vade")
    assert derived == derived_instance_id("vade") != derived_instance_id("vade2")
    assert re.fullmatch(r"ai-[a-zA-Z0-9]{1,64}", derived)
    analyzers = (with_arn, plain)
    # Any region or account, as other resources' ARNs.
    assert find_analyzer(analyzers, f"arn:aws:ses:eu-west-1:111122223333:addon-instance/"
                                    f"{derived}") is plain
    # An analyzer with an AnalyzerArn is found by that ARN's ID, not by a derived one.
    assert find_analyzer(analyzers, "arn:aws:ses:us-east-1:000000000000:addon-instance/"
                                    f"{derived_instance_id('spamhaus')}") is None
    assert find_analyzer(analyzers, "arn:aws:ses:us-east-1:000000000000:addon-instance/"
                                    "ai-spamhaus") is with_arn
