"""The SES `mail`/`receipt` builders and the Lambda payload against the seed's example event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from awsactions_support import CONTENT, make_input, make_message

from mailmgr.actions import events
from mailmgr.actions.lambda_ import lambda_event
from mailmgr.message import DmarcPolicy, Verdict, Verdicts

SEED = json.loads((Path(__file__).parent / "seed_ses_event.json").read_text())
OPTIONAL_COMMON = {"cc", "bcc", "sender", "replyTo"}  # seed 003: optional commonHeaders


def same_shape(ours: Any, seed: Any, path: str = "$") -> list[str]:
    """Differences in keys and JSON types between our document and the seed's example."""
    if isinstance(seed, dict):
        if not isinstance(ours, dict):
            return [f"{path}: expected an object"]
        problems = [f"{path}.{k}: missing" for k in seed if k not in ours]
        optional = OPTIONAL_COMMON if path.endswith("commonHeaders") else set()
        extra = set(ours) - set(seed) - optional
        problems += [f"{path}.{k}: not in the seed format" for k in sorted(extra)]
        for key in seed:
            if key in ours:
                problems += same_shape(ours[key], seed[key], f"{path}.{key}")
        return problems
    if isinstance(seed, list):
        if not isinstance(ours, list) or not ours:
            return [f"{path}: expected a non-empty list"]
        return [p for item in ours for p in same_shape(item, seed[0], f"{path}[]")]
    if type(ours) is not type(seed):
        return [f"{path}: {type(ours).__name__} instead of {type(seed).__name__}"]
    return []


def test_lambda_payload_has_the_seed_format() -> None:
    verdicts = Verdicts(Verdict.PASS, Verdict.FAIL, Verdict.FAIL, DmarcPolicy.REJECT)
    item = make_input(verdicts=verdicts, recipients=("bob@example.net",))
    arn = "arn:aws:lambda:us-east-1:123456789012:function:f"
    payload = lambda_event(item, arn, "REQUEST_RESPONSE", 1_700_000_000.824)
    assert same_shape(payload, SEED) == []
    record = payload["Records"][0]
    assert record["eventSource"] == "aws:ses" and record["eventVersion"] == "1.0"
    mail, receipt = record["ses"]["mail"], record["ses"]["receipt"]
    assert mail["messageId"] == "0abc123def456ghi789"
    assert mail["source"] == "alice@example.com"
    assert mail["timestamp"] == "2023-11-14T22:13:20.250Z"
    assert mail["destination"] == ["bob@example.net", "carol@example.org", "dave@example.org"]
    assert mail["headersTruncated"] is False
    assert {"name": "X-Long", "value": "folded continuation"} in mail["headers"]
    assert mail["headers"][0] == {"name": "Return-Path", "value": "<alice@example.com>"}
    assert mail["commonHeaders"] == {
        "returnPath": "alice@example.com",
        "from": ["Alice Example <alice@example.com>"],
        "to": ["Bob <bob@example.net>", "carol@example.org"],
        "cc": ["dave@example.org"],
        "date": "Mon, 5 Dec 2016 18:40:08 -0800",
        "messageId": "<orig-1@example.com>",
        "subject": "Café report",
    }
    assert receipt["recipients"] == ["bob@example.net"]
    assert receipt["processingTimeMillis"] == 574
    assert receipt["timestamp"] == "2023-11-14T22:13:20.824Z"
    assert receipt["spfVerdict"] == {"status": "PASS"}
    assert receipt["dkimVerdict"] == {"status": "FAIL"}
    assert receipt["dmarcVerdict"] == {"status": "FAIL"}
    assert receipt["dmarcPolicy"] == "reject"
    assert receipt["spamVerdict"] == receipt["virusVerdict"] == {"status": "DISABLED"}
    assert receipt["action"] == {"type": "Lambda", "invocationType": "RequestResponse",
                                 "functionArn": arn}


def test_dmarc_policy_only_when_dmarc_fails() -> None:
    passed = Verdicts(Verdict.PASS, Verdict.PASS, Verdict.PASS, None)
    receipt = events.receipt_object(make_input(verdicts=passed), {"type": "SNS"}, 1.7e9)
    assert "dmarcPolicy" not in receipt
    gray = Verdicts(Verdict.PASS, Verdict.PASS, Verdict.GRAY, DmarcPolicy.NONE)
    assert "dmarcPolicy" not in events.receipt_object(make_input(verdicts=gray), {}, 1.7e9)


def test_headers_are_capped_and_flagged() -> None:
    many = b"".join(b"X-Fill-%d: %s\r\n" % (i, b"v" * 200) for i in range(100)) + CONTENT
    item = make_input(make_message(many))
    mail = events.mail_object(item, events.LAMBDA_HEADERS_LIMIT)
    assert mail["headersTruncated"] is True
    size = sum(len(h["name"]) + len(h["value"]) + 4 for h in mail["headers"])
    assert 9 * 1024 < size <= events.LAMBDA_HEADERS_LIMIT
    assert events.mail_object(item, events.SNS_HEADERS_LIMIT)["headersTruncated"] is False


def test_null_sender_and_no_to_header() -> None:
    item = make_input(make_message(b"Subject: x\r\n\r\nbody\r\n", mail_from=""))
    mail = events.mail_object(item, events.LAMBDA_HEADERS_LIMIT)
    assert mail["source"] == "" and mail["destination"] == []
    assert mail["commonHeaders"] == {"subject": "x"}
