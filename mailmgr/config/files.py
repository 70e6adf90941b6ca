"""Files a config refers to for TLS: certificate chains, private keys, CA bundles, and the
inline trust-store PEM. Checked at load time, so check-config, serve and SIGHUP reload refuse a
missing, unreadable, unparsable or mismatched file the same way, naming the file and JSON path.
Never puts key or CRL contents in a message.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from mailmgr.config.fields import Ctx, key_path
from mailmgr.config.models import TlsCertificate, TrustStore

# A certificate chain, key or CA bundle is a few KB; a public CA bundle is ~250 KB.
MAX_PEM_FILE_BYTES = 4 * 1024 * 1024
_CRL_BLOCK = re.compile(r"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def read_pem_file(ctx: Ctx, path: Path, where: str) -> bytes | None:
    """The bytes of a regular file of at most MAX_PEM_FILE_BYTES, or None with a problem at
    `where` ("cannot read PATH: REASON")."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        ctx.problem(where, f"cannot read {path}: {exc.strerror or exc}")
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            ctx.problem(where, f"cannot read {path}: {what}")
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(MAX_PEM_FILE_BYTES + 1)
    except OSError as exc:
        ctx.problem(where, f"cannot read {path}: {exc.strerror or exc}")
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_PEM_FILE_BYTES:
        ctx.problem(where, f"{path} is more than {MAX_PEM_FILE_BYTES:,} bytes")
        return None
    return data


def _certificates(
    ctx: Ctx, data: bytes, where: str, what: str
) -> list[x509.Certificate] | None:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        ctx.problem(where, f"{what} holds no readable PEM certificate "
                           "(-----BEGIN CERTIFICATE-----)")
        return None


def _private_key(ctx: Ctx, data: bytes, where: str, path: Path) -> PrivateKeyTypes | None:
    # The library's error texts are generic, but a key's bytes must never reach a message:
    # fixed texts only.
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        ctx.problem(where, f"{path} is an encrypted private key; mailmgr needs it unencrypted")
    except (ValueError, UnsupportedAlgorithm):
        ctx.problem(where, f"{path} holds no readable PEM private key "
                           "(-----BEGIN PRIVATE KEY-----)")
    return None


def check_certificate_files(
    ctx: Ctx, certificate: TlsCertificate, where: str, *, missing_ok: bool = False
) -> None:
    """Check a TlsCertificate at `where` (`$.IngressPoints[i].TlsCertificate`): both files
    readable, the first certificate of CertificateFile and PrivateKeyFile parse as PEM, and the
    key belongs to that certificate. With `missing_ok`, a pair of which neither file exists is
    accepted: `serve` creates a development certificate there on start."""
    cert_at = key_path(where, "CertificateFile")
    key_at = key_path(where, "PrivateKeyFile")
    cert_path, key_path_ = certificate.certificate_file, certificate.private_key_file
    if missing_ok and not os.path.lexists(cert_path) and not os.path.lexists(key_path_):
        return
    cert_data = read_pem_file(ctx, cert_path, cert_at)
    key_data = read_pem_file(ctx, key_path_, key_at)
    chain = None if cert_data is None else _certificates(ctx, cert_data, cert_at, str(cert_path))
    key = None if key_data is None else _private_key(ctx, key_data, key_at, key_path_)
    if not chain or key is None:
        return
    if chain[0].public_key().public_bytes(*_SPKI) != key.public_key().public_bytes(*_SPKI):
        ctx.problem(key_at, f"the private key in {key_path_} does not match the certificate "
                            f"in {cert_path} (subject {chain[0].subject.rfc4514_string()})")


def check_ca_file(ctx: Ctx, path: Path, where: str) -> None:
    """A CA bundle file (Relay `Tls.CaFile`): readable and at least one PEM certificate."""
    data = read_pem_file(ctx, path, where)
    if data is not None:
        _certificates(ctx, data, where, str(path))


def check_trust_store(
    ctx: Ctx, store: TrustStore, where: str, now: dt.datetime | None = None
) -> None:
    """An MTLS TrustStore at `where`: CAContent parses and holds an unexpired CA; every CRL
    block of CrlContent parses. (Which CRLs apply is decided when serving.)"""
    now = now or dt.datetime.now(dt.UTC)
    ca_at = key_path(where, "CAContent")
    cas = _certificates(ctx, store.ca_content.encode(), ca_at, "CAContent")
    if cas is not None and all(ca.not_valid_after_utc < now for ca in cas):
        ctx.problem(ca_at, "CAContent has no usable CA certificate (all are expired)")
    if not store.crl_content:
        return
    crl_at = key_path(where, "CrlContent")
    blocks = _CRL_BLOCK.findall(store.crl_content)
    if not blocks:
        ctx.problem(crl_at, "CrlContent holds no PEM CRL (-----BEGIN X509 CRL-----)")
    for n, block in enumerate(blocks, start=1):
        try:
            x509.load_pem_x509_crl(block.encode())
        except ValueError:
            ctx.problem(crl_at, f"CRL number {n} in CrlContent cannot be parsed")
