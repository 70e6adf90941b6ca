"""Helpers for `mailmgr queue` tests: a config relaying to a port, a real SMTP sink (aiosmtpd in a
thread) to bring the relay up, and the CLI run as a real subprocess."""

from __future__ import annotations

import json
import smtplib
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support import ROOT, ServerProcess, basic_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def relay_config(tmp_path: Path, relay_port: int, admin: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """basic_config whose only rule adds a header and relays to 127.0.0.1:relay_port; retries
    wait 300-600 s, so a failed message stays `retrying` until the test acts. The admin
    listener gets a fixed port (the CLI must find it from the config)."""
    config = basic_config(
        tmp_path,
        Retry={"InitialDelaySeconds": 300, "MaxDelaySeconds": 600},
        Admin=admin if admin is not None else {"Listen": [f"127.0.0.1:{free_port()}"],
                                               "DrainSeconds": 0},
    )
    config["Relays"] = [{"RelayName": "upstream", "ServerName": "127.0.0.1",
                         "ServerPort": relay_port, "Authentication": {"NoAuthentication": {}}}]
    config["RuleSets"][0]["Rules"] = [{"Name": "relay-all", "Actions": [
        {"AddHeader": {"HeaderName": "X-Queued", "HeaderValue": "yes"}},
        {"Relay": {"Relay": "upstream", "MailFrom": "PRESERVE"}},
    ]}]
    return config


def send(port: int, sender: str, rcpts: list[str], subject: str = "queued") -> str:
    """Send one message; returns the spool ID from `250 ... queued as ID`."""
    body = (f"From: {sender}\r\nTo: {rcpts[0]}\r\nSubject: {subject}\r\n\r\nhello\r\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.example.org")
        client.mail(sender)
        for rcpt in rcpts:
            client.rcpt(rcpt)
        code, reply = client.data(body.encode())
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]


@dataclass
class CliResult:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def queue_cli(config_file: Path, *args: str) -> CliResult:
    """`python -m mailmgr queue ARGS --config FILE` as a real subprocess."""
    done = subprocess.run(
        [sys.executable, "-m", "mailmgr", "queue", *args, "--config", str(config_file)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return CliResult(done.returncode, done.stdout, done.stderr)


def wait_attempts(server: ServerProcess, message_id: str, n: int, timeout: float = 15) -> None:
    """Until `n` relay.attempt events for `message_id` were logged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = [e for e in server.events
                if e.get("event") == "relay.attempt" and e.get("message_id") == message_id]
        if len(seen) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} relay attempts of {message_id}")


@dataclass
class SinkHandler:
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    delay: float = 0.0  # seconds DATA takes (a message stays in flight meanwhile)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        self.received.append((envelope.mail_from or "", list(envelope.rcpt_tos),
                              envelope.original_content or b""))
        return "250 2.0.0 sunk"


class Sink:
    """A real SMTP server on 127.0.0.1:port (aiosmtpd's threaded controller)."""

    def __init__(self, port: int, delay: float = 0.0) -> None:
        self.handler = SinkHandler(delay=delay)
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=port)

    def __enter__(self) -> Sink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    def wait(self, n: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(self.handler.received) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.handler.received) >= n, self.handler.received


def metric(text: str, name: str, labels: str = "") -> float:
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            if key == wanted:
                return float(value)
    raise AssertionError(f"no sample {wanted}")
