"""Traffic policies through the real `mailmgr serve` process: 550 5.7.1 at RCPT next to an
accepted recipient, TLS_PROTOCOL on plaintext and STARTTLS sessions, SENDER_IP/SENDER_IPV6 on
IPv4 and `::1` listeners, MaxMessageSizeBytes at MAIL and at DATA with nothing kept, and the
DEBUG record. One server (several ingress points) serves the whole module."""

from __future__ import annotations

import smtplib
import socket
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess, basic_config, write_config

MAX_SIZE = 4000


def _rcpt(op: str, *values: str) -> dict[str, Any]:
    return {"StringExpression": {"Evaluate": {"Attribute": "RECIPIENT"}, "Operator": op,
                                 "Values": list(values)}}


def _ip(attribute: str, op: str, *cidrs: str) -> dict[str, Any]:
    key = "IpExpression" if attribute == "SENDER_IP" else "Ipv6Expression"
    return {key: {"Evaluate": {"Attribute": attribute}, "Operator": op, "Values": list(cidrs)}}


def _tls(op: str, value: str) -> dict[str, Any]:
    return {"TlsExpression": {"Evaluate": {"Attribute": "TLS_PROTOCOL"}, "Operator": op,
                              "Value": value}}


GATE = {
    "TrafficPolicyName": "gate", "DefaultAction": "DENY", "MaxMessageSizeBytes": MAX_SIZE,
    "PolicyStatements": [
        {"Action": "DENY", "Conditions": [_rcpt("STARTS_WITH", "blocked")]},
        {"Action": "ALLOW", "Conditions": [_rcpt("ENDS_WITH", "@example.test")]},
        {"Action": "ALLOW", "Conditions": [_rcpt("EQUALS", "min12@tls.test"),
                                           _tls("MINIMUM_TLS_VERSION", "TLS1_2")]},
        {"Action": "ALLOW", "Conditions": [_rcpt("EQUALS", "is13@tls.test"),
                                           _tls("IS", "TLS1_3")]},
        {"Action": "ALLOW", "Conditions": [_rcpt("EQUALS", "is12@tls.test"),
                                           _tls("IS", "TLS1_2")]},
    ],
}
DUAL = {
    "TrafficPolicyName": "dual", "DefaultAction": "DENY", "PolicyStatements": [
        {"Action": "DENY", "Conditions": [_ip("SENDER_IPV6", "CIDR_MATCHES", "::1/128"),
                                          _rcpt("STARTS_WITH", "deny6")]},
        {"Action": "ALLOW", "Conditions": [_ip("SENDER_IPV6", "CIDR_MATCHES", "::1/128"),
                                           _rcpt("STARTS_WITH", "v6")]},
        {"Action": "ALLOW", "Conditions": [_ip("SENDER_IP", "CIDR_MATCHES", "127.0.0.0/8"),
                                           _rcpt("STARTS_WITH", "v4")]},
        {"Action": "ALLOW", "Conditions": [_ip("SENDER_IPV6", "NOT_CIDR_MATCHES", "::1/128"),
                                           _rcpt("STARTS_WITH", "not6")]},
    ],
}


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6 = _ipv6_available()


class Running:
    def __init__(self, server: ServerProcess, data: Path) -> None:
        self.server = server
        self.data = data
        started = server.wait_for("server.started")
        self.listeners: dict[str, list[tuple[str, int]]] = {}
        for listener in started["listeners"]:
            host, _, port = listener["address"].rpartition(":")
            self.listeners.setdefault(listener["ingress_point"], []).append((host, int(port)))

    def client(self, ingress: str, family: int = socket.AF_INET) -> smtplib.SMTP:
        host, port = next(
            (h, p) for h, p in self.listeners[ingress] if (":" in h) == (family == socket.AF_INET6)
        )
        smtp = smtplib.SMTP(host, port, timeout=10)
        smtp.ehlo("client.test")
        return smtp


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("traffic")
    cfg = basic_config(tmp)
    cfg["Server"]["Log"]["Level"] = "DEBUG"
    template = cfg["IngressPoints"][0]
    dual_listen = ["127.0.0.1:0", "[::1]:0"] if IPV6 else ["127.0.0.1:0"]
    cfg["IngressPoints"] = [
        {**template, "IngressPointName": "gate", "TrafficPolicyId": "gate"},
        {**template, "IngressPointName": "dual", "TrafficPolicyId": "dual",
         "Listen": dual_listen},
    ]
    cfg["TrafficPolicies"] = [GATE, DUAL]
    server = ServerProcess(write_config(tmp / "mailmgr.yaml", cfg))
    server.start()
    try:
        yield Running(server, tmp / "var")
    finally:
        server.stop()


def _starttls(smtp: smtplib.SMTP, maximum: ssl.TLSVersion | None = None) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's self-signed development certificate
    if maximum is not None:
        context.maximum_version = maximum
    smtp.starttls(context=context)
    smtp.ehlo("client.test")


def _accepted(smtp: smtplib.SMTP, recipient: str) -> bool:
    smtp.rset()
    assert smtp.mail("sender@client.test")[0] == 250
    code, message = smtp.rcpt(recipient)
    if code == 550:
        assert message == b"5.7.1 Recipient rejected by policy"
        return False
    assert code == 250, (code, message)
    return True


