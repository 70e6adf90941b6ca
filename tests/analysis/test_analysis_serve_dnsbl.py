"""End to end: `mailmgr serve` with a DNSBL analyzer on the loopback DNS server. A traffic policy
DENY on `isListed` refuses a listed client or sender domain at RCPT; a DNS outage refuses
nothing; the analysis results reach the rules and the optional X-Mailmgr-Spam header."""

from __future__ import annotations

import smtplib
import time
from pathlib import Path
from typing import Any

from tests.support import archived_text, basic_config
from tests.verdicts.dns_server import DnsServer, Zone

ZEN = "zen.mailmgr.test"
DBL = "dbl.mailmgr.test"
LISTED_CLIENT = "127.0.0.2"


def _analyzers(**dnsbl: Any) -> list[dict[str, Any]]:
    return [{
        "Name": "spamhaus",
        "AnalyzerArn": "arn:aws:ses:us-east-1:123456789012:addon-instance/ai-spamhaus",
        "Dnsbl": {"Zones": [{"Zone": ZEN, "Type": "IP", "Codes": {"127.0.0.2": "sbl"}},
                            {"Zone": DBL, "Type": "DOMAIN",
                             "Codes": {"127.0.1.2": "spam-domain"}}],
                  "IncludePrivate": True, "Timeout": 2, **dnsbl},
    }]


def _config(tmp_path: Path, nameserver: str, *, deny: bool = True,
            headers: bool = False) -> dict[str, Any]:
    config = basic_config(tmp_path, Dns={"Nameservers": [nameserver], "Timeout": 1},
                          Analysis={"AddHeaders": headers, "Timeout": 5})
    config["Analyzers"] = _analyzers()
    if deny:
        config["TrafficPolicies"][0]["PolicyStatements"] = [{
            "Action": "DENY",
            "Conditions": [{"BooleanExpression": {
                "Evaluate": {"Analysis": {
                    # by ARN, as an exported policy names its add-on instance
                    "Analyzer": "arn:aws:ses:us-east-1:123456789012:addon-instance/ai-spamhaus",
                    "ResultField": "isListed"}},
                "Operator": "IS_TRUE"}}],
        }]
    config["RuleSets"][0]["Rules"] = [
        {"Name": "tag-listed",
         "Conditions": [{"StringExpression": {
             "Evaluate": {"Analysis": {"Analyzer": "spamhaus", "ResultField": "listedOn"}},
             "Operator": "EQUALS", "Values": ["spam-domain"]}}],
         "Actions": [{"AddHeader": {"HeaderName": "X-Listed", "HeaderValue": "spam-domain"}}]},
        {"Name": "archive-all", "Actions": [{"Archive": {"TargetArchive": "default"}}]},
    ]
    return config


def _message(subject: str, body: str = "hello", extra: str = "") -> bytes:
    return (f"From: alice@sender.test\r\nTo: bob@rcpt.test\r\nSubject: {subject}\r\n{extra}"
            f"\r\n{body}\r\n").encode()


def _rcpt(port: int, source: str, mail_from: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=15, source_address=(source, 0)) as smtp:
        smtp.ehlo("client.sender.test")
        smtp.mail(mail_from)
        return smtp.rcpt("bob@rcpt.test")


def test_listed_client_and_sender_domain_are_refused_at_rcpt(
    tmp_path: Path, server_factory: Any, dns_server: DnsServer, zone: Zone
) -> None:
    zone.add(f"2.0.0.127.{ZEN}", "A", "127.0.0.2")
    zone.add(f"spammer.test.{DBL}", "A", "127.0.1.2")
    server = server_factory(_config(tmp_path, dns_server.address)).start()
    assert _rcpt(server.port, LISTED_CLIENT, "alice@sender.test") == (
        550, b"5.7.1 Recipient rejected by policy")
    assert _rcpt(server.port, "127.0.0.1", "someone@spammer.test")[0] == 550
    assert _rcpt(server.port, "127.0.0.1", "alice@sender.test")[0] == 250
    # the same client and sender again in one session: still refused, one answer per session
    with smtplib.SMTP("127.0.0.1", server.port, timeout=15,
                      source_address=(LISTED_CLIENT, 0)) as smtp:
        smtp.ehlo("client.sender.test")
        smtp.mail("alice@sender.test")
        assert smtp.rcpt("a@rcpt.test")[0] == 550
        assert smtp.rcpt("b@rcpt.test")[0] == 550


