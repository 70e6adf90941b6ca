"""The fleet end to end, no containers: a real HAProxy with `send-proxy-v2` in front of two
`mailmgr serve` replicas (separate data directories), one real PostgreSQL (shared configuration
and archive index), one moto S3 (archive bodies). 500 messages go through HAProxy while one
replica is SIGKILLed and restarted; every message that got a 250 is archived exactly once in S3
and found by `mailmgr archive search` on either replica; a config pushed once changes the rule
set of both replicas without a restart."""

from __future__ import annotations

import json
import smtplib
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.state.postgres_support import PostgresInstance
from tests.support import ROOT, ServerProcess, basic_config, write_config

pytestmark = pytest.mark.slow

BUCKET = "fleet-archive"
PREFIX = "mail/"
MESSAGES = 500
KILL_AFTER = 150


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _local(tmp_path: Path, name: str, dsn: str, moto: str, port: int) -> dict[str, Any]:
    """A replica's local file: its Server section (SharedState, Aws) and host-bound keys."""
    config = basic_config(tmp_path / name, SharedState={"PostgreSQL": {"Dsn": dsn}},
                          Aws={"EndpointUrl": moto},
                          Retry={"InitialDelaySeconds": 0.5, "MaxDelaySeconds": 1})
    point = config["IngressPoints"][0]
    point["Listen"] = [f"127.0.0.1:{port}"]
    point["ProxyProtocol"] = {"TrustedSources": ["127.0.0.1/32"]}
    return config


def _fleet_document(tmp_path: Path, moto: str, tag: str) -> dict[str, Any]:
    """What is pushed: the resources (its Server section is not stored)."""
    config = basic_config(tmp_path / "pushed", Aws={"EndpointUrl": moto})
    config["Archives"] = [{"ArchiveName": "fleet", "Retention": {"RetentionPeriod": "ONE_YEAR"},
                           "Storage": {"S3": {"Bucket": BUCKET, "Prefix": PREFIX}}}]
    config["RuleSets"][0]["Rules"] = [{
        "Name": "archive-all",
        "Actions": [{"AddHeader": {"HeaderName": "X-Fleet", "HeaderValue": tag}},
                    {"Archive": {"TargetArchive": "fleet"}}],
    }]
    return config


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailmgr", *args, "--config", str(config)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          stdin=subprocess.DEVNULL)


class HAProxy:
    def __init__(self, workdir: Path, ports: list[int]) -> None:
        self.port = _free_port()
        self.cfg = workdir / "haproxy.cfg"
        servers = "\n".join(
            f"  server r{i} 127.0.0.1:{port} send-proxy-v2 check inter 200ms fall 2 rise 1"
            for i, port in enumerate(ports))
        self.cfg.write_text(f"""\
defaults
  mode tcp
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 2
  option redispatch
frontend smtp
  bind 127.0.0.1:{self.port}
  default_backend mailmgr
backend mailmgr
  balance roundrobin
{servers}
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HAProxy:
        checked = subprocess.run(["haproxy", "-c", "-f", str(self.cfg)], capture_output=True,
                                 text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.cfg)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Sender:
    """Sends numbered messages through HAProxy; a message whose 250 did not arrive (the replica
    died mid-transaction) is sent again, as a real client retries a 4xx or a broken
    connection. `accepted` maps each number to the queue ID of the 250 that was received."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted: dict[int, str] = {}
        self.retries = 0
        self._lock = threading.Lock()

    def send(self, number: int, tag: str = "") -> None:
        subject = f"fleet {tag}{number:04d}"
        content = (f"From: alice@sender.test\r\nTo: bob@mailmgr.test\r\nSubject: {subject}\r\n"
                   f"Message-ID: <fleet-{tag}{number}@sender.test>\r\n\r\nbody {number}\r\n")
        deadline = time.monotonic() + 60
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=15) as smtp:
                    smtp.ehlo("client.sender.test")
                    smtp.mail("alice@sender.test")
                    smtp.rcpt("bob@mailmgr.test")
                    code, reply = smtp.data(content.encode())
                if code == 250:
                    with self._lock:
                        self.accepted[number] = reply.decode().rsplit(" ", 1)[1]
                    return
            except (OSError, smtplib.SMTPException):
                pass
            with self._lock:
                self.retries += 1
            assert time.monotonic() < deadline, f"message {number} never accepted"
            time.sleep(0.1)


def _objects(s3: Any) -> dict[str, str]:
    """Archived object key -> its Subject, for every object in the bucket."""
    found: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read().decode()
            subject = next(line for line in body.splitlines() if line.startswith("Subject: "))
            found[item["Key"]] = subject.removeprefix("Subject: ")
    return found


