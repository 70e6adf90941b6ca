"""Helpers for the multi-process tests: a `Processes: N` server whose supervisor's start event is
the one waited for, SMTP sends on new connections, archive counts through the CLI."""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support import ROOT, ServerProcess, basic_config, write_config


class FleetProcess(ServerProcess):
    """ServerProcess for a supervisor: `start` waits for its `server.started` (the one without
    a `worker` field) and takes the SMTP and admin ports from it."""

    def start(self, timeout: float = 30.0) -> FleetProcess:
        super().start(timeout)  # the first server.started may be a worker's: look again
        started = self.supervisor_started(timeout)
        self.port = int(started["listeners"][0]["address"].rsplit(":", 1)[1])
        admin = started.get("admin") or []
        self.admin_port = int(admin[0].rsplit(":", 1)[1]) if admin else 0
        return self

    def supervisor_started(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.events):
                if event.get("event") == "server.started" and "worker" not in event:
                    return event
            time.sleep(0.05)
        raise AssertionError("no supervisor server.started; log tail:\n"
                             + "\n".join(self.raw[-30:]))

    def after(self, name: str, seen: int, timeout: float = 15.0, **fields: Any
              ) -> dict[str, Any]:
        """The first `name` event logged after the first `seen` lines."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events[seen:]:
                if event.get("event") == name and all(
                        event.get(k) == v for k, v in fields.items()):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no {name} {fields}; log tail:\n" + "\n".join(self.raw[-30:]))

    def signal(self, signum: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)


def fleet_config(tmp_path: Path, processes: int = 2, **server: Any) -> dict[str, Any]:
    return basic_config(tmp_path, Processes=processes, **server)


def start(tmp_path: Path, config: dict[str, Any], name: str = "mailmgr.yaml") -> FleetProcess:
    return FleetProcess(write_config(tmp_path / name, config)).start()


def send(port: int, subject: str) -> str:
    """One message on a new connection; returns the ID of the 250 reply."""
    body = f"From: a@sender.test\r\nTo: b@mailmgr.test\r\nSubject: {subject}\r\n\r\nhi\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("a@sender.test")
        assert smtp.rcpt("b@mailmgr.test")[0] == 250
        code, reply = smtp.data(body.encode())
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]


def archived_subjects(config_file: Path) -> list[str]:
    """Subjects of every archived message (`mailmgr archive search`)."""
    done = subprocess.run(
        [sys.executable, "-m", "mailmgr", "archive", "search", "--json", "--max-results", "1000",
         "--config", str(config_file)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return [row["Subject"] for row in json.loads(done.stdout)]


def wait_archived(config_file: Path, count: int, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    subjects: list[str] = []
    while time.monotonic() < deadline:
        subjects = archived_subjects(config_file)
        if len(subjects) >= count:
            return subjects
        time.sleep(0.3)
    raise AssertionError(f"{len(subjects)} of {count} messages archived")


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, line_prefix: str) -> float:
    """The value of the exposition line starting with `line_prefix` (name and labels)."""
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {line_prefix} in\n{text}")
