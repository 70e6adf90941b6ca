"""Client-certificate attributes as rule conditions and logs see them (semantics.md §2).

Pure formatting of an X.509 certificate into `ClientCertificate`; shared by ingress (verified
peer certificates) and `mailmgr explain --cert`. Verification is not done here.
"""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.x509.oid import NameOID

from mailmgr.message import ClientCertificate


def format_serial(serial: int) -> str:
    """Upper-case hex bytes joined by colons, as AWS logs print serials: `0A:DE:EB:89`."""
    raw = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    return ":".join(f"{b:02X}" for b in raw)


def _ip_text(value: object) -> str:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value.compressed
    return str(value)  # IP networks (name constraints) keep their CIDR text


def certificate_attributes(cert: x509.Certificate) -> ClientCertificate:
    values: dict[str, list[str]] = {
        "CN": [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)],
        "SAN_RFC822_NAME": [],
        "SAN_DNS_NAME": [],
        "SAN_DIRECTORY_NAME": [],
        "SAN_UNIFORM_RESOURCE_IDENTIFIER": [],
        "SAN_IP_ADDRESS": [],
        "SAN_REGISTERED_ID": [],
        "SERIAL_NUMBER": [format_serial(cert.serial_number)],
    }
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        values["SAN_RFC822_NAME"] = list(san.get_values_for_type(x509.RFC822Name))
        values["SAN_DNS_NAME"] = list(san.get_values_for_type(x509.DNSName))
        values["SAN_DIRECTORY_NAME"] = [
            n.rfc4514_string() for n in san.get_values_for_type(x509.DirectoryName)
        ]
        values["SAN_UNIFORM_RESOURCE_IDENTIFIER"] = list(
            san.get_values_for_type(x509.UniformResourceIdentifier)
        )
        values["SAN_IP_ADDRESS"] = [_ip_text(v) for v in san.get_values_for_type(x509.IPAddress)]
        values["SAN_REGISTERED_ID"] = [
            oid.dotted_string for oid in san.get_values_for_type(x509.RegisteredID)
        ]
    return ClientCertificate(
        attributes=tuple((k, tuple(v)) for k, v in values.items() if v),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
    )


def certificate_from_pem(data: bytes) -> ClientCertificate:
    return certificate_attributes(x509.load_pem_x509_certificate(data))


def certificate_from_der(data: bytes) -> ClientCertificate:
    return certificate_attributes(x509.load_der_x509_certificate(data))
