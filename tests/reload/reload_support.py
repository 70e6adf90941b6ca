"""Reload test helpers: rewrite the running server's config, SIGHUP it, read the archive."""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support import ROOT, ServerProcess, write_config


def reload(server: ServerProcess, config: dict[str, Any], expect: str = "config.reloaded",
           **fields: Any) -> dict[str, Any]:
    """Write `config` over the running server's file, send SIGHUP and wait for `expect`."""
    write_config(server.config_file, config)
    seen = len(server.events)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for event in server.events[seen:]:
            if event.get("event") == expect and all(event.get(k) == v for k, v in fields.items()):
                return event
        time.sleep(0.05)
    tail = "\n".join(server.raw[-30:])
    raise AssertionError(f"no {expect} after SIGHUP; log tail:\n{tail}")


def send(port: int, subject: str, rcpt: str = "bob@mailmgr.test") -> str:
    """One message over SMTP; returns the queue ID from the 250 reply."""
    message = (f"From: alice@sender.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nbody\r\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("alice@sender.test")
        assert smtp.rcpt(rcpt)[0] == 250
        code, reply = smtp.data(message.encode())
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]


def _cli(config: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mailmgr", *args, "--config", str(config)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def archived(server: ServerProcess, subject: str, config: Path | None = None) -> str:
    """The archived bytes (as text) of the message with `subject`, once it is there; `config`
    is a valid config naming the archive (default: the server's own file)."""
    config = config or server.config_file
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = json.loads(_cli(config, "archive", "search", "--json",
                               "--subject", subject))
        if rows:
            return _cli(config, "archive", "get", rows[0]["ArchivedMessageId"])
        time.sleep(0.2)
    raise AssertionError(f"no archived message with subject {subject!r}")


def port_of(server: ServerProcess, ingress_point: str) -> int:
    event = server.wait_for("ingress.listening", ingress_point=ingress_point)
    return int(event["addresses"][0].rsplit(":", 1)[1])
