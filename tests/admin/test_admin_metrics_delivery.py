"""Delivery metrics over HTTP from a real `mailmgr serve`: relay attempts by relay and outcome
(a real SMTP sink and a closed port), AWS errors by service and code (moto with a missing bucket
and topic), and the AWS error-code label kept bounded."""

from __future__ import annotations

import smtplib
import socket
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from metrics_support import delta, scrape
from prometheus_client.parser import text_string_to_metric_families

from mailmgr.admin.metrics import Metrics
from mailmgr.aws.metrics import OTHER, ErrorCounter
from tests.support import ServerProcess, basic_config

ROLE = "arn:aws:iam::123456789012:role/mail-metrics"
ATTEMPTS = "mailmgr_relay_attempts_total"
ERRORS = "mailmgr_aws_errors_total"


class Sink:
    """Takes every message, but refuses recipients starting with `reject`."""

    def __init__(self) -> None:
        self.received: list[list[str]] = []

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.startswith("reject"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(list(envelope.rcpt_tos))
        return "250 OK"


def _free_port() -> int:
    """A port nothing listens on (the "down" relay's; the sink binds its own first)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _send(port: int, rcpt: str, subject: str) -> None:
    message = (f"From: alice@sender.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\n"
               "body\r\n").encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail("alice@sender.test", [rcpt], message)


def _relay(name: str, port: int) -> dict[str, Any]:
    return {"RelayName": name, "ServerName": "127.0.0.1", "ServerPort": port,
            "Authentication": {"NoAuthentication": {}}}


def _count(server: ServerProcess, event: str, **fields: Any) -> int:
    return sum(1 for e in server.events
               if e.get("event") == event and all(e.get(k) == v for k, v in fields.items()))


def _wait_count(server: ServerProcess, n: int, event: str, **fields: Any) -> None:
    while _count(server, event, **fields) < n:
        server.wait_for(event, 20, **fields)
        if _count(server, event, **fields) < n:
            time.sleep(0.05)


def test_relay_attempts_count_by_relay_and_outcome(tmp_path: Path, server_factory: Any) -> None:
    sink = Sink()
    sink_port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
    controller.start()
    try:
        config = basic_config(tmp_path, Retry={"InitialDelaySeconds": 300,
                                               "MaxDelaySeconds": 600})
        config["Relays"] = [_relay("sink", sink_port),
                            _relay("down", _free_port())]
        config["RuleSets"][0]["Rules"] = [{"Name": "relay-both", "Actions": [
            {"Relay": {"Relay": "sink"}}, {"Relay": {"Relay": "down"}}]}]
        server: ServerProcess = server_factory(config).start()
        before = scrape(server)
        _send(server.port, "bob@example.net", "delivered")
        _send(server.port, "reject@example.net", "refused")
        _wait_count(server, 2, "relay.attempt", relay="down")
        after = scrape(server)
    finally:
        controller.stop()
    assert sink.received == [["bob@example.net"]]
    changed = {(s["relay"], s["outcome"]): delta(after, before, ATTEMPTS, **s)
               for s in after.labelsets(ATTEMPTS)}
    assert {k: v for k, v in changed.items() if v} == {
        ("sink", "delivered"): 1, ("sink", "permanent"): 1, ("down", "connect_failed"): 2}
    # Every outcome of a configured relay is exported from its first attempt on (0 or more).
    assert {o for r, o in changed if r == "down"} == {
        "delivered", "temporary", "permanent", "connect_failed"}
    assert server.stop() == 0


def test_aws_errors_count_by_service_and_code(
    tmp_path: Path, server_factory: Any, aws_env: str
) -> None:
    config = basic_config(tmp_path, Aws={"EndpointUrl": aws_env})
    config["RuleSets"][0]["Rules"][0]["Actions"] = [
        {"WriteToS3": {"RoleArn": ROLE, "S3Bucket": "no-such-bucket"}},
        {"PublishToSns": {"RoleArn": ROLE,
                          "TopicArn": "arn:aws:sns:us-east-1:123456789012:no-such-topic"}},
    ]
    server: ServerProcess = server_factory(config).start()
    before = scrape(server)
    _send(server.port, "bob@mailmgr.test", "to aws")
    server.wait_for("message.action", 20, action="PublishToSns", status="FAILED")
    server.wait_for("message.action", 20, action="WriteToS3", status="FAILED")
    after = scrape(server)
    changed = {(s["service"], s["code"]): delta(after, before, ERRORS, **s)
               for s in after.labelsets(ERRORS)}
    assert {k: v for k, v in changed.items() if v} == {
        ("s3", "NoSuchBucket"): 1, ("sns", "NotFound"): 1}
    assert not after.labelsets("mailmgr_aws_throttled_total")
    assert server.stop() == 0


def test_error_code_label_is_bounded_and_throttling_is_counted() -> None:
    metrics = Metrics()
    counter = ErrorCounter(metrics, max_codes=3)
    for code in ("NoSuchBucket", "NotFound", "bad code with spaces", "AccessDenied",
                 "YetAnotherCode", "NoSuchBucket", "x" * 100, "SlowDown", "Whatever"):
        counter.count("s3", code)
    counter.count("sns", "NotFound", status=429)
    counter.count("made-up-service", "NotFound")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples if s.name.startswith("mailmgr_aws_")
    }
    errors = {(dict(k)["service"], dict(k)["code"]): v
              for (name, k), v in samples.items() if name == "mailmgr_aws_errors_total"}
    assert errors == {("s3", "NoSuchBucket"): 2, ("s3", "NotFound"): 1,
                      ("s3", "AccessDenied"): 1, ("s3", OTHER): 5, ("sns", "NotFound"): 1,
                      (OTHER, "NotFound"): 1}
    throttled = {dict(k)["service"]: v for (name, k), v in samples.items()
                 if name == "mailmgr_aws_throttled_total"}
    assert throttled == {"s3": 1, "sns": 1}  # SlowDown by code, the 429 by status
