"""Test support: run the real `mailmgr serve` process on ephemeral ports and read its logs."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    """`python -m mailmgr serve` in a subprocess; JSON log lines are collected from stderr."""

    def __init__(self, config_file: Path) -> None:
        self.config_file = config_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.raw: list[str] = []
        self.port = 0
        self.admin_port = 0  # the first admin listener's port, 0 when it is off

    def start(self, timeout: float = 20.0) -> ServerProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailmgr", "serve", "--config", str(self.config_file),
             "--log-format", "json"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=ROOT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        started = self.wait_for("server.started", timeout)
        address = started["listeners"][0]["address"]
        self.port = int(address.rsplit(":", 1)[1])
        admin = started.get("admin") or []
        self.admin_port = int(admin[0].rsplit(":", 1)[1]) if admin else 0
        return self

    def _read(self) -> None:
        assert self.proc and self.proc.stderr
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.raw.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            self._lines.put(event)

    def wait_for(self, name: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in list(self.events):
            if event.get("event") == name and all(event.get(k) == v for k, v in fields.items()):
                return event
        while time.monotonic() < deadline:
            try:
                event = self._lines.get(timeout=max(0.01, min(0.2, deadline - time.monotonic())))
            except queue.Empty:
                # A process that has exited and whose log is read to the end logs nothing
                # more: say so now rather than after the whole timeout.
                reader = getattr(self, "_reader", None)
                if reader is not None and not reader.is_alive() and self._lines.empty():
                    break
                continue
            if event.get("event") == name and all(event.get(k) == v for k, v in fields.items()):
                return event
        tail = "\n".join(self.raw[-30:])
        raise AssertionError(f"no {name} {fields} event within {timeout}s; log tail:\n{tail}")

    def kill(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                # Say why it hung: the log tail lands in the failing test's captured output.
                tail = "\n".join(self.raw[-30:])
                print(f"server did not stop within 20 s; log tail:\n{tail}", file=sys.stderr)
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Writes `data` as YAML; a config without `Server.Admin` gets its admin listener on an
    ephemeral port, so tests never need the default 127.0.0.1:9025, and no SIGTERM drain."""
    server = data.get("Server") or {}
    if isinstance(server, dict) and "Admin" not in server:
        # no drain: the suite stops hundreds of servers (tests/admin tests draining itself)
        admin = {"Listen": ["127.0.0.1:0"], "DrainSeconds": 0}
        data = {**data, "Server": {**server, "Admin": admin}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def basic_config(tmp_path: Path, **server: Any) -> dict[str, Any]:
    """The default config's shape on an ephemeral port with its data under tmp_path."""
    return {
        "Server": {"Hostname": "mx.test.example", "DataDirectory": str(tmp_path / "var"),
                   "Log": {"Format": "json", "Level": "INFO"},
                   "Retry": {"InitialDelaySeconds": 1, "MaxDelaySeconds": 2},
                   "Admin": {"Listen": ["127.0.0.1:0"], "DrainSeconds": 0}, **server},
        "IngressPoints": [{
            "IngressPointName": "inbound", "Type": "OPEN", "RuleSetId": "main",
            "TrafficPolicyId": "allow-all", "TlsPolicy": "OPTIONAL",
            "Listen": ["127.0.0.1:0"],
            "TlsCertificate": {"CertificateFile": str(tmp_path / "certs/server.pem"),
                               "PrivateKeyFile": str(tmp_path / "certs/server.key")},
        }],
        "TrafficPolicies": [{"TrafficPolicyName": "allow-all", "DefaultAction": "ALLOW",
                             "PolicyStatements": [], "MaxMessageSizeBytes": 1_000_000}],
        "RuleSets": [{"RuleSetName": "main", "Rules": [{
            "Name": "archive-all",
            "Actions": [{"AddHeader": {"HeaderName": "X-Mailmgr-Processed",
                                       "HeaderValue": "yes"}},
                        {"Archive": {"TargetArchive": "default"}}],
        }]}],
        "Archives": [{"ArchiveName": "default", "Retention": {"RetentionPeriod": "ONE_YEAR"},
                      "Storage": {"Local": {}}}],
    }




def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m mailmgr ARGS --config CONFIG` as a user runs it (no stdin, 60 s bound)."""
    return subprocess.run([sys.executable, "-m", "mailmgr", *args, "--config", str(config)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          stdin=subprocess.DEVNULL)


def archived_text(server: ServerProcess, subject: str, timeout: float = 15.0) -> str:
    """The archived copy of the message with `subject` (`archive search` then `archive get`
    through the CLI), waiting up to `timeout` seconds for the worker to archive it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = cli(server.config_file, "archive", "search", "--json", "--subject", subject)
        rows = json.loads(found.stdout or "[]")
        if rows:
            got = cli(server.config_file, "archive", "get", rows[0]["ArchivedMessageId"])
            assert got.returncode == 0, got.stderr
            return got.stdout
        time.sleep(0.2)
    raise AssertionError(f"nothing archived with subject {subject!r}")
