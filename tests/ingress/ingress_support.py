"""Helpers for ingress tests: certificates, a recording Acceptor, a recipient policy, a raw
SMTP client.

The Acceptor here is the documented seam (mailmgr.ingress.seams.Acceptor): it records what the
SMTP side hands over. The durable spool behind the real acceptor is tested in tests/spool.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailmgr.config.models import (
    IngressPoint,
    IngressPointStatus,
    IngressPointType,
    ListenAddress,
    TlsCertificate,
    TlsPolicy,
)
from mailmgr.errors import SpoolError
from mailmgr.ingress import IngressServer
from mailmgr.message import AnalysisResults, Envelope, SessionFacts, new_message_id

NO_ANALYSIS = AnalysisResults()

HOSTNAME = "mx.ingress.test"


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Certs:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_certs(folder: Path) -> Certs:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("ingress test CA"))
        .issuer_name(_name("ingress test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [
        x509.DNSName("localhost"),
        x509.DNSName(HOSTNAME),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(HOSTNAME))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(cert.public_bytes(pem))
    (folder / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Certs(folder / "ca.pem", folder / "server.pem", folder / "server.key")


# ---------------------------------------------------------------- seams


@dataclass
class Accepted:
    message_id: str
    session: SessionFacts
    envelope: Envelope
    content: bytes


@dataclass
class RecordingAcceptor:
    """Acceptor seam: records every accepted message; `fail` makes it raise SpoolError."""

    accepted: list[Accepted] = field(default_factory=list)
    fail: bool = False
    calls: int = 0

    async def accept(self, session: SessionFacts, envelope: Envelope, content: bytes,
                     analysis: AnalysisResults = NO_ANALYSIS) -> str:
        self.calls += 1
        if self.fail:
            raise SpoolError("disk full at /var/lib/mailmgr/spool/tmp/secret-path")
        message_id = new_message_id()
        self.accepted.append(Accepted(message_id, session, envelope, content))
        return message_id


@dataclass
class DenyListPolicy:
    """RecipientPolicy seam: rejects the listed recipients, records every question."""

    denied: frozenset[str] = frozenset()
    asked: list[tuple[SessionFacts, str]] = field(default_factory=list)
    fail: bool = False
    needs_analysis: bool = False

    def check(self, session: SessionFacts, recipient: str, mail_from: str = "",
              analysis: AnalysisResults = NO_ANALYSIS) -> bool:
        self.asked.append((session, recipient))
        if self.fail:
            raise RuntimeError("address list file /etc/secret/list.csv unreadable")
        return recipient not in self.denied


# ---------------------------------------------------------------- server


@dataclass
class Running:
    server: IngressServer
    acceptor: RecordingAcceptor
    policy: DenyListPolicy

    @property
    def host(self) -> str:
        return self.server.addresses()[0][0]

    @property
    def port(self) -> int:
        return self.server.addresses()[0][1]


StartServer = Callable[..., Awaitable[Running]]
Connect = Callable[[str, int], Awaitable["RawClient"]]


def ingress_point(
    *,
    tls_policy: TlsPolicy = TlsPolicy.OPTIONAL,
    status: IngressPointStatus = IngressPointStatus.ACTIVE,
    listen: tuple[ListenAddress, ...] = (ListenAddress("127.0.0.1", 0),),
    certs: Certs | None = None,
) -> IngressPoint:
    return IngressPoint(
        id="inp-test",
        name="test",
        arn="arn:aws:ses:us-east-1:000000000000:mailmanager-ingress-point/inp-test",
        type=IngressPointType.OPEN,
        rule_set_id="rs-main",
        traffic_policy_id="tp-default",
        tls_policy=tls_policy,
        listen=listen,
        tls_certificate=TlsCertificate(certs.cert_file, certs.key_file) if certs else None,
        status=status,
    )


# ---------------------------------------------------------------- a raw SMTP client


class RawClient:
    """Speaks SMTP byte for byte, so tests control pipelining and framing exactly."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection(host, port, limit=2**20)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, wait: float = 5.0) -> tuple[int, list[str]]:
        """One (possibly multi-line) reply: its code and the text of each line."""
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), wait)
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text[4:])
            if text[3:4] != "-":
                return int(text[:3]), lines

    async def command(self, line: str | bytes) -> tuple[int, list[str]]:
        data = line.encode() if isinstance(line, str) else line
        await self.send(data + b"\r\n")
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass
