"""TLS policies on the real server: REQUIRED, OPTIONAL, FIPS suites (TLS 1.2 and 1.3), the
TLS 1.2 floor, STARTTLS command injection, and SIGHUP certificate reload."""

from __future__ import annotations

import signal
import smtplib
import socket
import ssl
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from secure_support import OPENSSL, Pki, ports, s_client, send

from mailmgr import certs
from tests.support import ServerProcess, basic_config

AES_GCM_13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"}


def _accepted(server: ServerProcess, reply: bytes) -> dict[str, object]:
    return server.wait_for("smtp.accepted", message_id=reply.decode().rsplit(" ", 1)[1])


def test_required_refuses_plaintext_mail(secure_server: ServerProcess) -> None:
    port, _ = ports(secure_server, "required")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        assert send(smtp) == (530, b"5.7.0 Must issue a STARTTLS command first")


def test_optional_accepts_plaintext(secure_server: ServerProcess) -> None:
    port, _ = ports(secure_server, "open")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        code, reply = send(smtp)
    assert code == 250
    assert _accepted(secure_server, reply)["tls"] is False


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_fips_negotiates_ecdhe_aes_gcm(
    secure_server: ServerProcess, pki: Pki, version: ssl.TLSVersion
) -> None:
    port, _ = ports(secure_server, "fips")
    context = pki.client_context()
    context.minimum_version = context.maximum_version = version
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.starttls(context=context)
        code, reply = send(smtp)
    assert code == 250
    cipher = str(_accepted(secure_server, reply)["tls_cipher"])
    if version is ssl.TLSVersion.TLSv1_3:
        assert cipher in AES_GCM_13
    else:
        assert cipher.startswith("ECDHE-") and "-GCM-" in cipher


def test_fips_refuses_chacha20_only_tls12_client(secure_server: ServerProcess, pki: Pki) -> None:
    port, _ = ports(secure_server, "fips")
    context = pki.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+CHACHA20")
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.starttls(context=context)
            send(smtp)
    secure_server.wait_for("tls.handshake_failed", ingress_point="fips")


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_fips_refuses_chacha20_only_tls13_client(secure_server: ServerProcess, pki: Pki) -> None:
    port, _ = ports(secure_server, "fips")
    _, out = s_client(port, "-CAfile", str(pki.server_ca), "-tls1_3",
                      "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256")
    assert "250 2.1.0" not in out
    # The server offers only the AES-GCM TLS 1.3 suites, so there is no shared suite at all.
    secure_server.wait_for("tls.handshake_failed", ingress_point="fips")
    # A client that also offers an AES-GCM suite gets it, whatever its order and key size.
    for suites in ("TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384",
                   "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"):
        _, out = s_client(port, "-CAfile", str(pki.server_ca), "-tls1_3",
                          "-ciphersuites", suites, commands=MESSAGE_COMMANDS)
        assert "250 2.0.0 Ok: queued as" in out, out
    secure_server.wait_for("smtp.accepted", ingress_point="fips",
                           tls_cipher="TLS_AES_128_GCM_SHA256")


MESSAGE_COMMANDS = (b"EHLO c\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<b@example.test>\r\n"
                    b"DATA\r\nSubject: fips\r\n\r\nhi\r\n.\r\nQUIT\r\n")


def test_fips_refuses_tls_11_client(secure_server: ServerProcess, pki: Pki) -> None:
    port, _ = ports(secure_server, "fips")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(pki.server_ca))
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # offering TLS 1.1 on purpose
            context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot offer TLS 1.1 at all")
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.starttls(context=context)


def _reply(sock: socket.socket | ssl.SSLSocket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n") or data.rsplit(b"\r\n", 2)[-2][3:4] == b"-":
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_starttls_command_injection_is_not_executed(
    secure_server: ServerProcess, pki: Pki
) -> None:
    port, _ = ports(secure_server, "required")
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        _reply(raw)
        raw.sendall(b"EHLO evil\r\n")
        _reply(raw)
        raw.sendall(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
        assert _reply(raw).startswith(b"220 2.0.0")
        tls = pki.client_context().wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"EHLO evil\r\n")
        _reply(tls)
        tls.sendall(b"RCPT TO:<c@x.test>\r\n")
        assert _reply(tls).startswith(b"503 5.5.1 Need MAIL command")
        tls.sendall(b"QUIT\r\n")
        _reply(tls)
        tls.close()
    finally:
        raw.close()


def _server_serial(port: int, pki_ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(pki_ca))
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.starttls(context=context)
        assert isinstance(smtp.sock, ssl.SSLSocket)
        der = smtp.sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_sighup_replaces_the_certificate_for_new_sessions_only(
    tmp_path: Path, server_factory, pki: Pki  # type: ignore[no-untyped-def]
) -> None:
    config = basic_config(tmp_path)
    point = config["IngressPoints"][0]
    point["TlsWrappedListen"] = ["127.0.0.1:0"]
    cert_file = Path(point["TlsCertificate"]["CertificateFile"])
    key_file = Path(point["TlsCertificate"]["PrivateKeyFile"])
    server: ServerProcess = server_factory(config).start()
    ca = cert_file.parent / "ca.pem"
    old_serial = _server_serial(server.port, ca)
    # An open session, inside TLS, in the middle of a transaction.
    open_session = smtplib.SMTP("127.0.0.1", server.port, timeout=10)
    open_session.starttls(context=ssl.create_default_context(cafile=str(ca)))
    open_session.ehlo("open.test")
    assert open_session.mail("a@sender.test")[0] == 250
    fresh = certs.make_server(certs.load_or_create_ca(cert_file.parent), "localhost")
    key_file.write_bytes(certs.key_pem(fresh.key))
    cert_file.write_bytes(certs.cert_pem(fresh.certificate))
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for("tls.reloaded", ingress_point="inbound")
    new_serial = _server_serial(server.port, ca)
    assert new_serial == fresh.certificate.serial_number != old_serial
    wrapped = [a for a in server.wait_for("ingress.listening")["tls_wrapped_addresses"]]
    wrapped_port = int(wrapped[0].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", wrapped_port), timeout=10) as raw:
        context = ssl.create_default_context(cafile=str(ca))
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
            assert der and x509.load_der_x509_certificate(der).serial_number == new_serial
    assert open_session.rcpt("b@x.test")[0] == 250
    assert open_session.data(b"Subject: still open\r\n\r\nx\r\n")[0] == 250
    open_session.quit()
