"""Development certificates at start-up and reload: what makes the quick start run with TLS."""

from __future__ import annotations

import asyncio

from mailmgr import certs, logs
from mailmgr.config.models import Config


async def ensure_dev_certificates(config: Config) -> None:
    """A self-signed development certificate for every ingress point whose certificate and
    key files are both missing (the quick start needs no PKI); made in the default executor."""
    loop = asyncio.get_running_loop()
    for ingress in config.ingress_points:
        tls = ingress.tls_certificate
        if tls is None or tls.certificate_file.exists() or tls.private_key_file.exists():
            continue
        ca = await loop.run_in_executor(
            None,
            certs.create_dev_server_certificate,
            tls.certificate_file,
            tls.private_key_file,
            config.server.hostname,
        )
        logs.warning(
            "tls.dev_certificate_created",
            ingress_point=ingress.name,
            certificate=str(tls.certificate_file),
            ca=str(ca),
            note="self-signed development certificate; replace it for production",
        )
