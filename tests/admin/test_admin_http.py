"""The admin listener over real HTTP against a real `mailmgr serve`: probes, draining on
SIGTERM, metrics after real SMTP traffic, the bearer token."""

from __future__ import annotations

import json
import signal
import smtplib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from email.message import EmailMessage

from tests.support import ROOT, ServerProcess, basic_config


def _get(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _sample(text: str, name: str, labels: str = "") -> float:
    """One sample's value from the Prometheus text format (0 when absent)."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == wanted:
            return float(value)
    return 0.0


def _send(port: int, subject: str, body: str = "hello\n") -> None:
    message = EmailMessage()
    message["From"] = "sender@example.org"
    message["To"] = "rcpt@example.com"
    message["Subject"] = subject
    message.set_content(body)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(message)


def test_probes_answer_and_admin_address_is_logged(tmp_path, server_factory):
    server: ServerProcess = server_factory(basic_config(tmp_path)).start()
    assert server.admin_port not in (0, server.port)
    assert _get(server.admin_port, "/healthz/live") == (200, "live\n")
    assert _get(server.admin_port, "/healthz/ready") == (200, "ready\n")
    assert _get(server.admin_port, "/nothing")[0] == 404
    assert server.stop() == 0


def test_sigterm_makes_ready_503_while_smtp_still_accepts_during_drain(tmp_path, server_factory):
    config = basic_config(tmp_path, Admin={"Listen": ["127.0.0.1:0"], "DrainSeconds": 2})
    server: ServerProcess = server_factory(config).start()
    assert server.proc is not None
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.wait_for("server.draining", 5)
    assert _get(server.admin_port, "/healthz/ready")[0] == 503
    assert _get(server.admin_port, "/healthz/live")[0] == 200
    # Still draining: a new SMTP connection gets its banner and a message is accepted.
    _send(server.port, "during drain")
    assert not any(e.get("event") == "server.stopping" for e in server.events)
    server.wait_for("server.stopping", 10)
    assert time.monotonic() - began >= 2  # the listeners stayed open for DrainSeconds
    assert server.proc.wait(20) == 0
    with socket.socket() as sock:  # and after the exit the port is closed
        assert sock.connect_ex(("127.0.0.1", server.port)) != 0


def test_metrics_count_exactly_the_accepted_messages(tmp_path, server_factory):
    server: ServerProcess = server_factory(basic_config(tmp_path)).start()
    status, before = _get(server.admin_port, "/metrics")
    assert status == 200
    label = 'ingress_point="inbound"'
    accepted = _sample(before, "mailmgr_messages_accepted_total", label)
    size = _sample(before, "mailmgr_message_bytes_accepted_total", label)
    latency = _sample(before, "mailmgr_data_to_reply_seconds_count")
    for i in range(3):
        _send(server.port, f"metrics {i}", body="x" * 100 + "\n")
    status, after = _get(server.admin_port, "/metrics")
    assert _sample(after, "mailmgr_messages_accepted_total", label) - accepted == 3
    assert _sample(after, "mailmgr_data_to_reply_seconds_count") - latency == 3
    added = _sample(after, "mailmgr_message_bytes_accepted_total", label) - size
    assert 3 * 101 < added < 3 * 2000  # content with headers, each message counted once
    assert "mailmgr_spool_messages{state=\"pending\"}" in after
    assert _sample(after, "mailmgr_connections_current", label) == 0
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.ehlo()
        _, during = _get(server.admin_port, "/metrics")
        assert _sample(during, "mailmgr_connections_current", label) == 1
    assert "python_gc" not in after  # our own registry, not the global one
    assert server.stop() == 0


def test_token_guards_metrics_but_not_probes(tmp_path, server_factory):
    (tmp_path / "admin-token").write_text("tok-123\n")
    config = basic_config(tmp_path, Admin={"Listen": ["127.0.0.1:0"],
                                           "TokenFile": str(tmp_path / "admin-token")})
    server: ServerProcess = server_factory(config).start()
    assert _get(server.admin_port, "/metrics")[0] == 401
    assert _get(server.admin_port, "/metrics", token="wrong")[0] == 401
    assert _get(server.admin_port, "/metrics", token="tok-123")[0] == 200
    for scheme in ("bearer", "BEARER"):  # the scheme is case-insensitive (RFC 7235 §2.1)
        request = urllib.request.Request(f"http://127.0.0.1:{server.admin_port}/metrics")
        request.add_header("Authorization", f"{scheme} tok-123")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
            assert "Server" not in response.headers  # no software name or version
    assert _get(server.admin_port, "/healthz/live")[0] == 200
    assert _get(server.admin_port, "/healthz/ready")[0] == 200
    assert not any("tok-123" in line for line in server.raw)
    assert server.stop() == 0


def test_empty_listen_turns_the_admin_listener_off(tmp_path, server_factory):
    server: ServerProcess = server_factory(basic_config(tmp_path, Admin={"Listen": []})).start()
    assert server.admin_port == 0
    assert server.wait_for("server.started")["admin"] == []
    assert server.stop() == 0


def test_admin_port_in_use_fails_start_cleanly(tmp_path, server_factory):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = basic_config(tmp_path, Admin={"Listen": [f"127.0.0.1:{port}"]})
        server: ServerProcess = server_factory(config)
        try:
            server.start(timeout=10)
        except AssertionError:
            pass
        assert server.proc is not None and server.proc.wait(20) == 1
        server.wait_for("server.start_failed", 1)
        assert not any("Traceback" in line for line in server.raw)


def test_dockerfile_healthcheck_probes_liveness(tmp_path, server_factory):
    """The Dockerfile's HEALTHCHECK command, run as written (its port swapped for ours)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    exec_form = dockerfile.split("HEALTHCHECK", 1)[1].split("CMD", 1)[1].splitlines()[0]
    argv = json.loads(exec_form)
    assert argv[0] == "/opt/mailmgr/venv/bin/python"  # the image's venv (Dockerfile)
    assert "/healthz/live" in argv[2] and ":9025/" in argv[2]
    server: ServerProcess = server_factory(basic_config(tmp_path)).start()
    probe = argv[2].replace(":9025/", f":{server.admin_port}/")
    assert subprocess.run([sys.executable, "-c", probe], timeout=20).returncode == 0
    assert server.stop() == 0
    assert subprocess.run([sys.executable, "-c", probe], timeout=20,
                          capture_output=True).returncode != 0


def test_second_sigterm_cuts_the_drain_short(tmp_path, server_factory):
    config = basic_config(tmp_path, Admin={"Listen": ["127.0.0.1:0"], "DrainSeconds": 60})
    server: ServerProcess = server_factory(config).start()
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    server.wait_for("server.draining", 5)
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0
    assert time.monotonic() - began < 20
