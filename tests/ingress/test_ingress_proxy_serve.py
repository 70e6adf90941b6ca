"""PROXY protocol through the real `mailmgr serve` process: the header's source address is what
a traffic policy's SENDER_IP sees, and what the archived message's Received and
Authentication-Results carry (the TCP peer, 127.0.0.1, is the balancer)."""

from __future__ import annotations

import json
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support import ROOT, basic_config
from tests.verdicts.dns_server import DnsServer, Zone

DENIED_CLIENT = "203.0.113.7"
ALLOWED_CLIENT = "198.51.100.23"


def _config(tmp_path: Path, nameserver: str) -> dict[str, Any]:
    config = basic_config(tmp_path, Dns={"Nameservers": [nameserver], "Timeout": 1.0})
    config["IngressPoints"][0]["ProxyProtocol"] = {"TrustedSources": ["127.0.0.0/8"]}
    config["TrafficPolicies"][0]["PolicyStatements"] = [{
        "Action": "DENY",
        "Conditions": [{"IpExpression": {"Evaluate": {"Attribute": "SENDER_IP"},
                                         "Operator": "CIDR_MATCHES",
                                         "Values": [f"{DENIED_CLIENT}/32"]}}],
    }]
    return config


def _client(port: int, source: str) -> smtplib.SMTP:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"PROXY TCP4 {source} 127.0.0.1 40000 25\r\n".encode())
    smtp = smtplib.SMTP(timeout=10)
    smtp.sock = sock
    smtp.file = None
    assert smtp.getreply()[0] == 220
    smtp.ehlo("client.example.com")
    return smtp


def _archived(config: Path, subject: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = subprocess.run(
            [sys.executable, "-m", "mailmgr", "archive", "search", "--json", "--subject", subject,
             "--config", str(config)], capture_output=True, text=True, cwd=ROOT, timeout=60,
            stdin=subprocess.DEVNULL)
        rows = json.loads(found.stdout or "[]")
        if rows:
            got = subprocess.run(
                [sys.executable, "-m", "mailmgr", "archive", "get", rows[0]["ArchivedMessageId"],
                 "--config", str(config)], capture_output=True, text=True, cwd=ROOT, timeout=60,
                stdin=subprocess.DEVNULL)
            assert got.returncode == 0, got.stderr
            return got.stdout
        time.sleep(0.2)
    raise AssertionError(f"nothing archived with subject {subject!r}")


def test_proxied_address_reaches_policy_received_and_results(
    tmp_path: Path, server_factory: Any, dns_server: DnsServer, zone: Zone
) -> None:
    # SPF passes only for the proxied client's address, so spf=pass proves SPF saw it.
    zone.txt("sender.example", f"v=spf1 ip4:{ALLOWED_CLIENT} -all")
    server = server_factory(_config(tmp_path, dns_server.address)).start()
    with _client(server.port, DENIED_CLIENT) as smtp:
        assert smtp.mail("a@sender.example")[0] == 250
        assert smtp.rcpt("bob@rcpt.test") == (550, b"5.7.1 Recipient rejected by policy")
    with _client(server.port, ALLOWED_CLIENT) as smtp:
        assert smtp.mail("a@sender.example")[0] == 250
        assert smtp.rcpt("bob@rcpt.test")[0] == 250
        code, _ = smtp.data(b"Subject: proxied hello\r\n\r\nbody\r\n")
        assert code == 250
    text = _archived(server.config_file, "proxied hello")
    assert f"Received: from client.example.com ([{ALLOWED_CLIENT}])" in text
    assert "spf=pass smtp.mailfrom=a@sender.example" in text
    assert "127.0.0.1" not in text
    assert server.stop() == 0
