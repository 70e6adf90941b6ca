"""A real HAProxy (Debian package) in front of the real `mailmgr serve`: `send-proxy` (v1) and
`send-proxy-v2` backends with health checks (v2 LOCAL), one of them in front of the implicit-TLS
listener (the header comes before the TLS handshake). The client connects from 127.0.0.2,
HAProxy reaches mailmgr from 127.0.0.1 (the only trusted source), so everything that must see
the client (traffic policy IpExpression, a rule's SOURCE_IP, SPF, Received, the archive row) can
tell the two apart. Also: an untrusted source sending a header is dropped, and hand-made
malformed and truncated headers from the trusted source are refused and counted in /metrics."""

from __future__ import annotations

import json
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, ServerProcess, basic_config
from tests.verdicts.dns_server import DnsServer, Zone

CLIENT = "127.0.0.2"  # the real client, behind HAProxy
OTHER = "127.0.0.3"  # another client, outside the traffic policy's ALLOW
BALANCER = "127.0.0.1"  # HAProxy's source towards mailmgr: the only trusted source

UP = {"mailmgr_v1": "UP", "mailmgr_v2": "UP", "mailmgr_tls": "UP"}

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(tmp_path: Path, nameserver: str) -> dict[str, Any]:
    config = basic_config(tmp_path, Dns={"Nameservers": [nameserver], "Timeout": 1.0})
    config["IngressPoints"][0]["ProxyProtocol"] = {"TrustedSources": [f"{BALANCER}/32"]}
    config["IngressPoints"][0]["TlsWrappedListen"] = ["127.0.0.1:0"]  # header before TLS
    # Only the real client may send: HAProxy's own address would be denied.
    config["TrafficPolicies"][0]["DefaultAction"] = "DENY"
    config["TrafficPolicies"][0]["PolicyStatements"] = [{
        "Action": "ALLOW",
        "Conditions": [{"IpExpression": {"Evaluate": {"Attribute": "SENDER_IP"},
                                         "Operator": "CIDR_MATCHES",
                                         "Values": [f"{CLIENT}/32"]}}],
    }]
    config["RuleSets"][0]["Rules"].insert(0, {
        "Name": "seen-client",
        "Conditions": [{"IpExpression": {"Evaluate": {"Attribute": "SOURCE_IP"},
                                         "Operator": "CIDR_MATCHES",
                                         "Values": [f"{CLIENT}/32"]}}],
        "Actions": [{"AddHeader": {"HeaderName": "X-Source-Seen", "HeaderValue": "client"}}],
    })
    return config


class HAProxy:
    """`haproxy -db -f cfg` in the foreground on free ports; stopped by its PID."""

    def __init__(self, workdir: Path, smtp_port: int, smtps_port: int) -> None:
        self.v1_port, self.v2_port, self.tls_port = _free_port(), _free_port(), _free_port()
        self.stats = workdir / "haproxy.sock"
        self.cfg = workdir / "haproxy.cfg"
        self.cfg.write_text(f"""\
global
  stats socket {self.stats} level admin
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend smtp_v1
  bind 127.0.0.1:{self.v1_port}
  default_backend mailmgr_v1
frontend smtp_v2
  bind 127.0.0.1:{self.v2_port}
  default_backend mailmgr_v2
frontend smtps_v2
  bind 127.0.0.1:{self.tls_port}
  default_backend mailmgr_tls
backend mailmgr_v1
  server mx 127.0.0.1:{smtp_port} source {BALANCER} send-proxy check inter 200ms
backend mailmgr_v2
  server mx 127.0.0.1:{smtp_port} source {BALANCER} send-proxy-v2 check inter 200ms
backend mailmgr_tls
  server mx 127.0.0.1:{smtps_port} source {BALANCER} send-proxy-v2 check inter 200ms
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HAProxy:
        checked = subprocess.run(["haproxy", "-c", "-f", str(self.cfg)], capture_output=True,
                                 text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.cfg)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while self.status() != UP:
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            assert time.monotonic() < deadline, f"backends not UP: {self.status()}"
            time.sleep(0.2)
        return self

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def status(self) -> dict[str, str]:
        """Backend name -> the `mx` server's status (UP once its health checks pass)."""
        try:
            csv = self.command("show stat")
        except OSError:
            return {}
        lines = csv.splitlines()
        if not lines:
            return {}
        fields = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(fields, line.split(","), strict=False)) for line in lines[1:] if line]
        return {r["pxname"]: r["status"] for r in rows if r.get("svname") == "mx"}

    def check_failures(self) -> int:
        """Failed health checks against `mx` so far (both backends)."""
        csv = self.command("show stat").splitlines()
        fields = csv[0].lstrip("# ").split(",")
        rows = [dict(zip(fields, line.split(","), strict=False)) for line in csv[1:] if line]
        return sum(int(r.get("chkfail") or 0) for r in rows if r.get("svname") == "mx")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def haproxy_binary(pytestconfig: pytest.Config) -> str:
    path = shutil.which("haproxy")
    if path is None:
        reason = "haproxy is not installed (scripts/test installs the Debian package)"
        with pytestconfig.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
            print(f"NOTICE: HAProxy tests skipped: {reason}", file=sys.stderr)
        pytest.skip(reason)
    return path


