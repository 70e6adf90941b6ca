"""Graceful shutdown of a real `mailmgr serve` (issue 11 item 6): SIGTERM → /healthz/ready 503
while new SMTP connections still get 220 for DrainSeconds → listeners closed (connections
refused) → sessions finish within ShutdownGraceSeconds, a DATA finished in time gets its 250 and
is archived, one still unfinished gets 421 4.3.2 and no 250 → exit 0."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support import ROOT, ServerProcess, basic_config

SHUTTING_DOWN = "421 4.3.2 Service shutting down, closing connection"


class Client:
    """A blocking SMTP client that speaks byte for byte (a DATA can stop half-way)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")

    def reply(self) -> str:
        """The last line of one reply, without CRLF; "" at EOF."""
        while True:
            line = self.file.readline().decode().rstrip("\r\n")
            if line[3:4] != "-":
                return line

    def command(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def in_data(self, subject: str) -> Client:
        assert self.reply().startswith("220 ")
        assert self.command("EHLO client.test").startswith("250 ")
        assert self.command("MAIL FROM:<a@sender.test>").startswith("250 ")
        assert self.command("RCPT TO:<b@mailmgr.test>").startswith("250 ")
        assert self.command("DATA").startswith("354 ")
        self.sock.sendall(f"Subject: {subject}\r\n\r\nfirst half\r\n".encode())
        return self

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _ready(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz/ready", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _archived(config: Path, subject: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "mailmgr", "archive", "search", "--json", "--subject", subject,
         "--config", str(config)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_sigterm_drains_then_finishes_sessions_and_loses_nothing_that_got_a_250(
    tmp_path: Path, server_factory: Any
) -> None:
    data = basic_config(tmp_path, ShutdownGraceSeconds=3,
                        Admin={"Listen": ["127.0.0.1:0"], "DrainSeconds": 1.5})
    server: ServerProcess = server_factory(data).start()
    assert server.proc is not None
    finished = Client(server.port).in_data("finished in the grace")
    unfinished = Client(server.port).in_data("never finished")
    idle = Client(server.port)
    assert idle.reply().startswith("220 ") and idle.command("EHLO c.test").startswith("250 ")

    server.proc.send_signal(signal.SIGTERM)
    server.wait_for("server.draining", 5)
    assert _ready(server.admin_port) == 503  # before the listeners close
    late = Client(server.port)  # still accepted while the balancer notices
    assert late.reply().startswith("220 ")
    assert late.command("QUIT").startswith("221 ")
    late.close()
    assert not any(e.get("event") == "server.listeners_closed" for e in server.events)

    closed = server.wait_for("server.listeners_closed", 5)
    assert closed["sessions"] == 3
    with socket.socket() as refused:  # stop accepting: new connections are refused
        assert refused.connect_ex(("127.0.0.1", server.port)) != 0
    assert idle.reply() == SHUTTING_DOWN  # idle between transactions: closed at once
    # A transfer under way may finish within the grace: 250, then the session ends.
    finished.sock.sendall(b"second half\r\n.\r\n")
    queued = finished.reply()
    assert queued.startswith("250 2.0.0 Ok: queued as "), queued
    assert finished.reply() == SHUTTING_DOWN
    # One that does not finish gets 421 4.3.2 when the grace is over, never a 250.
    began = time.monotonic()
    assert unfinished.reply() == SHUTTING_DOWN
    assert unfinished.reply() == ""  # closed
    assert 1.0 < time.monotonic() - began < 5
    assert server.proc.wait(20) == 0
    server.wait_for("ingress.sessions_cut", 1)
    for client in (finished, unfinished, idle):
        client.close()

    # After a restart the message that got its 250 is archived; the other one never existed.
    again: ServerProcess = server_factory(data, name="again.yaml").start()
    deadline = time.monotonic() + 15
    while not _archived(again.config_file, "finished in the grace"):
        assert time.monotonic() < deadline, "the message that got a 250 was lost"
        time.sleep(0.2)
    assert _archived(again.config_file, "never finished") == []
    assert again.stop() == 0
