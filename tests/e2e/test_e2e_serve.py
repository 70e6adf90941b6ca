"""End to end: the real `mailmgr serve` process, real SMTP clients, the archive CLI."""

from __future__ import annotations

import json
import shutil
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, ServerProcess, basic_config

MESSAGE = (
    "From: Alice <alice@sender.test>\r\nTo: bob@mailmgr.test\r\n"
    "Subject: hello e2e\r\nMessage-ID: <e2e-1@sender.test>\r\n\r\nBody line\r\n"
)


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailmgr", *args, "--config", str(config)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
    )


def _search(server: ServerProcess, *args: str) -> list[dict[str, Any]]:
    result = _cli(server.config_file, "archive", "search", "--json", *args)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def _wait_archived(server: ServerProcess, subject: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = _search(server, "--subject", subject)
        if len(rows) >= count:
            return rows
        time.sleep(0.2)
    raise AssertionError(f"{count} archived message(s) with subject {subject!r} not found: {rows}")


def test_smtplib_message_is_queued_and_archived_with_header(tmp_path, server_factory):
    server = server_factory(basic_config(tmp_path)).start()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        code, _ = smtp.ehlo("client.test")
        assert code == 250
        smtp.mail("alice@sender.test")
        smtp.rcpt("bob@mailmgr.test")
        code, reply = smtp.data(MESSAGE.encode())
    assert code == 250
    text = reply.decode()
    assert text.startswith("2.0.0 Ok: queued as ")
    message_id = text.rsplit(" ", 1)[1]
    assert message_id.isalnum() and message_id == message_id.lower()

    processed = server.wait_for("message.processed", message_id=message_id)
    assert processed["message_id"] == message_id
    rows = _wait_archived(server, "hello e2e")
    assert len(rows) == 1
    assert rows[0]["Subject"] == "hello e2e"
    assert "alice@sender.test" in rows[0]["From"]

    got = _cli(server.config_file, "archive", "get", rows[0]["ArchivedMessageId"])
    assert got.returncode == 0, got.stderr
    assert "X-Mailmgr-Processed: yes" in got.stdout
    assert "Body line" in got.stdout
    # On top: our Authentication-Results, then our Received trace field, then the message.
    lines = got.stdout.splitlines()
    assert lines[0].startswith("Authentication-Results: mx.test.example")
    received = lines.index(next(line for line in lines if line.startswith("Received:")))
    assert lines[received] == "Received: from client.test ([127.0.0.1])"
    assert lines[received + 1] == "\tby mx.test.example with ESMTP"
    assert lines[received + 2] == f"\tid {message_id}"
    assert lines[received + 3].startswith("\tfor <bob@mailmgr.test>; ")
    assert lines[received + 4] == "From: Alice <alice@sender.test>"
    assert server.stop() == 0


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_swaks_message_is_archived(tmp_path, server_factory):
    server = server_factory(basic_config(tmp_path)).start()
    result = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{server.port}", "--from", "carol@sender.test",
         "--to", "dave@mailmgr.test", "--header", "Subject: via swaks", "--body", "swaks body",
         "--tls"],  # STARTTLS on the OPTIONAL ingress point with the dev certificate
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: queued as" in result.stdout
    rows = _wait_archived(server, "via swaks")
    assert rows[0]["Envelope"]["From"] == "carol@sender.test"


def test_banner_reveals_no_software_version(tmp_path, server_factory):
    server = server_factory(basic_config(tmp_path)).start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        banner = sock.recv(512).decode()
    assert banner.startswith("220 mx.test.example")
    lowered = banner.lower()
    for word in ("python", "aiosmtpd", "mailmgr", "0.1"):
        assert word not in lowered


def test_required_tls_refuses_plaintext_mail(tmp_path, server_factory):
    config = basic_config(tmp_path)
    config["IngressPoints"][0]["TlsPolicy"] = "REQUIRED"
    server = server_factory(config).start()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        code, text = smtp.mail("alice@sender.test")
    assert code == 530
    assert b"5.7.0 Must issue a STARTTLS command first" in text