@pytest.fixture
def stack(
    tmp_path: Path, server_factory: Any, dns_server: DnsServer, zone: Zone, haproxy_binary: str,
) -> Iterator[tuple[ServerProcess, HAProxy]]:
    zone.txt("sender.example", f"v=spf1 ip4:{CLIENT} -all")  # spf=pass only for the client
    server = server_factory(_config(tmp_path, dns_server.address)).start()
    listening = server.wait_for("ingress.listening", ingress_point="inbound")
    smtps_port = int(listening["tls_wrapped_addresses"][0].rsplit(":", 1)[1])
    balancer = HAProxy(tmp_path, server.port, smtps_port).start()
    try:
        yield server, balancer
    finally:
        balancer.stop()


def _cli(config: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mailmgr", *args, "--config", str(config)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _archived(server: ServerProcess, subject: str) -> tuple[dict[str, Any], str]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = json.loads(_cli(server.config_file, "archive", "search", "--json",
                               "--subject", subject) or "[]")
        if rows:
            return rows[0], _cli(server.config_file, "archive", "get",
                                 rows[0]["ArchivedMessageId"])
        time.sleep(0.2)
    raise AssertionError(f"nothing archived with subject {subject!r}")


def _refusals(server: ServerProcess) -> dict[str, float]:
    url = f"http://127.0.0.1:{server.admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("mailmgr_proxy_refusals_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] = float(line.rsplit(" ", 1)[1])
    return counts


def _connect(balancer: HAProxy, version: str, source: str) -> smtplib.SMTP:
    if version == "v2-implicit-tls":  # TLS passes through HAProxy (mode tcp) to mailmgr
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the server's self-signed development certificate
        return smtplib.SMTP_SSL("127.0.0.1", balancer.tls_port, timeout=10,
                                source_address=(source, 0), context=context)
    port = balancer.v1_port if version == "v1" else balancer.v2_port
    return smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0))


@pytest.mark.parametrize("version", ["v1", "v2", "v2-implicit-tls"])
def test_client_address_through_haproxy(
    stack: tuple[ServerProcess, HAProxy], version: str
) -> None:
    server, balancer = stack
    subject = f"through haproxy {version}"
    with _connect(balancer, version, CLIENT) as smtp:
        smtp.ehlo("client.example.com")
        assert smtp.mail("a@sender.example")[0] == 250
        assert smtp.rcpt("bob@rcpt.test")[0] == 250  # the policy ALLOWs only 127.0.0.2
        code, reply = smtp.data(f"Subject: {subject}\r\n\r\nbody\r\n".encode())
        assert code == 250
    accepted = server.wait_for("smtp.accepted", message_id=reply.decode().rsplit(" ", 1)[1])
    assert accepted["tls_wrapped"] is (version == "v2-implicit-tls")
    assert accepted["peer_ip"] == CLIENT
    with _connect(balancer, version, OTHER) as smtp:
        smtp.ehlo("other.example.com")
        assert smtp.mail("a@sender.example")[0] == 250
        assert smtp.rcpt("bob@rcpt.test") == (550, b"5.7.1 Recipient rejected by policy")

    row, text = _archived(server, subject)
    assert row["SenderIpAddress"] == CLIENT
    assert "X-Source-Seen: client" in text  # the rule's SOURCE_IP condition matched
    assert f"Received: from client.example.com ([{CLIENT}])" in text
    assert "spf=pass smtp.mailfrom=a@sender.example" in text
    assert BALANCER not in text

    # Health checks (v2 LOCAL, v1 from HAProxy itself) kept passing and were never refused.
    time.sleep(0.5)
    assert balancer.status() == UP
    assert balancer.check_failures() == 0
    assert not [e for e in server.events if e.get("event") == "ingress.proxy_refused"]


def _raw(port: int, data: bytes, *, source: str, eof: bool = False, banner: bool = False,
         ) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as sock:
        if banner:
            assert sock.recv(4096).startswith(b"220 ")
        sock.sendall(data)
        if eof:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(4096):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


V2_LOCAL = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00, 0x00, 0x00])


def test_hand_made_headers_against_the_server(stack: tuple[ServerProcess, HAProxy]) -> None:
    server, _ = stack
    port = server.port
    before = _refusals(server)

    # An untrusted source (127.0.0.2) sending a header: 421 after the banner, then closed.
    for header in (b"PROXY TCP4 198.51.100.1 127.0.0.1 40000 25\r\n", V2_LOCAL):
        got = _raw(port, header + b"QUIT\r\n", source=CLIENT, banner=True)
        assert got.startswith(b"421 4.7.0 ") and b"250" not in got
    # The trusted source: a v2 LOCAL is a normal session with the balancer's address...
    got = _raw(port, V2_LOCAL + b"QUIT\r\n", source=BALANCER)
    assert got.startswith(b"220 ") and b"221 " in got
    # ...a malformed, a truncated or a missing header closes without a banner.
    assert _raw(port, b"PROXY TCP4 198.51.100.1 127.0.0.1 99999 25\r\n", source=BALANCER) == b""
    assert _raw(port, b"PROXY TCP4 198.51", source=BALANCER, eof=True) == b""
    assert _raw(port, b"EHLO client.example.com\r\n", source=BALANCER) == b""

    after = _refusals(server)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert delta == {"untrusted_source": 2, "malformed": 1, "truncated": 1, "missing": 1}
    refused = [e for e in server.events if e.get("event") == "ingress.proxy_refused"]
    assert sorted(e["reason"] for e in refused) == [
        "malformed", "missing", "truncated", "untrusted_source", "untrusted_source"]
    assert all(e["peer_ip"] in (CLIENT, BALANCER) for e in refused)
