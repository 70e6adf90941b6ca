"""References by ID, name and ARN; unresolvable references; duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_helpers import MAILBOX_ARN, Problems, base, find, write

from mailmgr import config
from mailmgr.config.ids import ResourceKind, derive_id

RS_ID = derive_id(ResourceKind.RULE_SET, "main")
ARCHIVE_ID = derive_id(ResourceKind.ARCHIVE, "default")


@pytest.mark.parametrize("ref", [
    "main",
    RS_ID,
    f"arn:aws:ses:eu-west-1:123456789012:mailmanager-rule-set/{RS_ID}",
    f"arn:aws:ses:ap-south-1:000000000000:mailmanager-rule-set/{RS_ID}",
])
def test_rule_set_reference_forms(tmp_path: Path, ref: str) -> None:
    data = base()
    data["IngressPoints"][0]["RuleSetId"] = ref
    cfg = config.load(write(tmp_path, data))
    assert cfg.ingress_points[0].rule_set_id == RS_ID


@pytest.mark.parametrize("ref", [
    "default", ARCHIVE_ID, f"arn:aws:ses:us-east-1:1:mailmanager-archive/{ARCHIVE_ID}",
])
def test_archive_reference_forms(tmp_path: Path, ref: str) -> None:
    data = base()
    data["RuleSets"][0]["Rules"][0]["Actions"][0]["Archive"]["TargetArchive"] = ref
    cfg = config.load(write(tmp_path, data))
    action = cfg.rule_sets[0].rules[0].actions[0]
    assert getattr(action, "archive_id") == ARCHIVE_ID  # noqa: B009


def test_explicit_id_is_used_for_references(tmp_path: Path) -> None:
    data = base()
    data["TrafficPolicies"][0]["TrafficPolicyId"] = "tp-mine"
    data["IngressPoints"][0]["TrafficPolicyId"] = "tp-mine"
    cfg = config.load(write(tmp_path, data))
    assert cfg.ingress_points[0].traffic_policy_id == "tp-mine"
    assert cfg.traffic_policy("tp-mine").name == "default"


@pytest.mark.parametrize(("ref", "text"), [
    ("nope", f"rule set 'nope' not found by ID, name or ARN (configured: main [{RS_ID}])"),
    ("rs-00000000000000000000000000", "rule set 'rs-00000000000000000000000000' not found"),
    ("arn:aws:ses:eu-west-1:123456789012:mailmanager-rule-set/rs-missing",
     "not found by ID, name or ARN"),
    (f"arn:aws:ses:eu-west-1:123456789012:mailmanager-archive/{RS_ID}",
     "is not a rule set ARN (expected resource type mailmanager-rule-set; configured: main"),
])
def test_bad_rule_set_reference(problems: Problems, ref: str, text: str) -> None:
    data = base()
    data["IngressPoints"][0]["RuleSetId"] = ref
    (p,) = problems(data)
    assert p.path == "$.IngressPoints[0].RuleSetId"
    assert text in p.message


def test_bad_references_in_rules_and_policies(problems: Problems) -> None:
    data = base()
    data["IngressPoints"][0]["TrafficPolicyId"] = "other"
    data["RuleSets"][0]["Rules"][0]["Actions"][0]["Archive"]["TargetArchive"] = "gone"
    data["RuleSets"][0]["Rules"][0]["Conditions"] = [{"BooleanExpression": {
        "Evaluate": {"IsInAddressList": {"Attribute": "FROM", "AddressLists": ["vip"]}},
        "Operator": "IS_TRUE"}}]
    data["TrafficPolicies"][0]["PolicyStatements"] = [{"Action": "DENY", "Conditions": [
        {"BooleanExpression": {"Evaluate": {"IsInAddressList": {
            "Attribute": "RECIPIENT",
            "AddressLists": ["arn:aws:ses:x:1:mailmanager-address-list/al-1"],
        }}, "Operator": "IS_TRUE"}}]}]
    found = problems(data)
    find(found, "$.IngressPoints[0].TrafficPolicyId", "traffic policy 'other' not found")
    find(found, "$.RuleSets[0].Rules[0].Actions[0].Archive.TargetArchive",
         f"archive 'gone' not found by ID, name or ARN (configured: default [{ARCHIVE_ID}])")
    find(found, "$.RuleSets[0].Rules[0].Conditions[0].BooleanExpression.Evaluate"
                ".IsInAddressList.AddressLists[0]",
         "address list 'vip' not found by ID, name or ARN (no address list is configured)")
    find(found, "$.TrafficPolicies[0].PolicyStatements[0].Conditions[0].BooleanExpression"
                ".Evaluate.IsInAddressList.AddressLists[0]", "address list 'arn:aws:ses:x:1:")


def test_relay_reference(tmp_path: Path) -> None:
    data = base()
    data["Relays"] = [{"RelayName": "up", "ServerName": "smtp.test", "ServerPort": 25,
                       "Authentication": {"NoAuthentication": {}}}]
    data["RuleSets"][0]["Rules"][0]["Actions"] = [{"Relay": {"Relay": "missing"}}]
    path = write(tmp_path, data)
    from config_helpers import problems_of

    found = problems_of(path)
    find(found, "$.RuleSets[0].Rules[0].Actions[0].Relay.Relay",
         "relay 'missing' not found by ID, name or ARN (configured: up [rl-")


def test_deliver_to_mailbox_needs_configured_mailbox(problems: Problems) -> None:
    data = base()
    data["Mailboxes"] = [{"MailboxArn": MAILBOX_ARN, "Maildir": "md"}]
    data["RuleSets"][0]["Rules"][0]["Actions"] = [
        {"DeliverToMailbox": {"MailboxArn": MAILBOX_ARN, "RoleArn": "arn:aws:iam::1:role/r"}},
        {"DeliverToMailbox": {"MailboxArn": MAILBOX_ARN + "9", "RoleArn": "arn:aws:iam::1:role/r"}},
    ]
    found = problems(data)
    where = "$.RuleSets[0].Rules[0].Actions[{}].DeliverToMailbox"
    find(found, where.format(1) + ".MailboxArn",
         f"mailbox '{MAILBOX_ARN}9' is not configured in Mailboxes (configured: {MAILBOX_ARN})")
    assert not [p for p in found if p.path == where.format(0) + ".MailboxArn"]


def test_duplicate_names_and_ids(problems: Problems) -> None:
    data = base()
    data["Archives"].append({"ArchiveName": "default"})
    data["Archives"].append({"ArchiveName": "other", "ArchiveId": "a-x"})
    data["Archives"].append({"ArchiveName": "third", "ArchiveId": "a-x"})
    found = problems(data)
    find(found, "$.Archives[1]", "duplicate ArchiveName 'default' (also at $.Archives[0]")
    find(found, "$.Archives[3]", "duplicate ArchiveId 'a-x' (also used by archive 'other' at "
                                 "$.Archives[2]")
    assert len(found) == 2


def test_duplicate_mailbox(problems: Problems) -> None:
    data = base()
    data["Mailboxes"] = [{"MailboxArn": MAILBOX_ARN, "Maildir": "a"},
                         {"MailboxArn": MAILBOX_ARN, "Lmtp": "127.0.0.1:24"}]
    (p,) = problems(data)
    assert p.path == "$.Mailboxes[1].MailboxArn" and "duplicate MailboxArn" in p.message


def test_explicit_id_pattern(problems: Problems) -> None:
    data = base()
    data["RuleSets"][0]["RuleSetId"] = "rs/bad"
    found = problems(data)
    find(found, "$.RuleSets[0].RuleSetId", "does not match pattern")
