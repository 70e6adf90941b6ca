"""SMTP metrics over HTTP from a real `mailmgr serve` after real SMTP sessions: connections
opened, replies by command and code class, refusals by reason, and no label value ever taken
from what a client sent."""

from __future__ import annotations

import base64
import smtplib
import ssl
from pathlib import Path
from typing import Any

from metrics_support import Scrape, delta, port_of, scrape

from mailmgr.ingress import replies
from mailmgr.ingress.counters import COMMANDS
from tests.support import ServerProcess, basic_config

MAX_SIZE = 2000
MESSAGE = (b"From: alice@sender.test\r\nTo: bob@mailmgr.test\r\nSubject: counted\r\n\r\n"
           b"body\r\n")
REPLIES = "mailmgr_smtp_replies_total"
REJECTED = "mailmgr_messages_rejected_total"


def _config(tmp_path: Path) -> dict[str, Any]:
    config = basic_config(tmp_path)
    config["TrafficPolicies"][0].update(
        MaxMessageSizeBytes=MAX_SIZE,
        PolicyStatements=[{"Action": "DENY", "Conditions": [{"StringExpression": {
            "Evaluate": {"Attribute": "RECIPIENT"}, "Operator": "STARTS_WITH",
            "Values": ["blocked"]}}]}],
    )
    point = config["IngressPoints"][0]
    config["IngressPoints"].append({
        **point, "IngressPointName": "submission", "Type": "AUTH",
        "IngressPointConfiguration": {"SmtpPassword": "Right-Pass-2024!"},
    })
    return config


def _replies(after: Scrape, before: Scrape, point: str) -> dict[tuple[str, str], float]:
    """Every (command, code_class) whose count changed, with the change."""
    keys = {(s["command"], s["code_class"]) for s in (*after.labelsets(REPLIES),)
            if s["ingress_point"] == point}
    changed = {k: delta(after, before, REPLIES, ingress_point=point, command=k[0],
                        code_class=k[1]) for k in keys}
    return {k: v for k, v in changed.items() if v}


def _rejected(after: Scrape, before: Scrape, point: str) -> dict[str, float]:
    reasons = {s["reason"] for s in after.labelsets(REJECTED) if s["ingress_point"] == point}
    changed = {r: delta(after, before, REJECTED, ingress_point=point, reason=r)
               for r in reasons}
    return {r: v for r, v in changed.items() if v}


def test_sessions_count_exactly_by_command_class_and_reason(
    tmp_path: Path, server_factory: Any
) -> None:
    server: ServerProcess = server_factory(_config(tmp_path)).start()
    before = scrape(server)
    point = {"ingress_point": "inbound"}

    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        assert smtp.mail("alice@sender.test")[0] == 250
        assert smtp.rcpt("bob@mailmgr.test")[0] == 250
        assert smtp.rcpt("blocked@mailmgr.test")[0] == 550  # the DENY statement
        assert smtp.data(MESSAGE)[0] == 250
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        assert smtp.docmd("XYZZY", "plugh")[0] == 500
        assert smtp.noop()[0] == 250
        smtp.mail("alice@sender.test")
        smtp.rcpt("bob@mailmgr.test")
        too_big = MESSAGE + (b"x" * 78 + b"\r\n") * (MAX_SIZE // 40)
        assert smtp.data(too_big)[0] == 552

    after = scrape(server)
    assert delta(after, before, "mailmgr_connections_opened_total", **point) == 2
    assert _replies(after, before, "inbound") == {
        ("CONNECT", "2xx"): 2, ("EHLO", "2xx"): 2, ("MAIL", "2xx"): 2,
        ("RCPT", "2xx"): 2, ("RCPT", "5xx"): 1, ("DATA", "3xx"): 2,
        ("DATA_END", "2xx"): 1, ("DATA_END", "5xx"): 1, ("NOOP", "2xx"): 1,
        ("other", "5xx"): 1, ("QUIT", "2xx"): 2,
    }
    assert _rejected(after, before, "inbound") == {
        "traffic_policy": 1, "size": 1, "protocol": 1}
    assert delta(after, before, "mailmgr_messages_accepted_total", **point) == 1

    # Nothing a client sent became a label value: verbs, HELO name, addresses, arguments.
    for text in ("XYZZY", "xyzzy", "plugh", "client.test", "alice", "blocked", "bob"):
        assert text not in after.text
    for labels in after.labelsets(REPLIES):
        assert labels["command"] in {*COMMANDS, "CONNECT", "DATA_END", "other"}
        assert labels["code_class"] in {"2xx", "3xx", "4xx", "5xx"}
        assert labels["ingress_point"] in {"inbound", "submission"}
    assert {s["reason"] for s in after.labelsets(REJECTED)} <= set(replies.REASONS)
    assert server.stop() == 0


def test_failed_auth_counts_as_an_auth_refusal(tmp_path: Path, server_factory: Any) -> None:
    server: ServerProcess = server_factory(_config(tmp_path)).start()
    port = port_of(server, "submission")
    before = scrape(server)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    wrong = base64.b64encode(b"\0user\0Wrong-Pass-2024!").decode()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.starttls(context=context)
        smtp.ehlo("client.test")
        assert smtp.docmd("AUTH", f"PLAIN {wrong}")[0] == 535
    after = scrape(server)
    assert delta(after, before, "mailmgr_connections_opened_total",
                 ingress_point="submission") == 1
    assert _replies(after, before, "submission") == {
        ("CONNECT", "2xx"): 1, ("EHLO", "2xx"): 2, ("STARTTLS", "2xx"): 1,
        ("AUTH", "5xx"): 1, ("QUIT", "2xx"): 1,
    }
    assert _rejected(after, before, "submission") == {"auth": 1}
    assert _replies(after, before, "inbound") == {}
    assert server.stop() == 0


def test_every_refusing_reply_has_a_reason_and_no_other_does() -> None:
    constants = {n: v for n, v in vars(replies).items() if isinstance(v, replies.Reply)}
    assert len(constants) > 60
    for name, reply in constants.items():
        if reply.code >= 400:
            assert reply.reason in replies.REASONS, name
        else:
            assert reply.reason is None, name
    # The reason is metadata: the wire form and equality ignore it.
    tagged = replies.Reply(550, "5.7.1", "x", replies.TRAFFIC_POLICY)
    assert tagged == replies.Reply(550, "5.7.1", "x")
    assert tagged.line() == b"550 5.7.1 x\r\n"
