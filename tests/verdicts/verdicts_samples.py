"""Keys and messages for the verdict tests: DKIM keys generated once per session and signing."""

from __future__ import annotations

import base64
from functools import cache

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.verdicts.dns_server import Zone


@cache
def rsa_key() -> tuple[bytes, str]:
    """(private PEM, DNS TXT record) of an RSA-2048 key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()


def message(from_: str = "Alice <alice@example.com>", to: str = "bob@rcpt.test",
            body: str = "Hello Bob.\r\n", extra: str = "") -> bytes:
    return (
        f"{extra}From: {from_}\r\nTo: {to}\r\nSubject: greetings\r\n"
        "Message-ID: <m1@example.com>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n" + body
    ).encode()


def sign(content: bytes, domain: str, selector: str = "sel",
         key: bytes | None = None) -> bytes:
    """`content` with an RSA-SHA256 DKIM-Signature for `domain` prepended."""
    private = key if key is not None else rsa_key()[0]
    header = dkim.sign(content, selector.encode(), domain.encode(), private,
                       include_headers=[b"from", b"to", b"subject"])
    return bytes(header) + content


def publish_key(zone: Zone, domain: str, selector: str = "sel") -> None:
    zone.txt(f"{selector}._domainkey.{domain}", rsa_key()[1])
