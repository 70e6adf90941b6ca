"""Server-side TLS for ingress points: contexts from the TlsCertificate files (TLS 1.2 floor,
FIPS suites, mTLS verification) and the checks of a session right after its handshake.

Owns protocol floors, suites and peer checks; must not touch sockets or sessions. Loading reads
files, so call it at start-up (or in an executor), never from a running session.
"""

from __future__ import annotations

import ctypes
import ssl
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509

from mailmgr.certinfo import certificate_attributes
from mailmgr.config.models import TlsCertificate
from mailmgr.errors import ConfigError, ConfigProblem
from mailmgr.ingress.truststore import TrustAnchors
from mailmgr.message import ClientCertificate

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
# FIPS (semantics.md §2): ECDHE key exchange with AES-GCM only; no ChaCha20, CBC or SHA-1 MACs.
FIPS_TLS12_CIPHERS = "ECDHE+AESGCM:!aNULL:!eNULL"
# TLS 1.3 suites cannot be set through Python 3.11's ssl module (no set_ciphersuites;
# set_ciphers only affects TLS <= 1.2), so `_restrict_tls13_suites` calls OpenSSL's
# SSL_CTX_set_ciphersuites itself and verifies the result with get_ciphers(). Should that ever
# be unavailable, a FIPS session that negotiated another TLS 1.3 suite is still refused right
# after the handshake (see `check_session`).
FIPS_TLS13_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"})


def _restrict_tls13_suites(context: ssl.SSLContext) -> bool:
    """Offer only the FIPS TLS 1.3 suites, so a client offering ChaCha20 and AES-GCM gets
    AES-GCM instead of a refused session. Returns whether the restriction is in effect.

    The SSL_CTX pointer is the first field after the object header of CPython's PySSLContext
    (stable since 3.x); the call goes to the libssl that `_ssl` itself is linked against. The
    outcome is checked through the public get_ciphers(), so a layout change can only make this
    a no-op, never a wrong configuration.
    """
    try:
        lib = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined]
        set_suites = lib.SSL_CTX_set_ciphersuites
        set_suites.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        set_suites.restype = ctypes.c_int
        pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
        if not pointer:
            return False
        set_suites(pointer, ":".join(sorted(FIPS_TLS13_SUITES, reverse=True)).encode())
    except (OSError, AttributeError, ValueError):
        return False
    offered = {c["name"] for c in context.get_ciphers() if c.get("protocol") == "TLSv1.3"}
    return bool(offered) and offered <= FIPS_TLS13_SUITES


def server_context(
    certificate: TlsCertificate,
    *,
    fips: bool = False,
    trust: TrustAnchors | None = None,
    where: str = "$.IngressPoints[].TlsCertificate",
) -> ssl.SSLContext:
    """A server context presenting `certificate`, TLS 1.2 or newer.

    `fips` restricts TLS 1.2 suites to ECDHE with AES-GCM (TLS 1.3 suites are checked per
    session); `trust` (an MTLS ingress point) makes a client certificate chaining to one of its
    CAs mandatory in the handshake. Raises ConfigError (naming the file and `where`) when the
    files cannot be loaded.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    # Compression enables CRIME-style attacks; renegotiation is a DoS lever and unused by SMTP.
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if fips:
        context.set_ciphers(FIPS_TLS12_CIPHERS)
        # X25519 is not a FIPS-approved group; this also limits TLS 1.3 key shares to P-256.
        context.set_ecdh_curve("prime256v1")
        _restrict_tls13_suites(context)
    if trust is not None:
        # CERT_REQUIRED: no certificate, an unknown CA or an expired certificate fail the
        # handshake. Revocation is checked per CA after it (`check_session`), because
        # VERIFY_CRL_CHECK_LEAF would reject every CA without a CRL.
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=trust.ca_pem)
    try:
        context.load_cert_chain(
            certfile=str(certificate.certificate_file),
            keyfile=str(certificate.private_key_file),
        )
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or "invalid"
        raise ConfigError(
            [
                ConfigProblem(
                    file=str(certificate.certificate_file),
                    path=where,
                    message=f"cannot load certificate or private key: {reason}",
                )
            ]
        ) from error
    return context


class Refusal(StrEnum):
    """Why a session that completed its handshake may not go on."""

    FIPS_CIPHER = "cipher suite not allowed by TlsPolicy FIPS"
    NO_CERTIFICATE = "no client certificate"
    REVOKED = "client certificate revoked by its CA's CRL"
    UNREADABLE = "client certificate cannot be parsed"


@dataclass(frozen=True, slots=True)
class SessionTls:
    """What one handshake established: protocol, suite, and the verified client certificate."""

    protocol: str | None
    cipher: str | None
    client_certificate: ClientCertificate | None = None
    refusal: Refusal | None = None


def check_session(
    ssl_object: ssl.SSLObject, *, fips: bool, trust: TrustAnchors | None
) -> SessionTls:
    """Facts and policy checks of a finished handshake: the FIPS TLS 1.3 suite, and for mTLS
    the client certificate's revocation; its attributes are read with cryptography."""
    cipher = ssl_object.cipher()
    name = cipher[0] if cipher else None
    protocol = ssl_object.version()
    if fips and protocol == "TLSv1.3" and name not in FIPS_TLS13_SUITES:
        return SessionTls(protocol, name, refusal=Refusal.FIPS_CIPHER)
    if trust is None:
        return SessionTls(protocol, name)
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return SessionTls(protocol, name, refusal=Refusal.NO_CERTIFICATE)
    try:
        leaf = x509.load_der_x509_certificate(der)
        attributes = certificate_attributes(leaf)
    except ValueError:
        return SessionTls(protocol, name, refusal=Refusal.UNREADABLE)
    if trust.revoked(leaf):
        return SessionTls(protocol, name, attributes, Refusal.REVOKED)
    return SessionTls(protocol, name, attributes)
