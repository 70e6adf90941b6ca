"""End to end: `mailmgr serve` archives to S3 (moto) with its index in PostgreSQL; `mailmgr
archive search/get` from a second data directory (another replica's) find the mail, and a Local
body kept by the first replica is reported as such."""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from archive_shared_support import boto

from tests.state.postgres_support import PostgresInstance
from tests.support import ROOT, basic_config, write_config


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "mailmgr", *args, "--config", str(config)],
                          capture_output=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)


def _config(data_dir: Path, dsn: str, endpoint: str) -> dict[str, Any]:
    config = basic_config(data_dir, Aws={"EndpointUrl": endpoint},
                          SharedState={"PostgreSQL": {"Dsn": dsn, "PoolSize": 2}})
    config["Archives"] = [
        {"ArchiveName": "cold", "Retention": {"RetentionPeriod": "ONE_YEAR"},
         "Storage": {"S3": {"Bucket": "mail-archive", "Prefix": "mailmgr/"}}},
        {"ArchiveName": "default", "Storage": {"Local": {}}},
    ]
    config["RuleSets"][0]["Rules"][0]["Actions"] = [
        {"Archive": {"TargetArchive": "cold"}}, {"Archive": {"TargetArchive": "default"}}]
    return config


def test_serve_archives_to_s3_and_postgres_and_another_replica_reads_it(
    tmp_path: Path, server_factory: Any, aws_env: str, postgres: PostgresInstance
) -> None:
    s3 = boto(aws_env, "s3")
    s3.create_bucket(Bucket="mail-archive")
    dsn = postgres.fresh_database()
    server = server_factory(_config(tmp_path / "one", dsn, aws_env)).start()
    # No lifecycle rule on the bucket: reported at start-up (mailmgr deletes expired ones).
    missing = server.wait_for("archive.lifecycle_missing", 20)
    assert (missing["bucket"], missing["prefix"], missing["needed_days"]) == (
        "mail-archive", "mailmgr/", 365)
    # A reload checks again: still missing, reported again.
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while sum(e.get("event") == "archive.lifecycle_missing" for e in server.events) < 2:
        assert time.monotonic() < deadline, "\n".join(server.raw[-20:])
        time.sleep(0.05)
    subjects = [f"fleet archive {i}" for i in range(3)]
    for subject in subjects:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
            smtp.sendmail("alice@sender.test", ["bob@mailmgr.test"],
                          f"From: alice@sender.test\r\nTo: bob@mailmgr.test\r\n"
                          f"Subject: {subject}\r\n\r\nbody\r\n".encode())
    deadline = time.monotonic() + 30  # 3 messages, 2 archives each
    while sum(e.get("event") == "archive_stored" for e in server.events) < 6:
        assert time.monotonic() < deadline, "\n".join(server.raw[-20:])
        time.sleep(0.05)
    stored = s3.list_objects_v2(Bucket="mail-archive", Prefix="mailmgr/")
    assert stored["KeyCount"] == 3

    other = write_config(tmp_path / "two.yaml", _config(tmp_path / "two", dsn, aws_env))
    found = _cli(other, "archive", "search", "--json", "--archive", "cold",
                 "--subject", "FLEET archive")
    assert found.returncode == 0, found.stderr
    rows = json.loads(found.stdout)
    assert sorted(r["Subject"] for r in rows) == subjects
    got = _cli(other, "archive", "get", rows[0]["ArchivedMessageId"])
    assert got.returncode == 0, got.stderr
    assert f"Subject: {rows[0]['Subject']}\r\n".encode() in got.stdout
    assert got.stdout.endswith(b"\r\nbody\r\n")

    both = json.loads(_cli(other, "archive", "search", "--json").stdout)
    assert sorted(r["ArchiveId"] for r in both).count(rows[0]["ArchiveId"]) == 3
    assert len(both) == 6
    local_id = next(r["ArchivedMessageId"] for r in both if r["ArchiveId"] != rows[0]["ArchiveId"])
    elsewhere = _cli(other, "archive", "get", local_id)
    assert elsewhere.returncode == 1 and elsewhere.stdout == b""
    error = elsewhere.stderr.decode()
    assert "stored on replica" in error and str(tmp_path / "one") in error
    assert "Traceback" not in error
    # On the replica that holds it, the same command works.
    here = _cli(server.config_file, "archive", "get", local_id)
    assert here.returncode == 0 and here.stdout.endswith(b"\r\nbody\r\n")


def test_unreachable_index_database_stops_start_up_cleanly(
    tmp_path: Path, server_factory: Any, aws_env: str
) -> None:
    dsn = "postgresql://mailmgr:s3cret@127.0.0.1:1/mailmgr?connect_timeout=1"
    config = write_config(tmp_path / "down.yaml", _config(tmp_path / "down", dsn, aws_env))
    done = subprocess.run([sys.executable, "-m", "mailmgr", "serve", "--config", str(config),
                           "--log-format", "json"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    failed = [json.loads(line) for line in done.stderr.splitlines()
              if '"server.start_failed"' in line]
    assert failed and "cannot connect to PostgreSQL" in failed[0]["error"]
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr
