"""STARTTLS: TlsPolicy REQUIRED/OPTIONAL, TLS facts, protocol floor and command injection."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
import warnings
from pathlib import Path

import pytest
from ingress_support import Certs, Connect, Running, StartServer

from mailmgr.config.models import TlsCertificate, TlsPolicy
from mailmgr.errors import ConfigError
from mailmgr.ingress import IngressServer, server_context
from mailmgr.ingress.tls import MINIMUM_VERSION


def _recv_line(sock: socket.socket | ssl.SSLSocket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _recv_reply(sock: socket.socket | ssl.SSLSocket) -> bytes:
    lines = b""
    while True:
        line = _recv_line(sock)
        lines += line
        if line[3:4] != b"-":
            return lines


async def test_required_refuses_mail_before_starttls(
    start_server: StartServer, connect: Connect
) -> None:
    running = await start_server(tls_policy=TlsPolicy.REQUIRED)
    client = await connect(running.host, running.port)
    assert (await client.reply())[0] == 220
    assert (await client.command("EHLO c"))[0] == 250
    for line in ("MAIL FROM:<a@x>", "RCPT TO:<a@x>", "DATA", "HELO c", "VRFY a"):
        assert await client.command(line) == (530, ["5.7.0 Must issue a STARTTLS command first"])
    assert (await client.command("NOOP"))[0] == 250
    assert running.acceptor.calls == 0


async def test_required_accepts_after_starttls(start_server: StartServer, certs: Certs) -> None:
    running = await start_server(tls_policy=TlsPolicy.REQUIRED)

    def send() -> tuple[list[str], tuple[int, bytes]]:
        with smtplib.SMTP(running.host, running.port, local_hostname="tls.client") as smtp:
            smtp.starttls(context=certs.client_context())
            smtp.ehlo()
            features = list(smtp.esmtp_features)
            smtp.mail("a@x")
            smtp.rcpt("b@x")
            return features, smtp.data(b"Subject: tls\r\n\r\nsecret\r\n")

    features, (code, _) = await asyncio.to_thread(send)
    assert code == 250
    assert "starttls" not in features and "size" in features
    [accepted] = running.acceptor.accepted
    facts = accepted.session
    assert facts.tls and not facts.tls_wrapped
    assert facts.tls_protocol == "TLSv1.3"
    assert facts.tls_cipher and facts.tls_cipher.startswith("TLS_")
    assert facts.helo == "tls.client"
    assert accepted.content == b"Subject: tls\r\n\r\nsecret\r\n"


async def test_optional_accepts_plaintext_and_tls(start_server: StartServer, certs: Certs) -> None:
    running = await start_server(tls_policy=TlsPolicy.OPTIONAL)

    def send(tls: bool) -> None:
        with smtplib.SMTP(running.host, running.port) as smtp:
            if tls:
                smtp.starttls(context=certs.client_context())
            smtp.sendmail("a@x", ["b@x"], b"x\r\n")

    await asyncio.to_thread(send, False)
    await asyncio.to_thread(send, True)
    assert [a.session.tls for a in running.acceptor.accepted] == [False, True]


async def test_tls_12_session_reports_its_protocol(start_server: StartServer, certs: Certs) -> None:
    running = await start_server()
    context = certs.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2

    def send() -> None:
        with smtplib.SMTP(running.host, running.port) as smtp:
            smtp.starttls(context=context)
            smtp.sendmail("a@x", ["b@x"], b"x\r\n")

    await asyncio.to_thread(send)
    assert running.acceptor.accepted[0].session.tls_protocol == "TLSv1.2"


async def test_tls_below_12_is_refused(start_server: StartServer, certs: Certs) -> None:
    assert MINIMUM_VERSION is ssl.TLSVersion.TLSv1_2
    built = server_context(TlsCertificate(certs.cert_file, certs.key_file))
    assert built.minimum_version is ssl.TLSVersion.TLSv1_2
    running = await start_server()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(certs.ca_file))
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # offering TLS 1.1 on purpose
            context.minimum_version = ssl.TLSVersion.TLSv1_1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot offer TLS 1.1 at all")

    def handshake() -> None:
        with smtplib.SMTP(running.host, running.port, timeout=10) as smtp:
            smtp.starttls(context=context)

    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        await asyncio.to_thread(handshake)


async def test_starttls_injection_is_discarded(running: Running, certs: Certs) -> None:
    """`STARTTLS\\r\\nMAIL FROM:<a@b>\\r\\n` in one write: the MAIL is neither answered in
    plaintext nor executed inside the TLS session (CVE-2011-0411 class)."""

    def attack() -> tuple[bytes, bytes, bytes, bytes]:
        raw = socket.create_connection((running.host, running.port), timeout=5)
        try:
            _recv_reply(raw)
            raw.sendall(b"EHLO evil\r\n")
            _recv_reply(raw)
            raw.sendall(b"STARTTLS\r\nMAIL FROM:<a@b>\r\n")
            ready = _recv_reply(raw)
            raw.settimeout(0.3)
            try:
                leaked = raw.recv(4096, socket.MSG_PEEK)
            except TimeoutError:
                leaked = b""
            raw.settimeout(5)
            tls = certs.client_context().wrap_socket(raw, server_hostname="localhost")
            tls.sendall(b"EHLO evil\r\n")
            _recv_reply(tls)
            tls.sendall(b"RCPT TO:<c@d>\r\n")
            rcpt = _recv_reply(tls)
            tls.sendall(b"MAIL FROM:<x@y>\r\n")
            mail = _recv_reply(tls)
            tls.close()
            return ready, leaked, rcpt, mail
        finally:
            raw.close()

    ready, leaked, rcpt, mail = await asyncio.to_thread(attack)
    assert ready == b"220 2.0.0 Ready to start TLS\r\n"
    assert leaked == b""  # nothing answered the injected MAIL in plaintext
    assert rcpt.startswith(b"503 5.5.1")  # no sender inside TLS: the MAIL was not executed
    assert mail.startswith(b"250 2.1.0")
    assert running.acceptor.calls == 0


async def test_starttls_resets_session_state(running: Running, certs: Certs) -> None:
    def dialogue() -> tuple[int, int]:
        with smtplib.SMTP(running.host, running.port) as smtp:
            smtp.ehlo()
            smtp.mail("a@x")
            smtp.starttls(context=certs.client_context())
            # RFC 3207 §4.2: the server forgets everything, HELO name included.
            helo_needed = smtp.docmd("MAIL", "FROM:<a@x>")[0]
            smtp.ehlo()
            need_mail = smtp.docmd("RCPT", "TO:<b@x>")[0]
            return helo_needed, need_mail

    assert await asyncio.to_thread(dialogue) == (503, 503)


async def test_second_starttls_is_refused(running: Running, certs: Certs) -> None:
    def dialogue() -> tuple[int, bytes]:
        with smtplib.SMTP(running.host, running.port) as smtp:
            smtp.starttls(context=certs.client_context())
            smtp.ehlo()
            return smtp.docmd("STARTTLS")

    assert await asyncio.to_thread(dialogue) == (503, b"5.5.1 TLS already active")


async def test_failed_handshake_closes_only_that_connection(running: Running) -> None:
    def garbage() -> bytes:
        with socket.create_connection((running.host, running.port), timeout=5) as raw:
            _recv_reply(raw)
            raw.sendall(b"EHLO x\r\n")
            _recv_reply(raw)
            raw.sendall(b"STARTTLS\r\n")
            _recv_reply(raw)
            raw.sendall(b"this is not a TLS client hello\r\n" * 10)
            return raw.recv(4096)

    rest = await asyncio.to_thread(garbage)
    assert not rest.startswith(b"250")
    for _ in range(100):  # the half-open TLS session must not linger
        if not running.server.active_sessions:
            break
        await asyncio.sleep(0.01)
    assert running.server.active_sessions == 0

    def plain() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(running.host, running.port) as smtp:
            return smtp.sendmail("a@x", ["b@x"], b"ok\r\n")

    assert await asyncio.to_thread(plain) == {}


def test_server_context_rejects_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        server_context(TlsCertificate(tmp_path / "none.pem", tmp_path / "none.key"))
    assert "none.pem" in str(caught.value)


def test_required_without_certificate_is_refused() -> None:
    from ingress_support import DenyListPolicy, RecordingAcceptor, ingress_point

    with pytest.raises(ValueError):
        IngressServer(
            ingress_point(tls_policy=TlsPolicy.REQUIRED),
            hostname="h",
            max_message_size=None,
            acceptor=RecordingAcceptor(),
            recipient_policy=DenyListPolicy(),
            ssl_context=None,
        )