def test_sigkill_after_250_message_processed_exactly_once(tmp_path, server_factory):
    config = basic_config(tmp_path)
    server = server_factory(config).start()
    # Make the archive's storage fail (a file where its folder tree must go): the action fails
    # temporarily and the message stays in the spool, accepted but not processed.
    archives = tmp_path / "var" / "archives"
    blocker = next(p for p in archives.iterdir() if p.is_dir()) / "messages"
    if blocker.exists():
        shutil.rmtree(blocker)
    blocker.write_text("not a folder")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.sendmail("alice@sender.test", ["bob@mailmgr.test"],
                      MESSAGE.replace("hello e2e", "crash test"))
    server.wait_for("message.action", status="RETRY")
    server.kill()

    blocker.unlink()
    restarted = ServerProcess(server.config_file).start()
    try:
        started = restarted.wait_for("server.started")
        assert started["recovered"] == 1
        rows = _wait_archived(restarted, "crash test")
        time.sleep(1.5)  # a duplicate run would show up as a second row
        assert len(_search(restarted, "--subject", "crash test")) == 1
        assert len(rows) == 1
    finally:
        restarted.stop()
    # finished: a third start recovers nothing
    third = ServerProcess(server.config_file).start()
    try:
        assert third.wait_for("server.started")["recovered"] == 0
    finally:
        third.stop()


def test_sigkill_right_after_250_never_loses_or_duplicates(tmp_path, server_factory):
    server = server_factory(basic_config(tmp_path)).start()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.sendmail("alice@sender.test", ["bob@mailmgr.test"],
                      MESSAGE.replace("hello e2e", "instant kill"))
    server.kill()
    restarted = ServerProcess(server.config_file).start()
    try:
        _wait_archived(restarted, "instant kill")
        time.sleep(1.0)
        assert len(_search(restarted, "--subject", "instant kill")) == 1
    finally:
        restarted.stop()


def test_disconnect_in_the_middle_of_data_leaves_nothing(tmp_path, server_factory):
    server = server_factory(basic_config(tmp_path)).start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(b"EHLO c.test\r\n")
        while f.readline()[3:4] == b"-":
            pass
        sock.sendall(b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<b@mailmgr.test>\r\nDATA\r\n")
        for _ in range(3):
            f.readline()
        sock.sendall(b"Subject: half\r\n\r\npartial body without the end")
    time.sleep(0.5)
    assert server.stop() == 0
    assert not any(e.get("event") == "smtp.accepted" for e in server.events)
    restarted = ServerProcess(server.config_file).start()
    try:
        assert restarted.wait_for("server.started")["recovered"] == 0
        assert _search(restarted, "--subject", "half") == []
    finally:
        restarted.stop()


def test_bad_config_stops_serve_with_file_path_and_no_traceback(tmp_path, server_factory):
    config = basic_config(tmp_path)
    config["RuleSets"][0]["Rules"][0]["Name"] = "bad name!"
    config["IngressPoints"][0]["TrafficPolicyId"] = "nope"
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(config))
    result = subprocess.run(
        [sys.executable, "-m", "mailmgr", "serve", "--config", str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "$.RuleSets[0].Rules[0].Name" in result.stderr
    assert "$.IngressPoints[0].TrafficPolicyId" in result.stderr
    assert str(path) in result.stderr
    check = _cli(path, "check-config")
    assert check.returncode == 1
    assert "$.RuleSets[0].Rules[0].Name" in check.stderr


def test_check_config_prints_summary_with_ids(tmp_path):
    default = ROOT / "config" / "mailmgr.yaml"
    result = _cli(default, "check-config")
    assert result.returncode == 0, result.stderr
    assert "inp-" in result.stdout and "rs-" in result.stdout and "a-" in result.stdout
    assert "inbound" in result.stdout


def test_explain_json_from_the_command_line(tmp_path):
    eml = tmp_path / "m.eml"
    eml.write_text(MESSAGE)
    result = _cli(ROOT / "config" / "mailmgr.yaml", "explain", "--eml", str(eml), "--json",
                  "--mail-from", "alice@sender.test", "--spf", "PASS")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ingress_point"] == "inbound"
    assert data["final_recipients"] == ["bob@mailmgr.test"]
    assert [a["action"] for a in data["actions"]] == ["AddHeader", "Archive"]
    assert data["verdicts"] == {"spf": "PASS", "dkim": "GRAY", "dmarc": "PASS",
                                "dmarc_policy": None}
