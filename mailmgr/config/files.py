"""Checks of what a config refers to outside itself: server certificate and key files, relay
CA files, and the PEM content of mTLS trust stores. Each problem names the file and the exact
JSON path; the content of a key or CRL never appears in a problem.

Run at load time, so check-config, serve and SIGHUP reload refuse the same things the same way
(what the TLS loaders in ingress/ and smtpclient/ would refuse later).
"""

from __future__ import annotations

import datetime as dt
import re
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)

from mailmgr.config.documents import MIB, UnreadableFile, read_limited
from mailmgr.config.fields import Ctx, key_path
from mailmgr.config.models import TlsCertificate

# A certificate chain is a few KiB; a system CA bundle is ~250 KiB.
MAX_PEM_FILE_BYTES = 4 * MIB
_CRL_BLOCK = re.compile(r"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)


def read_file(ctx: Ctx, path: Path, where: str, limit: int = MAX_PEM_FILE_BYTES
              ) -> bytes | None:
    """The bytes of the regular file `path` (at most `limit`), or None with the reason reported
    at `where` (missing, a directory, FIFO or device, unreadable, too large). Never reads a FIFO
    or device, which would block or never end. The content never appears in a problem."""
    try:
        return read_limited(path, limit)
    except FileNotFoundError:
        ctx.problem(where, f"cannot read {path}: No such file or directory")
    except UnreadableFile as exc:
        ctx.problem(where, f"cannot read {path}: {exc}")
    return None


def _certificates(ctx: Ctx, data: bytes, path: Path, where: str) -> list[x509.Certificate]:
    """The PEM certificates in `data`; [] (with a problem) when there is none or one is bad."""
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        pass
    if b"-----BEGIN CERTIFICATE-----" in data:
        ctx.problem(where, f"{path} holds a PEM certificate that cannot be parsed")
        return []
    try:
        x509.load_der_x509_certificate(data)
        ctx.problem(where, f"{path} is a DER certificate; convert it to PEM "
                           "(openssl x509 -inform der)")
    except ValueError:
        ctx.problem(where, f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return []


def _private_key(ctx: Ctx, data: bytes, path: Path, where: str) -> PrivateKeyTypes | None:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's signal for "encrypted, and no password given"
        ctx.problem(where, f"{path} holds an encrypted private key; mailmgr needs it "
                           "unencrypted (protect it with file permissions)")
    except UnsupportedAlgorithm:
        ctx.problem(where, f"{path} holds a private key of an unsupported type")
    except ValueError:
        if b"PRIVATE KEY-----" in data:
            ctx.problem(where, f"{path} holds a PEM private key that cannot be parsed")
        else:
            ctx.problem(where, f"{path} holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
    return None


def _spki(key: CertificatePublicKeyTypes | PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def check_server_certificate(ctx: Ctx, where: str, certificate: TlsCertificate) -> None:
    """Problems for an ingress point's `TlsCertificate` at `where`: each file must exist, be
    readable and parse (a PEM certificate chain; an unencrypted PEM private key), the key must
    belong to the first certificate, and OpenSSL must accept the pair as serve will load it.

    When BOTH files are missing nothing is reported: serve creates a development certificate
    there (mailmgr.dev_certificates)."""
    cert_file, key_file = certificate.certificate_file, certificate.private_key_file
    if not cert_file.exists() and not key_file.exists():
        return
    cert_where = key_path(where, "CertificateFile")
    key_where = key_path(where, "PrivateKeyFile")
    cert_data = read_file(ctx, cert_file, cert_where)
    key_data = read_file(ctx, key_file, key_where)
    chain = _certificates(ctx, cert_data, cert_file, cert_where) if cert_data is not None else []
    key = _private_key(ctx, key_data, key_file, key_where) if key_data is not None else None
    if not chain or key is None:
        return
    try:
        matches = _spki(chain[0].public_key()) == _spki(key.public_key())
    except (ValueError, TypeError, AttributeError, UnsupportedAlgorithm):
        matches = False
    if not matches:
        ctx.problem(key_where, f"the private key in {key_file} does not belong to the "
                               f"certificate in {cert_file}")
        return
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # The password callback keeps OpenSSL from ever prompting on a terminal.
        context.load_cert_chain(cert_file, key_file, password=lambda: b"")
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or "refused"
        ctx.problem(where, f"OpenSSL cannot load {cert_file} with {key_file}: {reason}")


def check_ca_file(ctx: Ctx, where: str, path: Path) -> None:
    """Problems for a CA bundle file (a relay's `Tls.CaFile`) at `where`: it must exist, be
    readable, hold PEM certificates, and be accepted by OpenSSL as verify locations."""
    data = read_file(ctx, path, where)
    if data is None or not _certificates(ctx, data, path, where):
        return
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or "refused"
        ctx.problem(where, f"OpenSSL cannot load {path} as CA certificates: {reason}")


def check_trust_store(
    ctx: Ctx, where: str, ca_content: str, crl_content: str | None,
    now: dt.datetime | None = None,
) -> None:
    """Problems for an mTLS `TrustStore` at `where`, the ones ingress/truststore.py refuses at
    start: CAContent must hold PEM certificates, not all expired; every PEM CRL block in
    CrlContent must parse, and a non-empty CrlContent must hold one. (Expired CAs and CRLs are
    dropped with a warning when serve loads them, as AWS does; that is not a problem.)"""
    now = now or dt.datetime.now(dt.UTC)
    ca_where, crl_where = key_path(where, "CAContent"), key_path(where, "CrlContent")
    try:
        cas = x509.load_pem_x509_certificates(ca_content.encode())
    except ValueError:
        ctx.problem(ca_where, "CAContent is not a PEM certificate bundle "
                              "(-----BEGIN CERTIFICATE-----)")
        cas = None
    if cas is not None and all(ca.not_valid_after_utc < now for ca in cas):
        ctx.problem(ca_where, "CAContent has no usable CA certificate (all are expired)")
    if not crl_content:
        return
    blocks = _CRL_BLOCK.findall(crl_content)
    if not blocks:
        ctx.problem(crl_where, "CrlContent holds no PEM CRL (-----BEGIN X509 CRL-----)")
    for n, block in enumerate(blocks, start=1):
        try:
            x509.load_pem_x509_crl(block.encode())
        except ValueError:
            ctx.problem(crl_where, f"CrlContent: CRL number {n} cannot be parsed")
