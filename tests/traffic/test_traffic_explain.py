"""`mailmgr explain` on the shipped traffic-policy example: the decision and the deciding
statement (1-based, null for the default action) per recipient; denied ones never reach rules."""

from __future__ import annotations

import pytest

from mailmgr import config
from mailmgr.explain import ExplainOptions, explain, render_text
from tests.support import ROOT

EXAMPLE = ROOT / "config" / "examples" / "traffic-policy.yaml"
MESSAGE = b"From: a@sender.test\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.mark.parametrize(("ip", "tls", "recipient", "decision", "statement"), [
    ("192.0.2.25", True, "alice@example.test", "ALLOW", 4),
    ("192.0.2.25", False, "alice@example.test", "DENY", None),  # plaintext: no TLS statement
    ("192.0.2.25", False, "postmaster@example.test", "ALLOW", 5),
    ("192.0.2.25", True, "NoReply-Bot@example.test", "DENY", 1),  # listed noreply*@ (JSON file)
    ("192.0.2.25", True, "old-sales@example.test", "DENY", 1),  # listed inline
    ("198.51.100.7", True, "alice@example.test", "DENY", 2),
    ("::ffff:198.51.100.7", True, "alice@example.test", "DENY", 2),
    ("2001:db8:bad::1", False, "postmaster@example.test", "DENY", 3),
    ("203.0.113.9", False, "x@partners.example.org", "ALLOW", 6),
    ("203.0.113.9", False, "x@mx.partners-example.org", "DENY", None),
    ("2001:db8:1::9", False, "x@partners.example.org", "DENY", None),
    ("fd00:1234::5", True, "anyone@elsewhere.test", "ALLOW", 7),
    ("fd00:1234::5", True, "honeypot@example.test", "ALLOW", 4),
    ("fd00:1234::5", True, "honeypot@example.org", "DENY", None),
    ("fd00:1234::5", False, "anyone@elsewhere.test", "DENY", None),  # IS TLS1_3 needs TLS
])
async def test_explain_names_the_deciding_statement(
    ip: str, tls: bool, recipient: str, decision: str, statement: int | None
) -> None:
    cfg = config.load(EXAMPLE)
    options = ExplainOptions(rcpts=(recipient,), ip=ip, tls=tls, spf="PASS", dkim="PASS")
    result = await explain(cfg, MESSAGE, options)
    info = result["recipients"][recipient]
    assert info["traffic_policy"] == {"decision": decision, "statement": statement}
    rules_ran = [r["name"] for r in info["rules"]]
    assert rules_ran == (["archive-all"] if decision == "ALLOW" else [])
    where = "default action" if statement is None else f"statement {statement}"
    assert f"traffic policy: {decision} ({where})" in render_text(result)
