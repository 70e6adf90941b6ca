"""explain: the whole JSON for a multi-rule set with a drop and a replaced recipient."""

from __future__ import annotations

import pytest
from rules_samples import make_config, rule, rule_set

from mailmgr.config.models import (
    AcceptAction,
    AddHeaderAction,
    ArchiveAction,
    DropAction,
    IngressStringCondition,
    PolicyStatement,
    ReplaceRecipientAction,
    StringCondition,
    StringOperator,
    TrafficPolicy,
)
from mailmgr.explain import ExplainOptions, explain, given_verdicts, render_text
from mailmgr.message import DmarcPolicy, Verdict, Verdicts

EQ = StringOperator.EQUALS
TEAM, SPAM, CAROL, BLOCKED = "team@x.test", "spam@x.test", "carol@x.test", "blocked@x.test"
ALICE, BOB = "alice@x.test", "bob@x.test"
CONTENT = (
    b"From: Someone <someone@x.test>\r\nTo: team@x.test\r\nCc: Carol <carol@x.test>, "
    b"team@x.test\r\nSubject: hi\r\n\r\nbody\r\n"
)


def rcpt_is(value: str) -> StringCondition:
    return StringCondition(EQ, (value,), attribute="RECIPIENT")


RULES = rule_set(
    rule(
        "tag", (AddHeaderAction({"HeaderName": "X-Seen", "HeaderValue": "yes"}, "X-Seen", "yes"),)
    ),
    rule(
        "drop-spam",
        (DropAction({}),),
        conditions=(StringCondition(EQ, ("yes",), mime_header="X-Seen"), rcpt_is(SPAM)),
    ),
    rule(
        "alias",
        (ReplaceRecipientAction({"ReplaceWith": [ALICE, BOB]}, (ALICE, BOB)),),
        conditions=(rcpt_is(TEAM),),
    ),
    rule(
        "archive",
        (ArchiveAction({"TargetArchive": "default"}, archive_id="a-default"),),
        unless=(rcpt_is(BOB),),
    ),
    rule(
        "vip",
        (DropAction({}),),
        conditions=(StringCondition(EQ, ("ceo@x.test",), attribute="FROM"),),
    ),
)
POLICY = TrafficPolicy(
    "tp-default",
    "default",
    "arn:tp",
    AcceptAction.ALLOW,
    (PolicyStatement(AcceptAction.DENY, (IngressStringCondition(EQ, (BLOCKED,), "RECIPIENT"),)),),
)


def matched(index: int, name: str) -> dict[str, object]:
    return {"index": index, "name": name, "matched": True}


def missed(index: int, name: str, reason: str) -> dict[str, object]:
    return {"index": index, "name": name, "matched": False, "reason": reason}


RCPT_MISS = "condition 2 (StringExpression RECIPIENT) did not match"
FROM_MISS = "condition 1 (StringExpression FROM) did not match"
ALLOW = {"decision": "ALLOW", "statement": None}


async def test_explain_multi_rule_set_json() -> None:
    options = ExplainOptions(
        mail_from="someone@x.test", rcpts=(TEAM, SPAM, CAROL, BLOCKED), spf="pass"
    )
    result = await explain(make_config(RULES, POLICY), CONTENT, options)
    assert result == {
        "ingress_point": "inbound",
        "recipients": {
            TEAM: {
                "traffic_policy": ALLOW,
                "rules": [
                    matched(1, "tag"),
                    missed(2, "drop-spam", RCPT_MISS),
                    matched(3, "alias"),
                ],
                "dropped": False,
            },
            SPAM: {
                "traffic_policy": ALLOW,
                "rules": [matched(1, "tag"), matched(2, "drop-spam")],
                "dropped": True,
            },
            CAROL: {
                "traffic_policy": ALLOW,
                "rules": [
                    matched(1, "tag"),
                    missed(2, "drop-spam", RCPT_MISS),
                    missed(3, "alias", "condition 1 (StringExpression RECIPIENT) did not match"),
                    matched(4, "archive"),
                    missed(5, "vip", FROM_MISS),
                ],
                "dropped": False,
            },
            BLOCKED: {
                "traffic_policy": {"decision": "DENY", "statement": 1},
                "rules": [],
                "dropped": False,
            },
            ALICE: {
                "traffic_policy": None,
                "rules": [matched(4, "archive"), missed(5, "vip", FROM_MISS)],
                "dropped": False,
            },
            BOB: {
                "traffic_policy": None,
                "rules": [
                    missed(4, "archive", "unless condition 1 (StringExpression RECIPIENT) matched"),
                    missed(5, "vip", FROM_MISS),
                ],
                "dropped": False,
            },
        },
        "actions": [
            {
                "rule_index": 1,
                "rule": "tag",
                "action_index": 1,
                "action": "AddHeader",
                "recipients": [TEAM, SPAM, CAROL],
                "params": {"HeaderName": "X-Seen", "HeaderValue": "yes"},
            },
            {
                "rule_index": 2,
                "rule": "drop-spam",
                "action_index": 1,
                "action": "Drop",
                "recipients": [SPAM],
                "params": {},
            },
            {
                "rule_index": 3,
                "rule": "alias",
                "action_index": 1,
                "action": "ReplaceRecipient",
                "recipients": [TEAM],
                "params": {"ReplaceWith": [ALICE, BOB]},
            },
            {
                "rule_index": 4,
                "rule": "archive",
                "action_index": 1,
                "action": "Archive",
                "recipients": [ALICE, CAROL],
                "params": {"TargetArchive": "default"},
            },
        ],
        "final_recipients": [ALICE, BOB, CAROL],
        "verdicts": {"spf": "PASS", "dkim": "GRAY", "dmarc": "PASS", "dmarc_policy": None},
    }
    assert list(result["recipients"]) == [TEAM, SPAM, CAROL, BLOCKED, ALICE, BOB]
    text = render_text(result)
    assert "rule 5 vip: not matched: " + FROM_MISS in text
    assert "Final recipients: alice@x.test, bob@x.test, carol@x.test" in text
    assert "traffic policy: DENY (statement 1)" in text


async def test_explain_defaults_to_to_and_cc_and_first_ingress_point() -> None:
    result = await explain(
        make_config(rule_set(rule("tag", (DropAction({}),)))), CONTENT, ExplainOptions()
    )
    assert list(result["recipients"]) == [TEAM, CAROL]
    assert result["final_recipients"] == []
    assert result["verdicts"] == Verdicts().to_json()  # nothing given: the live seam's defaults


async def test_explain_unknown_ingress_point() -> None:
    with pytest.raises(ValueError, match="no ingress point"):
        await explain(make_config(RULES), CONTENT, ExplainOptions(ingress="nope"))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (ExplainOptions(), None),
        (ExplainOptions(dkim="fail"), Verdicts(Verdict.GRAY, Verdict.FAIL, Verdict.PASS, None)),
        (
            ExplainOptions(dmarc_policy="reject"),
            Verdicts(Verdict.GRAY, Verdict.GRAY, Verdict.FAIL, DmarcPolicy.REJECT),
        ),
    ],
)
def test_given_verdicts(options: ExplainOptions, expected: Verdicts | None) -> None:
    assert given_verdicts(options) == expected