def _wait_archived(s3: Any, subjects: set[str], timeout: float = 90) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        keys = {k: s for k, s in _objects(s3).items() if s in subjects}
        if set(keys.values()) >= subjects or time.monotonic() > deadline:
            return keys
        time.sleep(1)


def test_fleet_behind_haproxy_loses_nothing_and_shares_one_config(
    tmp_path: Path, postgres: PostgresInstance, aws_env: str,
) -> None:
    s3 = boto3.client("s3", endpoint_url=aws_env, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    dsn = postgres.fresh_database()
    ports = [_free_port(), _free_port()]
    files = [write_config(tmp_path / f"r{i}.yaml", _local(tmp_path, f"r{i}", dsn, aws_env, p))
             for i, p in enumerate(ports)]
    pushed = write_config(tmp_path / "fleet.yaml", _fleet_document(tmp_path, aws_env, "one"))
    done = _cli(files[0], "config", "push", str(pushed))
    assert done.returncode == 0, done.stderr
    replicas = [ServerProcess(f).start(timeout=60) for f in files]
    balancer = HAProxy(tmp_path, ports).start()
    try:
        sender = Sender(balancer.port)
        time.sleep(1.0)  # both backends UP (checks every 200 ms)
        with ThreadPoolExecutor(max_workers=8) as pool:
            first = list(pool.map(sender.send, range(KILL_AFTER)))
            assert len(first) == KILL_AFTER
            victim = replicas[1]
            assert victim.proc is not None
            victim.proc.kill()  # SIGKILL: its spool holds what it accepted and not finished
            victim.proc.wait(10)
            rest = pool.map(sender.send, range(KILL_AFTER, MESSAGES))
            restarted = ServerProcess(files[1]).start(timeout=60)  # same data dir, same port
            replicas[1] = restarted
            list(rest)
        assert len(sender.accepted) == MESSAGES
        # both replicas accepted mail (balanced), and the restarted one recovered its spool
        takers = {e.get("message_id") for r in (replicas[0],)
                  for e in r.events if e.get("event") == "smtp.accepted"}
        ids = set(sender.accepted.values())
        assert 0 < len(ids & takers) < MESSAGES
        subjects = {f"fleet {n:04d}" for n in range(MESSAGES)}
        archived = _wait_archived(s3, subjects)
        by_subject: dict[str, list[str]] = {}
        for key, subject in archived.items():
            by_subject.setdefault(subject, []).append(key)
        missing = subjects - set(by_subject)
        assert not missing, f"{len(missing)} accepted messages not archived: {sorted(missing)[:5]}"
        twice = {s: k for s, k in by_subject.items() if len(k) > 1}
        assert not twice, f"archived more than once: {list(twice.items())[:3]}"
        # any replica finds any replica's mail: the index is in PostgreSQL
        for config in files:
            found = _cli(config, "archive", "search", "--json", "--subject", "fleet 0",
                         "--max-results", "1000")
            assert found.returncode == 0, found.stderr
            rows = json.loads(found.stdout)
            assert {r["Subject"] for r in rows} >= {f"fleet {n:04d}" for n in range(100)}
        key = next(iter(by_subject["fleet 0007"]))
        got = _cli(files[1], "archive", "get", key.removeprefix(PREFIX))
        assert got.returncode == 0 and "Subject: fleet 0007" in got.stdout, got.stderr
        # one push changes the rule set of both replicas without a restart
        seen = [len(r.events) for r in replicas]
        pushed.write_text(pushed.read_text().replace("HeaderValue: one", "HeaderValue: two"))
        done = _cli(files[0], "config", "push", str(pushed))
        assert done.returncode == 0, done.stderr
        for replica, start in zip(replicas, seen, strict=True):
            deadline = time.monotonic() + 10
            while not any(e.get("event") == "config.reloaded" for e in replica.events[start:]):
                assert time.monotonic() < deadline, "a replica did not reload within 10 s"
                time.sleep(0.1)
        after = Sender(balancer.port)
        for number in range(20):
            after.send(number, tag="after ")
        later = _wait_archived(s3, {f"fleet after {n:04d}" for n in range(20)})
        assert len(later) == 20
        headers = set()
        for key in later:
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
            headers.add(next(x for x in body.splitlines() if x.startswith("X-Fleet:")))
        assert headers == {"X-Fleet: two"}
        takers_after = [sum(e.get("event") == "smtp.accepted" for e in r.events[s:])
                        for r, s in zip(replicas, seen, strict=True)]
        assert all(n > 0 for n in takers_after), takers_after  # both replicas ran the new rules
    finally:
        balancer.stop()
        for replica in replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                replica.stop()