def test_denied_recipient_next_to_accepted_one(running: Running) -> None:
    smtp = running.client("gate")
    try:
        assert smtp.mail("sender@client.test")[0] == 250
        assert smtp.rcpt("blocked@example.test") == (550, b"5.7.1 Recipient rejected by policy")
        assert smtp.rcpt("alice@example.test")[0] == 250
        assert smtp.rcpt("someone@elsewhere.test")[0] == 550  # the DENY default action
        code, reply = smtp.data(b"Subject: mixed\r\n\r\nhello\r\n")
        assert code == 250
    finally:
        smtp.quit()
    accepted = running.server.wait_for("smtp.accepted", message_id=reply.decode().split()[-1])
    assert accepted["recipients"] == 1


def test_debug_record_per_recipient(running: Running) -> None:
    smtp = running.client("gate")
    try:
        assert not _accepted(smtp, "blocked-debug@example.test")
    finally:
        smtp.quit()
    record = running.server.wait_for("traffic_policy.evaluated",
                                     recipient="blocked-debug@example.test")
    assert record["level"] == "DEBUG"
    assert (record["decision"], record["statement"], record["verdict"]) == ("DENY", 1, "REJECT")
    assert record["traffic_policy"] == "gate"
    assert [s["matched"] for s in record["statements"]] == [True, True, False, False, False]
    assert record["statements"][2]["conditions"][1] == {
        "expression": "TlsExpression", "attribute": "TLS_PROTOCOL",
        "operator": "MINIMUM_TLS_VERSION", "values": ["TLS1_2"], "result": False}


def test_tls_protocol_plaintext_matches_nothing(running: Running) -> None:
    smtp = running.client("gate")
    try:
        assert [_accepted(smtp, r) for r in ("min12@tls.test", "is13@tls.test", "is12@tls.test")
                ] == [False, False, False]
    finally:
        smtp.quit()


@pytest.mark.parametrize(("maximum", "expected"), [
    (None, [True, True, False]),  # TLS 1.3 negotiated
    (ssl.TLSVersion.TLSv1_2, [True, False, True]),
])
def test_tls_protocol_after_starttls(
    running: Running, maximum: ssl.TLSVersion | None, expected: list[bool]
) -> None:
    smtp = running.client("gate")
    try:
        _starttls(smtp, maximum)
        assert [_accepted(smtp, r) for r in ("min12@tls.test", "is13@tls.test", "is12@tls.test")
                ] == expected
    finally:
        smtp.quit()


def test_sender_ip_on_ipv4_listener(running: Running) -> None:
    smtp = running.client("dual")
    try:
        assert _accepted(smtp, "v4@any.test")
        assert not _accepted(smtp, "v6@any.test")
        assert not _accepted(smtp, "deny6@any.test")  # default action
        assert _accepted(smtp, "not6@any.test")  # no IPv6 address: NOT_CIDR_MATCHES matches
    finally:
        smtp.quit()


@pytest.mark.skipif(not IPV6, reason="no IPv6 loopback in this environment")
def test_sender_ipv6_on_ipv6_listener(running: Running) -> None:
    smtp = running.client("dual", socket.AF_INET6)
    try:
        assert _accepted(smtp, "v6-on-v6@any.test")
        assert not _accepted(smtp, "deny6-v6@any.test")  # DENY wins over the ALLOW of ::1
        assert not _accepted(smtp, "v4@any.test")  # ::1 never matches SENDER_IP
        assert not _accepted(smtp, "not6@any.test")
    finally:
        smtp.quit()
    record = running.server.wait_for("traffic_policy.evaluated", recipient="v6-on-v6@any.test")
    assert record["peer_ip"] == "::1"
    assert record["statement"] == 2


def _files_contain(folder: Path, marker: bytes) -> bool:
    return any(marker in p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_size_refused_at_mail(running: Running) -> None:
    smtp = running.client("gate")
    try:
        assert smtp.esmtp_features["size"] == str(MAX_SIZE)
        code, message = smtp.mail("sender@client.test", [f"SIZE={MAX_SIZE + 1}"])
        assert (code, message) == (552, b"5.3.4 Message size exceeds fixed maximum message size")
        assert smtp.mail("sender@client.test", [f"SIZE={MAX_SIZE}"])[0] == 250
    finally:
        smtp.quit()


def test_size_refused_at_data_and_nothing_kept(running: Running) -> None:
    marker = uuid.uuid4().hex.encode()
    smtp = running.client("gate")
    try:
        assert smtp.mail("sender@client.test")[0] == 250
        assert smtp.rcpt("alice@example.test")[0] == 250
        body = b"Subject: big\r\n\r\n" + (marker + b"\r\n") * (MAX_SIZE // 30 + 1)
        assert len(body) > MAX_SIZE
        code, message = smtp.data(body)
        assert (code, message) == (552, b"5.3.4 Message size exceeds fixed maximum message size")
        # the session goes on: a message within the limit is accepted afterwards
        assert smtp.mail("sender@client.test")[0] == 250
        assert smtp.rcpt("alice@example.test")[0] == 250
        code, reply = smtp.data(b"Subject: small\r\n\r\nok\r\n")
        assert code == 250
    finally:
        smtp.quit()
    message_id = reply.decode().split()[-1]
    running.server.wait_for("message.processed", message_id=message_id)
    assert not _files_contain(running.data, marker)
    accepted = [e for e in running.server.events if e.get("event") == "smtp.accepted"]
    assert all(e["size"] <= MAX_SIZE for e in accepted)
