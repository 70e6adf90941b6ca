"""Helpers for secure-ingress tests: a test PKI, the config of a server with AUTH, MTLS, FIPS and
implicit-TLS ingress points, and SMTP clients (smtplib, swaks, openssl s_client)."""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import smtplib
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailmgr import certs
from tests.support import ROOT, ServerProcess

PASSWORD = "Correct-Horse-Battery-7"
SWAKS = shutil.which("swaks")
OPENSSL = shutil.which("openssl")
ALICE_SERIAL = 0x0ADEEB89
ALICE_SANS = (
    "email:alice@example.test",
    "dns:alice.example.test",
    "uri:spiffe://example.test/alice",
    "ip:192.0.2.7",
    "ip:2001:db8:0:0::7",
    "dirname:CN=Alice,O=Example",
    "rid:1.3.6.1.4.1.99999.1",
)
MESSAGE = b"From: a@sender.test\r\nTo: b@x.test\r\nSubject: secure\r\n\r\nbody\r\n"


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path
    serial: int = 0


@dataclass(frozen=True)
class Pki:
    folder: Path
    server_ca: Path
    server: Pair
    ca1: Path  # trusted, with a CRL revoking `bob`
    ca2: Path  # trusted, no CRL (an expired CRL of it is dropped)
    ca_expired: Path
    crls: str
    alice: Pair  # CA1, every SAN type, serial 0A:DE:EB:89
    bob: Pair  # CA1, revoked
    carol: Pair  # CA1, expired
    dave: Pair  # CA2
    eve: Pair  # an untrusted CA

    def trust_store(self) -> dict[str, Any]:
        content = "".join(p.read_text() for p in (self.ca1, self.ca2, self.ca_expired))
        return {"TlsAuthConfiguration": {"TrustStore": {"CAContent": content,
                                                        "CrlContent": self.crls}}}

    def client_context(self, client: Pair | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.server_ca))
        if client is not None:
            context.load_cert_chain(str(client.cert), str(client.key))
        return context


def _save(folder: Path, name: str, issued: certs.Issued, chain: certs.Issued | None = None) -> Pair:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    pem = certs.cert_pem(issued.certificate)
    cert.write_bytes(pem + (certs.cert_pem(chain.certificate) if chain else b""))
    key.write_bytes(certs.key_pem(issued.key))
    return Pair(cert, key, issued.certificate.serial_number)


def make_pki(folder: Path) -> Pki:
    now = dt.datetime.now(dt.UTC)
    server_ca = certs.make_ca("secure test server CA")
    (folder / "server-ca.pem").write_bytes(certs.cert_pem(server_ca.certificate))
    server = _save(folder, "server", certs.make_server(server_ca, "localhost"), server_ca)
    ca1, ca2 = certs.make_ca("client CA one"), certs.make_ca("client CA two")
    old = certs.make_ca("client CA expired", not_before=now - dt.timedelta(days=60),
                        not_after=now - dt.timedelta(days=1))
    untrusted = certs.make_ca("client CA one")  # same name as a trusted CA, other key
    for name, ca in (("ca1", ca1), ("ca2", ca2), ("ca-expired", old)):
        (folder / f"{name}.pem").write_bytes(certs.cert_pem(ca.certificate))
    sans = [certs.parse_san(text) for text in ALICE_SANS]
    alice = _save(folder, "alice", certs.make_client(ca1, "alice.example", sans,
                                                     serial=ALICE_SERIAL))
    bob = _save(folder, "bob", certs.make_client(ca1, "bob.example"))
    carol = _save(folder, "carol", certs.make_client(
        ca1, "carol.example", not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1)))
    dave = _save(folder, "dave", certs.make_client(ca2, "dave.example"))
    eve = _save(folder, "eve", certs.make_client(untrusted, "eve.example"))
    crl1 = certs.make_crl(ca1, [bob.serial])
    expired_crl = certs.make_crl(ca2, [dave.serial], last_update=now - dt.timedelta(days=40),
                                 next_update=now - dt.timedelta(days=10))
    crls = (certs.crl_pem(crl1) + certs.crl_pem(expired_crl)).decode()
    return Pki(folder, folder / "server-ca.pem", server, folder / "ca1.pem", folder / "ca2.pem",
               folder / "ca-expired.pem", crls, alice, bob, carol, dave, eve)


