"""End to end: `mailmgr serve` with real clamd and rspamd analyzers. A rule on ClamAV's
`isPassed` drops the EICAR message and keeps a clean one, rspamd's verdict tags spam, the
Lambda event carries virusVerdict/spamVerdict, and an engine that is down loses nothing."""

from __future__ import annotations

import asyncio
import json
import re
import smtplib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.admin.metrics_support import scrape
from tests.analysis.engines import (  # noqa: F401
    EICAR,
    EICAR_FOUND,
    SPAM_MARKER,
    ClamdInstance,
    RspamdInstance,
    clamd_fixture,
    free_port,
    rspamd_fixture,
)
from tests.analysis.test_analysis_serve_dnsbl import _message
from tests.awsactions.awsactions_support import FakeAws
from tests.support import ServerProcess, archived_text, basic_config

ROLE = "arn:aws:iam::123456789012:role/mailmgr-lambda"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:inspect"


def _analyzers(clamd_address: str, rspamd_url: str) -> list[dict[str, Any]]:
    return [
        {"Name": "trendmicro",
         "AnalyzerArn": "arn:aws:ses:us-east-1:123456789012:addon-instance/ai-trendmicro",
         "Clamav": {"Address": clamd_address, "Timeout": 5}},
        {"Name": "vade", "Rspamd": {"Url": rspamd_url, "Timeout": 5}},
    ]


def _config(tmp_path: Path, clamd_address: str, rspamd_url: str,
            *extra_rules: dict[str, Any], **server: Any) -> dict[str, Any]:
    config = basic_config(tmp_path, Analysis={"AddHeaders": True, "Timeout": 10}, **server)
    config["Analyzers"] = _analyzers(clamd_address, rspamd_url)
    config["RuleSets"][0]["Rules"] = [
        {"Name": "drop-virus",
         "Conditions": [{"BooleanExpression": {
             "Evaluate": {"Analysis": {
                 "Analyzer": "arn:aws:ses:us-east-1:123456789012:addon-instance/ai-trendmicro",
                 "ResultField": "addon.isPassed"}},
             "Operator": "IS_FALSE"}}],
         "Actions": [{"Drop": {}}]},
        {"Name": "tag-spam",
         "Conditions": [{"VerdictExpression": {
             "Evaluate": {"Analysis": {"Analyzer": "vade", "ResultField": "verdict"}},
             "Operator": "EQUALS", "Values": ["FAIL"]}}],
         "Actions": [{"AddHeader": {"HeaderName": "X-Spam-Flag", "HeaderValue": "YES"}}]},
        *extra_rules,
        {"Name": "archive-all", "Actions": [{"Archive": {"TargetArchive": "default"}}]},
    ]
    return config


def _unfolded(text: str) -> str:
    return re.sub(r"\r?\n[ \t]+", " ", text)


def _send(server: ServerProcess, *messages: bytes) -> list[str]:
    ids = []
    with smtplib.SMTP("127.0.0.1", server.port, timeout=20) as smtp:
        smtp.ehlo("client.sender.test")
        for content in messages:
            smtp.mail("alice@sender.test")
            smtp.rcpt("bob@rcpt.test")
            code, reply = smtp.data(content)
            assert code == 250, reply
            ids.append(reply.decode().rsplit(" ", 1)[1])
    return ids


def test_virus_dropped_clean_kept_spam_tagged(
    tmp_path: Path, server_factory: Any, clamd: ClamdInstance, rspamd: RspamdInstance
) -> None:
    server = server_factory(_config(tmp_path, clamd.address, rspamd.url)).start()
    virus, clean, spam = _send(
        server,
        _message("infected", body="attached: " + EICAR.decode()),
        _message("clean", body="nothing to see"),
        _message("spammy", body=f"buy now {SPAM_MARKER}"),
    )
    dropped = server.wait_for("message.processed", 30, message_id=virus)
    assert dropped["recipients"] == []
    kept = _unfolded(archived_text(server, "clean"))
    assert "X-Spam-Flag" not in kept
    assert "X-Mailmgr-Virus: PASS; trendmicro=PASS (clean)" in kept
    assert "X-Mailmgr-Spam: PASS; vade=PASS" in kept
    tagged = _unfolded(archived_text(server, "spammy"))
    assert "X-Spam-Flag: YES" in tagged and "X-Mailmgr-Spam: FAIL; vade=FAIL" in tagged
    search = server.wait_for("verdicts.computed", 5, message_id=virus)
    assert search["message_id"] == virus
    # the infected message was dropped, never archived
    time.sleep(0.5)
    assert not [e for e in server.events if e.get("event") == "message.action"
                and e.get("message_id") == virus and e.get("action") == "Archive"]
    assert [e for e in server.events if e.get("event") == "message.action"
            and e.get("message_id") == clean and e.get("action") == "Archive"]
    assert spam


