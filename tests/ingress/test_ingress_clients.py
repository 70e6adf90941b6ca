"""Smoke tests with real third-party clients: swaks and `openssl s_client -starttls smtp`."""

from __future__ import annotations

import asyncio
import re
import shutil

import pytest
from ingress_support import HOSTNAME, Certs, Running, StartServer

from mailmgr.config.models import TlsPolicy

SWAKS = shutil.which("swaks")
OPENSSL = shutil.which("openssl")
needs_swaks = pytest.mark.skipif(
    SWAKS is None,
    reason="swaks is not installed (apt-get install swaks libnet-ssleay-perl "
    "libio-socket-ssl-perl libauthen-sasl-perl)",
)
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl CLI is not installed")
QUEUED = re.compile(r"250 2\.0\.0 Ok: queued as ([0-9a-z]+)")


async def _run(*args: str, stdin: bytes = b"") -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(stdin), 30)
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8", "replace")


def _swaks(running: Running, *extra: str) -> tuple[str, ...]:
    assert SWAKS is not None
    return (
        SWAKS,
        "--server",
        running.host,
        "--port",
        str(running.port),
        "--from",
        "sender@swaks.test",
        "--to",
        "rcpt@x.test,other@x.test",
        "--helo",
        "swaks.test",
        "--timeout",
        "10",
        *extra,
    )


@needs_swaks
async def test_swaks_plaintext_pipelined(running: Running) -> None:
    body = "Subject: swaks\n\n.leading dot\nplain line"  # swaks adds the final CRLF
    code, out = await _run(*_swaks(running, "--pipeline", "--data", body))
    assert code == 0, out
    [message_id] = QUEUED.findall(out)
    [accepted] = running.acceptor.accepted
    assert accepted.message_id == message_id
    assert accepted.envelope.rcpt_to == ("rcpt@x.test", "other@x.test")
    assert accepted.content == b"Subject: swaks\r\n\r\n.leading dot\r\nplain line\r\n"
    assert accepted.session.helo == "swaks.test"
    assert f"220 {HOSTNAME} ESMTP" in out


@needs_swaks
async def test_swaks_starttls_on_required_point(start_server: StartServer, certs: Certs) -> None:
    running = await start_server(tls_policy=TlsPolicy.REQUIRED)
    code, out = await _run(*_swaks(running, "--quit-after", "MAIL"))
    assert code != 0
    assert "530 5.7.0 Must issue a STARTTLS command first" in out
    code, out = await _run(
        *_swaks(
            running,
            "-tls",
            "--tls-verify",
            "--tls-ca-path",
            str(certs.ca_file),
            "--tls-sni",
            "localhost",
            "--body",
            "over TLS",
        )
    )
    assert code == 0, out
    [message_id] = QUEUED.findall(out)
    [accepted] = running.acceptor.accepted
    assert accepted.message_id == message_id
    assert accepted.session.tls and accepted.session.tls_protocol in ("TLSv1.2", "TLSv1.3")


@needs_swaks
async def test_swaks_size_limit(start_server: StartServer) -> None:
    running = await start_server(max_message_size=2000)
    code, out = await _run(*_swaks(running, "--body", "x" * 5000))
    assert code != 0
    assert "552 5.3.4 Message size exceeds fixed maximum message size" in out
    assert running.acceptor.calls == 0


@needs_openssl
async def test_openssl_s_client_starttls(start_server: StartServer, certs: Certs) -> None:
    running = await start_server(tls_policy=TlsPolicy.REQUIRED)
    assert OPENSSL is not None
    dialogue = (
        b"EHLO openssl.test\r\n"
        b"MAIL FROM:<a@x.test>\r\n"
        b"RCPT TO:<b@x.test>\r\n"
        b"DATA\r\n"
        b"Subject: s_client\r\n\r\n..dot\r\nbody\r\n.\r\n"
        b"QUIT\r\n"
    )
    code, out = await _run(
        OPENSSL,
        "s_client",
        "-starttls",
        "smtp",
        "-quiet",
        "-verify_return_error",
        "-CAfile",
        str(certs.ca_file),
        "-verify_hostname",
        "localhost",
        "-connect",
        f"{running.host}:{running.port}",
        stdin=dialogue,
    )
    assert code == 0, out
    [message_id] = QUEUED.findall(out)
    [accepted] = running.acceptor.accepted
    assert accepted.message_id == message_id
    assert accepted.content == b"Subject: s_client\r\n\r\n.dot\r\nbody\r\n"
    assert accepted.session.tls and accepted.session.helo == "openssl.test"
    assert "221 2.0.0 Bye" in out


@needs_openssl
async def test_openssl_refuses_tls_11(running: Running) -> None:
    assert OPENSSL is not None
    code, out = await _run(
        OPENSSL,
        "s_client",
        "-starttls",
        "smtp",
        "-tls1_1",
        "-cipher",
        "DEFAULT:@SECLEVEL=0",
        "-connect",
        f"{running.host}:{running.port}",
        stdin=b"QUIT\r\n",
    )
    assert code != 0
    assert "Cipher is (NONE)" in out or "alert" in out.lower() or "error" in out.lower()
