"""MTLS ingress points on the real server: verified client certificates drive rules and logs;
missing, untrusted, expired and revoked certificates are refused; a CA without a CRL works."""

from __future__ import annotations

import smtplib
import ssl

import pytest
from secure_support import OPENSSL, Pair, Pki, ports, s_client, send

from tests.support import ServerProcess


def _send_with(server: ServerProcess, pki: Pki, client: Pair | None,
               wrapped: bool = False) -> tuple[int, bytes]:
    port, wrapped_port = ports(server, "mtls")
    context = pki.client_context(client)
    if wrapped:
        assert wrapped_port is not None
        with smtplib.SMTP_SSL("127.0.0.1", wrapped_port, timeout=10, context=context) as smtp:
            return send(smtp)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.starttls(context=context)
        return send(smtp)


def _message_id(reply: bytes) -> str:
    return reply.decode().rsplit(" ", 1)[1]


def _rules_run(server: ServerProcess, message_id: str) -> set[str]:
    server.wait_for("message.processed", message_id=message_id)
    return {e["rule_name"] for e in server.events
            if e.get("event") == "message.action" and e.get("message_id") == message_id}


@pytest.mark.parametrize("wrapped", [False, True], ids=["starttls", "implicit"])
def test_valid_certificate_attributes_reach_log_and_rules(
    secure_server: ServerProcess, pki: Pki, wrapped: bool
) -> None:
    code, reply = _send_with(secure_server, pki, pki.alice, wrapped=wrapped)
    assert code == 250, reply
    message_id = _message_id(reply)
    accepted = secure_server.wait_for("smtp.accepted", message_id=message_id)
    assert accepted["tls_wrapped"] is wrapped
    cert = accepted["client_certificate"]
    assert cert["common_names"] == ["alice.example"]
    assert cert["serial_number"] == "0A:DE:EB:89"
    assert cert["issuer"] == "CN=client CA one"
    assert cert["not_before"] and cert["not_after"]
    assert cert["subject_alternative_names"] == {
        "SAN_RFC822_NAME": ["alice@example.test"],
        "SAN_DNS_NAME": ["alice.example.test"],
        "SAN_DIRECTORY_NAME": ["CN=Alice,O=Example"],
        "SAN_UNIFORM_RESOURCE_IDENTIFIER": ["spiffe://example.test/alice"],
        "SAN_IP_ADDRESS": ["192.0.2.7", "2001:db8::7"],
        "SAN_REGISTERED_ID": ["1.3.6.1.4.1.99999.1"],
    }
    assert _rules_run(secure_server, message_id) == {"cert-cn", "cert-serial", "cert-ip"}


def test_certificate_from_a_second_ca_without_crl_is_accepted(
    secure_server: ServerProcess, pki: Pki
) -> None:
    code, reply = _send_with(secure_server, pki, pki.dave)
    assert code == 250, reply
    assert _rules_run(secure_server, _message_id(reply)) == {"cert-dave"}
    # Its only CRL had expired: dropped at load with a warning (it listed dave).
    secure_server.wait_for("tls.trust_store_crl_dropped", issuer="CN=client CA two",
                           reason="expired")
    secure_server.wait_for("tls.trust_store_ca_dropped", subject="CN=client CA expired")


def test_revoked_certificate_never_gets_250(secure_server: ServerProcess, pki: Pki) -> None:
    assert _send_with(secure_server, pki, pki.bob) == (
        530, b"5.7.0 Valid client certificate required")
    event = secure_server.wait_for("tls.session_refused", ingress_point="mtls")
    assert event["reason"] == "client certificate revoked by its CA's CRL"
    assert event["client_certificate"]["attributes"]["CN"] == ["bob.example"]


@pytest.mark.parametrize(("who", "reason"), [
    ("carol", "CERTIFICATE_VERIFY_FAILED"),  # expired
    ("eve", "CERTIFICATE_VERIFY_FAILED"),  # untrusted CA (same name as a trusted one)
    (None, "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
])
@pytest.mark.parametrize("wrapped", [False, True], ids=["starttls", "implicit"])
def test_handshake_refuses_bad_or_missing_certificates(
    secure_server: ServerProcess, pki: Pki, who: str | None, reason: str, wrapped: bool
) -> None:
    client = getattr(pki, who) if who else None
    before = sum(1 for e in secure_server.events if e.get("event") == "smtp.accepted")
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        _send_with(secure_server, pki, client, wrapped=wrapped)
    secure_server.wait_for("tls.handshake_failed", reason=reason, tls_wrapped=wrapped)
    after = sum(1 for e in secure_server.events if e.get("event") == "smtp.accepted")
    assert after == before


def test_plaintext_mail_on_mtls_point_is_refused(secure_server: ServerProcess) -> None:
    port, _ = ports(secure_server, "mtls")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("c")
        assert smtp.docmd("MAIL FROM:<a@b.test>") == (
            530, b"5.7.0 Must issue a STARTTLS command first")


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_openssl_s_client_with_client_certificates(secure_server: ServerProcess, pki: Pki) -> None:
    port, wrapped = ports(secure_server, "mtls")
    assert wrapped is not None
    commands = (b"EHLO openssl.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<b@x.test>\r\n"
                b"DATA\r\nSubject: s_client\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    for args in (("-starttls", "smtp"), ()):
        code, out = s_client(wrapped if not args else port, "-CAfile", str(pki.server_ca),
                             "-cert", str(pki.alice.cert), "-key", str(pki.alice.key),
                             starttls=bool(args), commands=commands)
        assert code == 0, out
        assert "250 2.0.0 Ok: queued as" in out and "221 2.0.0 Bye" in out
    code, out = s_client(port, "-CAfile", str(pki.server_ca), "-cert", str(pki.bob.cert),
                         "-key", str(pki.bob.key), commands=commands)
    assert "530 5.7.0 Valid client certificate required" in out
    assert "queued as" not in out
