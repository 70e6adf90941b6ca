"""The config and clients shared by the Mail Manager log record and pipeline metric tests."""

from __future__ import annotations

import smtplib
import socket
import ssl
from pathlib import Path
from typing import Any

from tests.support import ServerProcess, basic_config

PASSWORD = "Records-Pass-4711"
INGRESS_APPLICATION = "mailmanager.ingress_point.APPLICATION_LOGS"
TRAFFIC_DEBUG = "mailmanager.ingress_point.TRAFFIC_POLICY_DEBUG_LOGS"
RULE_SET_APPLICATION = "mailmanager.rule_set.APPLICATION_LOGS"
RECORD_EVENTS = (INGRESS_APPLICATION, TRAFFIC_DEBUG, RULE_SET_APPLICATION)
LINE_KEYS = {"ts", "level", "event"}  # what every log line has besides the record's fields
MESSAGE = (b"From: sender@example.org\r\nTo: ok@example.com\r\nSubject: records\r\n\r\n"
           b"hello\r\n")


def _rcpt(op: str, *values: str) -> dict[str, Any]:
    return {"StringExpression": {"Evaluate": {"Attribute": "RECIPIENT"}, "Operator": op,
                                 "Values": list(values)}}


def free_port() -> int:
    """A port nothing listens on (the relay that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def records_config(tmp_path: Path, *, records: str | None) -> dict[str, Any]:
    """Two ingress points (OPEN `inbound`, AUTH `submit`) behind the `screen` policy (statement
    1 DENYs blocked@, statement 2 ALLOWs loopback senders), and the rule set `main`: `tag`
    (always, AddHeader), `never` (matches nobody), `relay-down` (relay@ only: a relay nobody
    listens on: the relay retries while the first failure is less than MaxAgeSeconds minus its
    1 s margin old, so one retry, then retries exhausted)."""
    log: dict[str, Any] = {"Format": "json", "Level": "INFO"}
    if records is not None:
        log["Records"] = records
    config = basic_config(tmp_path, Log=log,
                          Retry={"InitialDelaySeconds": 1, "MaxDelaySeconds": 1,
                                 "MaxAgeSeconds": 1.5})
    inbound = config["IngressPoints"][0]
    inbound.update(IngressPointId="inp-inbound", TrafficPolicyId="screen")
    submit = {**inbound, "IngressPointName": "submit", "IngressPointId": "inp-submit",
              "Type": "AUTH", "IngressPointConfiguration": {"SmtpPassword": PASSWORD}}
    config["IngressPoints"] = [inbound, submit]
    config["TrafficPolicies"] = [{
        "TrafficPolicyName": "screen", "TrafficPolicyId": "tp-screen", "DefaultAction": "DENY",
        "MaxMessageSizeBytes": 1_000_000,
        "PolicyStatements": [
            {"Action": "DENY", "Conditions": [_rcpt("EQUALS", "blocked@example.com")]},
            {"Action": "ALLOW", "Conditions": [
                {"IpExpression": {"Evaluate": {"Attribute": "SENDER_IP"},
                                  "Operator": "CIDR_MATCHES", "Values": ["127.0.0.0/8"]}}]},
        ],
    }]
    config["Relays"] = [{"RelayName": "down", "ServerName": "127.0.0.1",
                         "ServerPort": free_port(), "Authentication": {"NoAuthentication": {}}}]
    config["RuleSets"] = [{"RuleSetName": "main", "RuleSetId": "rs-main", "Rules": [
        {"Name": "tag", "Actions": [{"AddHeader": {"HeaderName": "X-Tag", "HeaderValue": "1"}}]},
        {"Name": "never", "Conditions": [_rcpt("EQUALS", "nobody@example.com")],
         "Actions": [{"Drop": {}}]},
        {"Name": "relay-down", "Conditions": [_rcpt("EQUALS", "relay@example.com")],
         "Actions": [{"Relay": {"Relay": "down"}}]},
    ]}]
    return config


def port_of(server: ServerProcess, point: str) -> int:
    event = server.wait_for("ingress.listening", ingress_point=point)
    return int(event["addresses"][0].rsplit(":", 1)[1])


def send(port: int, recipients: list[str], *, login: bool = False,
         tls: ssl.SSLContext | None = None) -> tuple[str, dict[str, Any]]:
    """One message (STARTTLS with `tls`; `login`: STARTTLS without verification, then AUTH);
    returns (message ID from the 250, {recipient: RCPT reply code})."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.example.org")
        if login and tls is None:
            tls = ssl.create_default_context()
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        if tls is not None:
            smtp.starttls(context=tls)
            smtp.ehlo("client.example.org")
        if login:
            smtp.login("inp-submit", PASSWORD)
        smtp.mail("sender@example.org")
        codes = {r: smtp.rcpt(r)[0] for r in recipients}
        code, reply = smtp.data(MESSAGE)
        assert code == 250, reply
    message_id = reply.decode().split()[-1]
    return message_id, codes


def records(server: ServerProcess, event: str, **fields: Any) -> list[dict[str, Any]]:
    return [e for e in server.events
            if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())]


def fields_of(line: dict[str, Any]) -> dict[str, Any]:
    """The record without the log line's own keys."""
    return {k: v for k, v in line.items() if k not in LINE_KEYS}