# ---------------------------------------------------------------- config


def _point(name: str, kind: str, policy: str, pki: Pki, **extra: Any) -> dict[str, Any]:
    return {
        "IngressPointName": name, "IngressPointId": f"inp-{name}", "Type": kind,
        "RuleSetId": "main", "TrafficPolicyId": "allow-all", "TlsPolicy": policy,
        "Listen": ["127.0.0.1:0"],
        "TlsCertificate": {"CertificateFile": str(pki.server.cert),
                           "PrivateKeyFile": str(pki.server.key)},
        **extra,
    }


def _cert_rule(name: str, attribute: str, value: str) -> dict[str, Any]:
    return {"Name": name, "Conditions": [{"StringExpression": {
        "Evaluate": {"ClientCertificateAttribute": attribute}, "Operator": "EQUALS",
        "Values": [value]}}],
        "Actions": [{"AddHeader": {"HeaderName": f"X-{name}", "HeaderValue": "yes"}}]}


def secure_config(tmp_path: Path, pki: Pki, **server: Any) -> dict[str, Any]:
    """One server with every secure ingress type. The first Listen is the OPEN point's."""
    auth = {"SmtpPassword": PASSWORD}
    return {
        "Server": {"Hostname": "mx.secure.test", "DataDirectory": str(tmp_path / "var"),
                   "Log": {"Format": "json", "Level": "INFO"}, **server},
        "IngressPoints": [
            _point("open", "OPEN", "OPTIONAL", pki),
            _point("required", "OPEN", "REQUIRED", pki),
            _point("fips", "OPEN", "FIPS", pki),
            _point("auth", "AUTH", "REQUIRED", pki, IngressPointConfiguration=auth,
                   TlsWrappedListen=["127.0.0.1:0"]),
            _point("authopt", "AUTH", "OPTIONAL", pki, IngressPointConfiguration=auth),
            _point("mtls", "MTLS", "REQUIRED", pki,
                   IngressPointConfiguration=pki.trust_store(),
                   TlsWrappedListen=["127.0.0.1:0"]),
        ],
        "TrafficPolicies": [{"TrafficPolicyName": "allow-all", "DefaultAction": "ALLOW",
                             "PolicyStatements": []}],
        "RuleSets": [{"RuleSetName": "main", "Rules": [
            _cert_rule("cert-cn", "CN", "alice.example"),
            _cert_rule("cert-serial", "SERIAL_NUMBER", "0A:DE:EB:89"),
            _cert_rule("cert-ip", "SAN_IP_ADDRESS", "2001:db8::7"),
            _cert_rule("cert-dave", "CN", "dave.example"),
        ]}],
    }


def ports(server: ServerProcess, ingress_point: str) -> tuple[int, int | None]:
    """(STARTTLS port, implicit-TLS port or None) of one ingress point."""
    event = server.wait_for("ingress.listening", ingress_point=ingress_point)
    plain = int(event["addresses"][0].rsplit(":", 1)[1])
    wrapped = event["tls_wrapped_addresses"]
    return plain, int(wrapped[0].rsplit(":", 1)[1]) if wrapped else None


# ---------------------------------------------------------------- clients


def plain_auth(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def send(smtp: smtplib.SMTP, sender: str = "a@sender.test") -> tuple[int, bytes]:
    """MAIL, RCPT, DATA; the first reply that is not positive is returned."""
    smtp.ehlo_or_helo_if_needed()
    for reply in (smtp.mail(sender), smtp.rcpt("b@x.test")):
        if reply[0] >= 400:
            return reply
    return smtp.data(MESSAGE)


def run(*args: str, stdin: bytes = b"", timeout: float = 30) -> tuple[int, str]:
    done = subprocess.run(list(args), input=stdin, capture_output=True, timeout=timeout,
                          cwd=ROOT)
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


def s_client(port: int, *extra: str, starttls: bool = True,
             commands: bytes = b"EHLO c\r\nMAIL FROM:<a@sender.test>\r\nQUIT\r\n"
             ) -> tuple[int, str]:
    """`openssl s_client` with SMTP commands on stdin (CRLF already, so no -crlf)."""
    assert OPENSSL is not None
    args = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-quiet",
            "-verify_return_error", "-servername", "localhost", *extra]
    if starttls:
        args[2:2] = ["-starttls", "smtp"]
    return run(*args, stdin=commands)
