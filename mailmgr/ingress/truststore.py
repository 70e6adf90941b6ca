"""mTLS trust stores: the CA bundle and CRLs of `TlsAuthConfiguration.TrustStore`, checked once at
load, and the revocation check of one verified client certificate.

OpenSSL verifies chains and validity dates in the handshake; this module adds revocation per CA,
because OpenSSL's CRL flags would reject every CA that has no CRL. Never touches sockets.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from mailmgr import logs
from mailmgr.config.models import TrustStore
from mailmgr.errors import ConfigError, ConfigProblem

WHERE = "$.IngressPoints[].IngressPointConfiguration.TlsAuthConfiguration.TrustStore"
_CRL_BLOCK = re.compile(
    r"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL
)


@dataclass(frozen=True)
class Authority:
    """One usable CA and the (unexpired, signature-checked) CRLs it issued."""

    certificate: x509.Certificate
    crls: tuple[x509.CertificateRevocationList, ...] = ()


@dataclass(frozen=True)
class TrustAnchors:
    """The usable part of a trust store: what OpenSSL trusts, and what revokes."""

    authorities: tuple[Authority, ...]

    @property
    def ca_pem(self) -> str:
        """The usable CAs as one PEM bundle (for `SSLContext.load_verify_locations`)."""
        return "".join(
            a.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
            for a in self.authorities
        )

    def revoked(self, leaf: x509.Certificate) -> bool:
        """True when a CRL of the CA that directly issued `leaf` lists its serial.

        A CA without a CRL revokes nothing; a leaf issued by an intermediate that is not in
        the trust store is checked against nothing (the handshake already verified its chain).
        """
        for authority in self.authorities:
            if not authority.crls or authority.certificate.subject != leaf.issuer:
                continue
            if not _issued_by(leaf, authority.certificate):
                continue
            serial = leaf.serial_number
            if any(c.get_revoked_certificate_by_serial_number(serial) for c in authority.crls):
                return True
        return False


def _issued_by(child: x509.Certificate | x509.CertificateRevocationList,
               issuer: x509.Certificate) -> bool:
    try:
        if isinstance(child, x509.CertificateRevocationList):
            key = issuer.public_key()
            return child.is_signature_valid(key)  # type: ignore[arg-type]
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _problem(message: str, where: str) -> ConfigError:
    return ConfigError([ConfigProblem(file="TrustStore", path=where, message=message)])


def load_trust_store(
    store: TrustStore,
    *,
    ingress_point: str,
    where: str = WHERE,
    now: dt.datetime | None = None,
) -> TrustAnchors:
    """Parse and check `store`: expired CAs and expired, unmatched or badly signed CRLs are
    dropped with a warning (as AWS does). Raises ConfigError when the content cannot be parsed
    or no usable CA is left."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        cas = x509.load_pem_x509_certificates(store.ca_content.encode())
    except ValueError as error:
        raise _problem(f"CAContent is not a PEM certificate bundle ({error})",
                       f"{where}.CAContent") from error
    usable: list[x509.Certificate] = []
    for ca in cas:
        if ca.not_valid_after_utc < now:
            logs.warning(
                "tls.trust_store_ca_dropped", ingress_point=ingress_point,
                subject=ca.subject.rfc4514_string(), not_after=ca.not_valid_after_utc.isoformat(),
                reason="expired",
            )
            continue
        usable.append(ca)
    if not usable:
        raise _problem("CAContent has no usable CA certificate (all are expired)",
                       f"{where}.CAContent")
    crls: dict[int, list[x509.CertificateRevocationList]] = {i: [] for i in range(len(usable))}
    for block in _CRL_BLOCK.findall(store.crl_content or ""):
        try:
            crl = x509.load_pem_x509_crl(block.encode())
        except ValueError as error:
            raise _problem(f"CrlContent holds an unreadable CRL ({error})",
                           f"{where}.CrlContent") from error
        issuer = crl.issuer.rfc4514_string()
        next_update = crl.next_update_utc
        if next_update is not None and next_update < now:
            logs.warning("tls.trust_store_crl_dropped", ingress_point=ingress_point,
                         issuer=issuer, next_update=next_update.isoformat(), reason="expired")
            continue
        owners = [i for i, ca in enumerate(usable)
                  if ca.subject == crl.issuer and _issued_by(crl, ca)]
        if not owners:
            logs.warning("tls.trust_store_crl_dropped", ingress_point=ingress_point,
                         issuer=issuer, reason="no usable CA in CAContent signed it")
            continue
        for i in owners:
            crls[i].append(crl)
    if store.crl_content and not _CRL_BLOCK.search(store.crl_content):
        raise _problem("CrlContent holds no PEM CRL (-----BEGIN X509 CRL-----)",
                       f"{where}.CrlContent")
    return TrustAnchors(
        tuple(Authority(ca, tuple(crls[i])) for i, ca in enumerate(usable))
    )
