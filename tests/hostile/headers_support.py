"""Shared helpers of the test_hostile_headers_* tests: a real `mailmgr serve` on a loopback DNS
server, sending over SMTP, reading verdict events and archived copies."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support import ROOT, ServerProcess, basic_config

# The shared case files: beside the checkout (CI) or the team's shared folder; the tests carry
# their own copies of what they need when neither exists.
CASES = next((p for p in (ROOT.parent / "shared" / "cases", Path("/work/shared/cases"))
              if p.is_dir()), ROOT.parent / "shared" / "cases")


def config(tmp_path: Path, nameserver: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    data = basic_config(tmp_path, Dns={"Nameservers": [nameserver], "Timeout": 1,
                                       "VerdictTimeout": 5})
    data["RuleSets"][0]["Rules"] = rules
    return data


def send(server: ServerProcess, content: bytes, mail_from: str = "m@evil.test",
         rcpt: str = "b@example.test") -> str:
    """Send one message; the spool message ID from the 250 reply."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as smtp:
        smtp.ehlo("mail.evil.test")
        smtp.mail(mail_from)
        smtp.rcpt(rcpt)
        code, reply = smtp.data(content)
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]


def cli(config_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailmgr", *args, "--config", str(config_file)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          stdin=subprocess.DEVNULL)


def archived(server: ServerProcess, subject: str, timeout: float = 20) -> tuple[dict[str, Any],
                                                                                  bytes]:
    """The archive row and the stored copy of the message whose Subject contains `subject`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = cli(server.config_file, "archive", "search", "--json", "--subject", subject)
        rows = json.loads(found.stdout or "[]")
        if rows:
            got = subprocess.run(
                [sys.executable, "-m", "mailmgr", "archive", "get",
                 rows[0]["ArchivedMessageId"], "--config", str(server.config_file)],
                capture_output=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)
            assert got.returncode == 0, got.stderr
            return rows[0], got.stdout
        time.sleep(0.2)
    raise AssertionError(f"nothing archived with subject {subject!r}")
