"""Server-side TLS contexts for ingress points, built from the TlsCertificate files.

Owns protocol floors and context options; must not touch sockets or sessions. Loading reads
files, so call it at start-up (or in an executor), never from a running session.
"""

from __future__ import annotations

import ssl

from mailmgr.config.models import TlsCertificate
from mailmgr.errors import ConfigError, ConfigProblem

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def server_context(
    certificate: TlsCertificate, *, where: str = "$.IngressPoints[].TlsCertificate"
) -> ssl.SSLContext:
    """A server context presenting `certificate`, TLS 1.2 or newer, no client certificate.

    Raises ConfigError (naming the file and `where`) when the files cannot be loaded.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    # Compression enables CRIME-style attacks; renegotiation is a DoS lever and unused by SMTP.
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
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