def test_engines_down_lose_nothing(tmp_path: Path, server_factory: Any) -> None:
    """clamd's socket missing and rspamd's port closed: every message is still processed
    (archived), the verdicts are PROCESSING_FAILED, and no rule on them matched."""
    config = _config(tmp_path, f"unix:{tmp_path}/no-clamd.ctl",
                     f"http://127.0.0.1:{free_port()}")
    server = server_factory(config).start()
    (message_id,) = _send(server, _message("engines down", body=EICAR.decode()))
    archived = _unfolded(archived_text(server, "engines down"))
    assert "X-Mailmgr-Virus: PROCESSING_FAILED; trendmicro=PROCESSING_FAILED" in archived
    assert "X-Spam-Flag" not in archived
    # The headers travel downstream with the message: they give the fixed reason only, never
    # the engines' addresses (or a DNS list's zone, which may hold a Spamhaus DQS key).
    assert "trendmicro=PROCESSING_FAILED (connect)" in archived
    assert "vade=PROCESSING_FAILED (connect)" in archived
    assert "no-clamd.ctl" not in archived and "127.0.0.1:" not in archived
    reasons = {e["analyzer"]: e["reason"] for e in server.events
               if e.get("event") == "analysis.failed" and e.get("message_id") == message_id}
    assert reasons == {"trendmicro": "connect", "vade": "connect"}
    metrics = scrape(server)
    for analyzer in ("trendmicro", "vade"):
        assert metrics.value("mailmgr_analysis_failures_total", analyzer=analyzer,
                             reason="connect") == 1
        assert metrics.value("mailmgr_analysis_runs_total", analyzer=analyzer,
                             phase="message", status="FAILED") == 1
    assert metrics.value("mailmgr_verdicts_total", kind="virus",
                         result="PROCESSING_FAILED") == 1


@pytest.fixture
async def fake_lambda() -> AsyncIterator[FakeAws]:
    fake = FakeAws()
    await fake.start()
    yield fake
    await fake.stop()


async def test_lambda_event_carries_virus_and_spam_verdicts(
    tmp_path: Path, server_factory: Any, clamd: ClamdInstance,
    rspamd: RspamdInstance, fake_lambda: FakeAws, aws_env: str,
) -> None:
    invoke = {"Name": "inspect", "Actions": [{"InvokeLambda": {
        "FunctionArn": FUNCTION, "InvocationType": "EVENT", "RoleArn": ROLE}}]}
    config = _config(tmp_path, clamd.address, rspamd.url, invoke,
                     Aws={"EndpointUrl": aws_env, "EndpointUrls": {"lambda": fake_lambda.url}})
    # the InvokeLambda rule must see the infected message: put it before drop-virus
    rules = config["RuleSets"][0]["Rules"]
    rules.insert(0, rules.pop(2))
    server = server_factory(config)
    await asyncio.to_thread(server.start)
    virus, clean = await asyncio.to_thread(
        _send, server, _message("eicar", body=EICAR.decode()),
        _message("fine", body=f"hello {SPAM_MARKER}"))
    for message_id in (virus, clean):
        await asyncio.to_thread(server.wait_for, "message.action", 30, message_id=message_id,
                                action="InvokeLambda", status="SUCCESS")
    receipts = {}
    for recorded in fake_lambda.invocations():
        record = json.loads(recorded.body)["Records"][0]["ses"]
        receipts[record["mail"]["messageId"]] = record["receipt"]
    assert receipts[virus]["virusVerdict"] == {"status": "FAIL"}
    assert receipts[virus]["spamVerdict"] == {"status": "PASS"}
    assert receipts[clean]["virusVerdict"] == {"status": "PASS"}
    assert receipts[clean]["spamVerdict"] == {"status": "FAIL"}
    assert EICAR_FOUND  # the signature clamd reports (checked in the engine tests)
