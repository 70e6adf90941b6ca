"""End to end: `mailmgr serve` with its resolver on the loopback DNS server, rules routing on
SPF, DKIM and DMARC, and the Authentication-Results header in the archived message."""

from __future__ import annotations

import json
import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess, archived_text, basic_config, cli
from tests.verdicts.dns_server import DnsServer, Zone
from tests.verdicts.verdicts_samples import message, publish_key, sign


def _tag(name: str, condition: dict[str, Any], header: str) -> dict[str, Any]:
    return {"Name": name, "Conditions": [condition],
            "Actions": [{"AddHeader": {"HeaderName": header, "HeaderValue": "yes"}}]}


def _verdict(attribute: str) -> dict[str, Any]:
    return {"VerdictExpression": {"Evaluate": {"Attribute": attribute},
                                  "Operator": "EQUALS", "Values": ["PASS"]}}


def _config(tmp_path: Path, nameserver: str, timeout: float = 1.0) -> dict[str, Any]:
    config = basic_config(tmp_path, Dns={"Nameservers": [nameserver], "Timeout": timeout})
    config["RuleSets"][0]["Rules"] = [
        _tag("spf-pass", _verdict("SPF"), "X-Spf-Pass"),
        _tag("dkim-pass", _verdict("DKIM"), "X-Dkim-Pass"),
        _tag("dmarc-reject", {"DmarcExpression": {"Operator": "EQUALS", "Values": ["REJECT"]}},
             "X-Dmarc-Reject"),
        {"Name": "archive-all", "Actions": [{"Archive": {"TargetArchive": "default"}}]},
    ]
    return config


def _send(server: ServerProcess, mail_from: str, content: bytes) -> str:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.ehlo("client.example.com")
        smtp.mail(mail_from)
        smtp.rcpt("bob@rcpt.test")
        code, reply = smtp.data(content)
    assert code == 250
    return reply.decode().rsplit(" ", 1)[1]


def test_rules_route_on_verdicts_and_header_isarchived_text(
    tmp_path: Path, server_factory: Any, dns_server: DnsServer, zone: Zone
) -> None:
    zone.txt("example.com", "v=spf1 ip4:127.0.0.1 -all")
    zone.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    publish_key(zone, "example.com")
    zone.txt("other.test", "v=spf1 -all")
    zone.txt("_dmarc.victim.test", "v=DMARC1; p=reject")
    server = server_factory(_config(tmp_path, dns_server.address)).start()

    good = sign(message(body="good\r\n").replace(b"greetings", b"good one"), "example.com")
    _send(server, "bounce@example.com", good)
    forged = message(from_="ceo@victim.test", body="pay\r\n",
                     extra="Authentication-Results: MX.TEST.EXAMPLE; dkim=pass\r\n")
    _send(server, "x@other.test", forged.replace(b"greetings", b"spoofed one"))

    text = archived_text(server, "good one")
    assert text.startswith("Authentication-Results: mx.test.example;"), text[:300]
    assert "spf=pass smtp.mailfrom=bounce@example.com" in text
    assert "dkim=pass header.d=example.com header.s=sel" in text
    assert "dmarc=pass header.from=example.com policy.dmarc=reject" in text
    assert "X-Spf-Pass: yes" in text and "X-Dkim-Pass: yes" in text
    assert "X-Dmarc-Reject" not in text

    text = archived_text(server, "spoofed one")
    assert text.count("Authentication-Results:") == 1 and "MX.TEST.EXAMPLE" not in text
    assert "spf=fail smtp.mailfrom=x@other.test" in text and "dkim=none" in text
    assert "dmarc=fail header.from=victim.test policy.dmarc=reject" in text
    assert "X-Dmarc-Reject: yes" in text
    assert "X-Spf-Pass" not in text and "X-Dkim-Pass" not in text
    event = server.wait_for("verdicts.computed", dmarc="FAIL")
    assert event["dmarc_policy"] == "REJECT"
    assert server.stop() == 0


@pytest.fixture
def black_hole() -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_silent_nameserver_does_not_hold_the_message(
    tmp_path: Path, server_factory: Any, black_hole: str
) -> None:
    server = server_factory(_config(tmp_path, black_hole, timeout=0.5)).start()
    sent = time.monotonic()
    message_id = _send(server, "bounce@example.com",
                       sign(message().replace(b"greetings", b"silent dns"), "example.com"))
    event = server.wait_for("verdicts.computed", timeout=15, message_id=message_id)
    assert time.monotonic() - sent < 11  # the default 10 s bound, with Dns.Timeout per lookup
    assert (event["spf"], event["dkim"], event["dmarc"]) == ("PROCESSING_FAILED",) * 3
    server.wait_for("message.processed", message_id=message_id)
    assert "spf=temperror" in archived_text(server, "silent dns")
    assert server.stop() == 0


def test_verdict_timeout_bounds_the_whole_computation(
    tmp_path: Path, server_factory: Any, black_hole: str
) -> None:
    config = _config(tmp_path, black_hole, timeout=30)  # one lookup alone could take 30 s
    config["Server"]["Dns"]["VerdictTimeout"] = 1.5
    server = server_factory(config).start()
    sent = time.monotonic()
    message_id = _send(server, "bounce@example.com", message().replace(b"greetings", b"bound"))
    event = server.wait_for("verdicts.computed", timeout=15, message_id=message_id)
    assert time.monotonic() - sent < 5
    assert event["spf"] == "PROCESSING_FAILED"
    assert server.stop() == 0


def test_explain_computes_live_verdicts_with_the_configured_resolver(
    tmp_path: Path, dns_server: DnsServer, zone: Zone
) -> None:
    from tests.support import write_config

    zone.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    zone.txt("_dmarc.example.com", "v=DMARC1; p=quarantine")
    config = write_config(tmp_path / "m.yaml", _config(tmp_path, dns_server.address))
    eml = tmp_path / "m.eml"
    eml.write_bytes(message())
    args = ("explain", "--eml", str(eml), "--json", "--mail-from", "b@example.com")
    live = cli(config, *args, "--ip", "198.51.100.1")
    assert live.returncode == 0, live.stderr
    assert json.loads(live.stdout)["verdicts"] == {
        "spf": "FAIL", "dkim": "GRAY", "dmarc": "FAIL", "dmarc_policy": "QUARANTINE"}
    passing = json.loads(cli(config, *args, "--ip", "192.0.2.5").stdout)
    assert passing["verdicts"]["dmarc"] == "PASS"
    assert [r["name"] for r in passing["recipients"]["bob@rcpt.test"]["rules"]
            if r["matched"]] == ["spf-pass", "archive-all"]
    given = json.loads(cli(config, *args, "--dkim", "PASS").stdout)
    assert given["verdicts"]["spf"] == "GRAY" and ("example.com", "TXT") in zone.queries
