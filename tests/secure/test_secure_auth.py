"""AUTH ingress points on the real server: PLAIN/LOGIN, 535, TLS-only AUTH, implicit TLS, 530
before AUTH, SASL errors, throttling of failures, and swaks as a third-party client."""

from __future__ import annotations

import smtplib
import time

import pytest
from secure_support import (
    PASSWORD,
    SWAKS,
    Pki,
    b64,
    plain_auth,
    ports,
    run,
    send,
)

from tests.support import ServerProcess

USER = "inp-auth"


def _tls_session(server: ServerProcess, pki: Pki, source: str = "127.0.0.1") -> smtplib.SMTP:
    port, _ = ports(server, "auth")
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0))
    smtp.starttls(context=pki.client_context())
    smtp.ehlo("client.test")
    return smtp


def test_plain_and_login_succeed_and_the_password_is_never_logged(
    secure_server: ServerProcess, pki: Pki
) -> None:
    for mechanism in ("PLAIN", "LOGIN"):
        with _tls_session(secure_server, pki) as smtp:
            assert smtp.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
            smtp.user, smtp.password = USER, PASSWORD
            method = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
            assert smtp.auth(mechanism, method, initial_response_ok=mechanism == "PLAIN") == (
                235, b"2.7.0 Authentication successful")
            code, reply = send(smtp)
            assert code == 250, reply
        message_id = reply.decode().rsplit(" ", 1)[1]
        accepted = secure_server.wait_for("smtp.accepted", message_id=message_id)
        assert accepted["auth_user"] == USER and accepted["tls"] is True
        secure_server.wait_for("auth.succeeded", mechanism=mechanism)
    raw = "\n".join(secure_server.raw)
    assert PASSWORD not in raw and b64(PASSWORD) not in raw
    assert plain_auth(USER, PASSWORD) not in raw


def test_wrong_password_and_wrong_user_get_535(secure_server: ServerProcess, pki: Pki) -> None:
    with _tls_session(secure_server, pki, source="127.0.0.3") as smtp:
        assert smtp.docmd("AUTH PLAIN", plain_auth(USER, "Wrong-Password-1")) == (
            535, b"5.7.8 Authentication credentials invalid")
        assert smtp.docmd("AUTH PLAIN", plain_auth("inp-other", PASSWORD))[0] == 535
        # authzid other than the user is never allowed
        other = b64(f"inp-authopt\0{USER}\0{PASSWORD}")
        assert smtp.docmd("AUTH PLAIN", other)[0] == 535
        assert smtp.docmd("MAIL FROM:<a@b.test>") == (530, b"5.7.0 Authentication required")
    event = secure_server.wait_for("auth.failed", peer_ip="127.0.0.3")
    assert event["failures"] == 1 and event["mechanism"] == "PLAIN"


def test_auth_is_refused_before_starttls(secure_server: ServerProcess) -> None:
    required, _ = ports(secure_server, "auth")
    with smtplib.SMTP("127.0.0.1", required, timeout=10) as smtp:
        smtp.ehlo("c")
        assert "auth" not in smtp.esmtp_features and "starttls" in smtp.esmtp_features
        assert smtp.docmd("AUTH PLAIN", plain_auth(USER, PASSWORD)) == (
            530, b"5.7.0 Must issue a STARTTLS command first")
    optional, _ = ports(secure_server, "authopt")
    with smtplib.SMTP("127.0.0.1", optional, timeout=10) as smtp:
        smtp.ehlo("c")
        assert "auth" not in smtp.esmtp_features
        assert smtp.docmd("AUTH PLAIN", plain_auth("inp-authopt", PASSWORD)) == (
            538, b"5.7.11 Encryption required for requested authentication mechanism")
        assert smtp.docmd("MAIL FROM:<a@b.test>") == (530, b"5.7.0 Authentication required")


def test_mail_without_auth_gets_530(secure_server: ServerProcess, pki: Pki) -> None:
    with _tls_session(secure_server, pki) as smtp:
        assert smtp.docmd("MAIL FROM:<a@b.test>") == (530, b"5.7.0 Authentication required")
        assert smtp.docmd("RCPT TO:<b@x.test>")[0] == 503


