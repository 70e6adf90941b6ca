"""Development certificates for smoke tests: dev CAs, server and client certificates, CRLs.

Owns key and certificate generation with `cryptography`; never used for anything but dev and
tests (keys are unencrypted, written 0600). `mailmgr certs ...` and the first `serve` call it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=825)


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_ca(
    common_name: str = "mailmgr dev CA",
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or _now() - dt.timedelta(minutes=5))
        .not_valid_after(not_after or _now() + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def make_server(ca: Issued, hostname: str) -> Issued:
    key = _key()
    names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname != "localhost":
        names.append(x509.DNSName("localhost"))
    names += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(cert, key)


_SAN_TYPES: dict[str, Callable[[str], x509.GeneralName]] = {
    "email": x509.RFC822Name,
    "dns": x509.DNSName,
    "uri": x509.UniformResourceIdentifier,
}


def parse_san(text: str) -> x509.GeneralName:
    """`email:a@b`, `dns:host`, `uri:spiffe://x`, `ip:192.0.2.1`, `dirname:CN=x,O=y` (RFC 4514)
    or `rid:1.2.3.4`: one subject alternative name. Raises ValueError."""
    kind, sep, value = text.partition(":")
    kind = kind.strip().lower()
    if not sep or not value:
        raise ValueError(f"SAN {text!r}: expected TYPE:VALUE (email, dns, uri, ip, dirname, rid)")
    if kind in _SAN_TYPES:
        return _SAN_TYPES[kind](value)
    if kind == "ip":
        return x509.IPAddress(ipaddress.ip_address(value))
    if kind == "dirname":
        return x509.DirectoryName(x509.Name.from_rfc4514_string(value))
    if kind == "rid":
        return x509.RegisteredID(x509.ObjectIdentifier(value))
    raise ValueError(f"SAN {text!r}: unknown type {kind!r} (email, dns, uri, ip, dirname, rid)")


def make_client(
    ca: Issued,
    common_name: str,
    sans: Sequence[x509.GeneralName] = (),
    *,
    serial: int | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    """A client certificate (clientAuth) with `common_name`, `sans` and `serial`."""
    key = _key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before or _now() - dt.timedelta(minutes=5))
        .not_valid_after(not_after or _now() + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def make_crl(
    ca: Issued,
    revoked_serials: Iterable[int] = (),
    *,
    last_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL signed by `ca` listing `revoked_serials` (valid 30 days unless told)."""
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(last_update or now - dt.timedelta(minutes=5))
        .next_update(next_update or now + dt.timedelta(days=30))
    )
    for serial in sorted(set(revoked_serials)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - dt.timedelta(minutes=1))
            .build()
        )
    return builder.sign(ca.key, hashes.SHA256())


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_or_create_ca(directory: Path, common_name: str = "mailmgr dev CA") -> Issued:
    cert_file, key_file = directory / "ca.pem", directory / "ca.key"
    if cert_file.exists() and key_file.exists():
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return Issued(cert, key)
    ca = make_ca(common_name)
    _write(cert_file, cert_pem(ca.certificate), private=False)
    _write(key_file, key_pem(ca.key), private=True)
    return ca


def create_dev_server_certificate(
    certificate_file: Path, private_key_file: Path, hostname: str
) -> Path:
    """Write a server certificate (leaf + CA chain) and key; the dev CA lives beside them.

    Returns the CA file clients can trust (`swaks --tls-ca-path`, `openssl s_client -CAfile`).
    """
    ca = load_or_create_ca(certificate_file.parent)
    server = make_server(ca, hostname)
    _write(
        certificate_file,
        cert_pem(server.certificate) + cert_pem(ca.certificate),
        private=False,
    )
    _write(private_key_file, key_pem(server.key), private=True)
    return certificate_file.parent / "ca.pem"


def create_client_certificate(
    directory: Path,
    name: str,
    common_name: str,
    sans: Sequence[x509.GeneralName] = (),
    *,
    serial: int | None = None,
    days: int | None = None,
    expired: bool = False,
) -> Issued:
    """Write `<name>.pem` (leaf + CA) and `<name>.key`, signed by the CA in `directory`
    (created when missing). `expired` makes a certificate that ended yesterday."""
    ca = load_or_create_ca(directory)
    now = _now()
    if expired:
        window = (now - dt.timedelta(days=30), now - dt.timedelta(days=1))
    else:
        window = (now - dt.timedelta(minutes=5), now + dt.timedelta(days=days or 825))
    client = make_client(
        ca, common_name, sans, serial=serial, not_before=window[0], not_after=window[1]
    )
    _write(directory / f"{name}.pem", cert_pem(client.certificate) + cert_pem(ca.certificate),
           private=False)
    _write(directory / f"{name}.key", key_pem(client.key), private=True)
    return client


def revoke(directory: Path, serials: Iterable[int], *, days: int = 30) -> Path:
    """Add `serials` to `directory/crl.pem` (signed by the CA there), keeping earlier entries;
    returns the CRL's path."""
    ca = load_or_create_ca(directory)
    path = directory / "crl.pem"
    known: set[int] = set(serials)
    if path.exists():
        old = x509.load_pem_x509_crl(path.read_bytes())
        known.update(r.serial_number for r in old)
    crl = make_crl(ca, known, next_update=_now() + dt.timedelta(days=days))
    _write(path, crl_pem(crl), private=False)
    return path


def trust_store_yaml(directories: Sequence[Path]) -> str:
    """`IngressPointConfiguration` for an MTLS point trusting the CAs in `directories`, with
    the CRLs found beside them (`crl.pem`)."""
    cas = b"".join((d / "ca.pem").read_bytes() for d in directories)
    crls = b"".join((d / "crl.pem").read_bytes() for d in directories if (d / "crl.pem").exists())

    def block(data: bytes) -> str:
        return "".join(f"        {line}\n" for line in data.decode("ascii").splitlines())

    text = "IngressPointConfiguration:\n  TlsAuthConfiguration:\n    TrustStore:\n"
    text += "      CAContent: |\n" + block(cas)
    if crls:
        text += "      CrlContent: |\n" + block(crls)
    return text