def test_dns_outage_refuses_nothing_and_loses_nothing(
    tmp_path: Path, server_factory: Any, unused_udp_port: int
) -> None:
    server = server_factory(_config(tmp_path, f"127.0.0.1:{unused_udp_port}")).start()
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=15,
                      source_address=(LISTED_CLIENT, 0)) as smtp:
        smtp.ehlo("client.sender.test")
        smtp.mail("alice@sender.test")
        assert smtp.rcpt("bob@rcpt.test")[0] == 250
        code, _ = smtp.data(_message("dns down"))
    assert code == 250
    assert time.monotonic() - started < 10  # bounded by the analyzer's 2 s timeout
    failed = server.wait_for("analysis.failed", 10, phase="rcpt")
    assert failed["analyzer"] == "spamhaus" and failed["reason"] in ("dns", "timeout")
    assert "X-Mailmgr-Processed" not in archived_text(server, "dns down")  # archived all the same


def test_message_domains_reach_rules_and_headers(
    tmp_path: Path, server_factory: Any, dns_server: DnsServer, zone: Zone
) -> None:
    """The From and body URL domains are looked up after the 250; rules and the optional
    header see the result; a forged X-Mailmgr-Spam from the client is removed."""
    zone.add(f"phish.test.{DBL}", "A", "127.0.1.2")
    config = _config(tmp_path, dns_server.address, deny=False, headers=True)
    server = server_factory(config).start()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=15) as smtp:
        smtp.ehlo("client.sender.test")
        smtp.mail("alice@sender.test")
        smtp.rcpt("bob@rcpt.test")
        code, _ = smtp.data(_message(
            "url listed", body="click https://login.phish.test/now",
            extra="X-Mailmgr-Spam: PASS; forged=PASS\r\n"))
        assert code == 250
        smtp.mail("alice@sender.test")
        smtp.rcpt("bob@rcpt.test")
        assert smtp.data(_message("clean", body="see https://example.org/"))[0] == 250
    listed = archived_text(server, "url listed")
    assert "X-Listed: spam-domain" in listed
    assert "X-Mailmgr-Spam: FAIL;" in listed and "spamhaus=FAIL (spam-domain)" in listed
    assert "forged" not in listed and listed.count("X-Mailmgr-Spam") == 1
    clean = archived_text(server, "clean")
    assert "X-Listed" not in clean and "X-Mailmgr-Spam: PASS;" in clean
    assert "X-Mailmgr-Virus" not in clean  # no virus engine configured


def test_reload_adds_and_removes_analyzers(
    tmp_path: Path, server_factory: Any, dns_server: DnsServer, zone: Zone
) -> None:
    """SIGHUP brings a DNSBL gate in (new connections are checked) and takes it out again."""
    from tests.reload.reload_support import reload

    zone.add(f"2.0.0.127.{ZEN}", "A", "127.0.0.2")
    gated = _config(tmp_path, dns_server.address)
    plain = {k: v for k, v in gated.items() if k != "Analyzers"}
    plain["TrafficPolicies"] = [{**gated["TrafficPolicies"][0], "PolicyStatements": []}]
    plain["RuleSets"] = [{"RuleSetName": "main", "Rules": [gated["RuleSets"][0]["Rules"][-1]]}]
    server = server_factory(plain).start()
    assert _rcpt(server.port, LISTED_CLIENT, "alice@sender.test")[0] == 250
    reload(server, gated)
    assert _rcpt(server.port, LISTED_CLIENT, "alice@sender.test")[0] == 550
    assert _rcpt(server.port, "127.0.0.1", "alice@sender.test")[0] == 250
    reload(server, plain)
    assert _rcpt(server.port, LISTED_CLIENT, "alice@sender.test")[0] == 250