def test_auth_on_implicit_tls(secure_server: ServerProcess, pki: Pki) -> None:
    _, wrapped = ports(secure_server, "auth")
    assert wrapped is not None
    with smtplib.SMTP_SSL("127.0.0.1", wrapped, timeout=10,
                          context=pki.client_context()) as smtp:
        smtp.ehlo("wrapped.test")
        assert "starttls" not in smtp.esmtp_features
        assert smtp.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        assert smtp.login(USER, PASSWORD)[0] == 235
        code, reply = send(smtp)
    assert code == 250
    accepted = secure_server.wait_for(
        "smtp.accepted", message_id=reply.decode().rsplit(" ", 1)[1]
    )
    assert accepted["tls_wrapped"] is True and accepted["auth_user"] == USER


def test_sasl_exchange_errors(secure_server: ServerProcess, pki: Pki) -> None:
    with _tls_session(secure_server, pki, source="127.0.0.4") as smtp:
        assert smtp.docmd("AUTH CRAM-MD5") == (504, b"5.5.4 Unrecognized authentication type")
        assert smtp.docmd("AUTH") == (501, b"5.5.4 Syntax: AUTH mechanism [initial-response]")
        assert smtp.docmd("AUTH PLAIN") == (334, b"")
        assert smtp.docmd("*") == (501, b"5.0.0 Authentication cancelled")
        assert smtp.docmd("AUTH PLAIN", "not base64!") == (501, b"5.5.2 Cannot decode response")
        assert smtp.docmd("AUTH LOGIN") == (334, b"VXNlcm5hbWU6")
        assert smtp.docmd(b64(USER)) == (334, b"UGFzc3dvcmQ6")
        assert smtp.docmd(b64(PASSWORD))[0] == 235
        assert smtp.docmd("AUTH PLAIN", plain_auth(USER, PASSWORD)) == (
            503, b"5.5.1 Already authenticated")
        assert send(smtp)[0] == 250


def test_repeated_failures_are_throttled(secure_server: ServerProcess, pki: Pki) -> None:
    source = "127.0.0.2"
    elapsed: list[float] = []
    with _tls_session(secure_server, pki, source=source) as smtp:
        for _ in range(4):
            start = time.monotonic()
            assert smtp.docmd("AUTH PLAIN", plain_auth(USER, "Wrong-1"))[0] == 535
            elapsed.append(time.monotonic() - start)
        assert smtp.docmd("AUTH PLAIN", plain_auth(USER, "Wrong-1")) == (
            421, b"4.7.0 Too many authentication failures, closing connection")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0.2 and elapsed[3] >= 1.5
    # Blocked: even the right password is not tried from that address now...
    with _tls_session(secure_server, pki, source=source) as smtp:
        assert smtp.docmd("AUTH PLAIN", plain_auth(USER, PASSWORD))[0] == 421
    # ...while other clients are not affected.
    with _tls_session(secure_server, pki, source="127.0.0.5") as smtp:
        assert smtp.docmd("AUTH PLAIN", plain_auth(USER, PASSWORD))[0] == 235
    counts = [e["failures"] for e in secure_server.events
              if e.get("event") == "auth.failed" and e.get("peer_ip") == source]
    assert counts == [1, 2, 3, 4, 5]
    secure_server.wait_for("auth.throttled", peer_ip=source)


@pytest.mark.skipif(SWAKS is None, reason="swaks is not installed")
def test_swaks_auth_starttls_and_implicit_tls(secure_server: ServerProcess, pki: Pki) -> None:
    assert SWAKS is not None
    port, wrapped = ports(secure_server, "auth")
    common = [SWAKS, "--server", "127.0.0.1", "--from", "a@sender.test", "--to", "b@x.test",
              "--auth-user", USER, "--timeout", "10", "--tls-verify",
              "--tls-ca-path", str(pki.server_ca), "--tls-sni", "localhost"]
    code, out = run(*common, "--auth-password", PASSWORD, "--port", str(port), "--tls",
                    "--auth", "PLAIN")
    assert code == 0, out
    assert "235 2.7.0 Authentication successful" in out and "Ok: queued as" in out
    code, out = run(*common, "--auth-password", PASSWORD, "--port", str(wrapped),
                    "--tls-on-connect", "--auth", "LOGIN")
    assert code == 0, out
    assert "334 UGFzc3dvcmQ6" in out and "Ok: queued as" in out
    code, out = run(*common, "--auth-password", "Wrong-2", "--port", str(port), "--tls",
                    "--auth", "PLAIN")
    assert code != 0 and "535 5.7.8" in out
