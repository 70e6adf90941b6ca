"""SMTP dialogue rules: EHLO keywords, limits, RFC 5321 error replies, listeners and shutdown."""

from __future__ import annotations

import asyncio
import smtplib
import socket

import pytest
from ingress_support import HOSTNAME, Connect, RawClient, Running, StartServer

from mailmgr.config.models import IngressPointStatus, ListenAddress


async def _ehlo(client: RawClient) -> list[str]:
    assert (await client.reply())[0] == 220
    code, lines = await client.command("EHLO client.test")
    assert code == 250
    return lines


async def test_ehlo_keywords_with_tls_possible(running: Running, connect: Connect) -> None:
    client = await connect(running.host, running.port)
    lines = await _ehlo(client)
    assert lines == [
        HOSTNAME,
        "SIZE 41943040",
        "8BITMIME",
        "SMTPUTF8",
        "PIPELINING",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
    ]
    assert not any(line.startswith("AUTH") for line in lines)


async def test_ehlo_without_certificate_offers_no_starttls(
    start_server: StartServer, connect: Connect
) -> None:
    running = await start_server(tls=False, max_message_size=1000)
    client = await connect(running.host, running.port)
    lines = await _ehlo(client)
    assert "STARTTLS" not in lines and "SIZE 1000" in lines
    assert await client.command("STARTTLS") == (454, ["4.7.0 TLS not available"])


async def test_size_limit_is_policy_or_40mb_whichever_smaller(
    start_server: StartServer, connect: Connect
) -> None:
    running = await start_server(max_message_size=100 * 1024 * 1024)
    assert running.server.max_message_size == 41943040
    running = await start_server(max_message_size=5000)
    client = await connect(running.host, running.port)
    assert "SIZE 5000" in await _ehlo(client)


async def test_helo_session(running: Running, connect: Connect) -> None:
    client = await connect(running.host, running.port)
    assert (await client.reply())[0] == 220
    assert await client.command("HELO old.client") == (250, [HOSTNAME])
    # Without EHLO there are no ESMTP parameters.
    assert (await client.command("MAIL FROM:<a@x> SIZE=10"))[0] == 501
    assert (await client.command("MAIL FROM:<a@x>"))[0] == 250


@pytest.mark.parametrize(
    ("line", "code", "enhanced"),
    [
        ("MAIL FROM:<a@x>", 503, "5.5.1"),  # before EHLO
        ("FOO bar", 500, "5.5.1"),
        ("", 500, "5.5.2"),
        ("EHLO", 501, "5.5.4"),
        ("HELO", 501, "5.5.4"),
        ("QUIT now", 501, "5.5.4"),
        ("VRFY", 501, "5.5.4"),
        ("VRFY someone", 252, "2.5.0"),
        ("EXPN list", 502, "5.5.1"),
        ("NOOP", 250, "2.0.0"),
        ("HELP", 214, "2.0.0"),
        ("AUTH PLAIN", 503, "5.5.1"),
        ("X" * 600, 500, "5.5.2"),
    ],
)
async def test_replies_before_ehlo(
    running: Running, connect: Connect, line: str, code: int, enhanced: str
) -> None:
    client = await connect(running.host, running.port)
    assert (await client.reply())[0] == 220
    got_code, [text] = await client.command(line)
    assert (got_code, text.split()[0]) == (code, enhanced)


@pytest.mark.parametrize(
    ("lines", "code", "enhanced"),
    [
        (["MAIL TO:<a@x>"], 501, "5.5.4"),
        (["MAIL FROM:"], 501, "5.1.7"),
        (["MAIL FROM:<a@x> SIZE"], 501, "5.5.4"),
        (["MAIL FROM:<a@x> SIZE=abc"], 501, "5.5.4"),
        (["MAIL FROM:<a@x> BODY=BINARYMIME"], 501, "5.5.4"),
        (["MAIL FROM:<a@x> SMTPUTF8=yes"], 501, "5.5.4"),
        (["MAIL FROM:<a@x> FOO=bar"], 555, "5.5.4"),
        (["MAIL FROM:<a@x> =x"], 501, "5.5.4"),
        (["MAIL FROM:<a@x>", "MAIL FROM:<b@x>"], 503, "5.5.1"),
        (["RCPT TO:<a@x>"], 503, "5.5.1"),  # RCPT before MAIL
        (["MAIL FROM:<a@x>", "RCPT <a@x>"], 501, "5.5.4"),
        (["MAIL FROM:<a@x>", "RCPT TO:<>"], 501, "5.1.3"),
        (["MAIL FROM:<a@x>", "RCPT TO:<a@x> NOTIFY=NEVER"], 555, "5.5.4"),
        (["DATA"], 503, "5.5.1"),  # DATA before MAIL
        (["MAIL FROM:<a@x>", "DATA"], 503, "5.5.1"),  # DATA before RCPT
        (["MAIL FROM:<a@x>", "RCPT TO:<b@x>", "DATA now"], 501, "5.5.4"),
        (["RSET x"], 501, "5.5.4"),
        (["STARTTLS now"], 501, "5.5.4"),
        (["MAIL FROM:<a@x> SIZE=99999999999"], 552, "5.3.4"),
        (["MAIL FROM:<\xff@x>"], 501, "5.5.2"),
        (["\xe9HLO x"], 500, "5.5.2"),
    ],
)
async def test_rfc5321_error_replies(
    running: Running, connect: Connect, lines: list[str], code: int, enhanced: str
) -> None:
    client = await connect(running.host, running.port)
    await _ehlo(client)
    for line in lines[:-1]:
        assert (await client.command(line))[0] == 250
    got_code, [text] = await client.command(lines[-1].encode("latin-1"))
    assert (got_code, text.split()[0]) == (code, enhanced)
    # The session survives every error.
    assert (await client.command("NOOP"))[0] == 250


async def test_size_parameter_above_limit_refused_at_mail(
    start_server: StartServer, connect: Connect
) -> None:
    running = await start_server(max_message_size=1000)
    client = await connect(running.host, running.port)
    await _ehlo(client)
    assert await client.command("MAIL FROM:<a@x> SIZE=1001") == (
        552,
        ["5.3.4 Message size exceeds fixed maximum message size"],
    )
    assert (await client.command("MAIL FROM:<a@x> SIZE=1000"))[0] == 250


async def test_body_above_limit_refused_at_end_of_data(
    start_server: StartServer, connect: Connect
) -> None:
    running = await start_server(max_message_size=1000)
    client = await connect(running.host, running.port)
    await _ehlo(client)
    for line in ("MAIL FROM:<a@x>", "RCPT TO:<b@x>"):
        assert (await client.command(line))[0] == 250
    assert (await client.command("DATA"))[0] == 354
    await client.send(b"y" * 998 + b"\r\n" + b"z" * 200_000 + b"\r\n.\r\n")
    assert await client.reply() == (
        552,
        ["5.3.4 Message size exceeds fixed maximum message size"],
    )
    assert running.acceptor.calls == 0
    # Exactly at the limit (after unstuffing) is accepted, and the session goes on.
    for line in ("MAIL FROM:<a@x>", "RCPT TO:<b@x>"):
        assert (await client.command(line))[0] == 250
    assert (await client.command("DATA"))[0] == 354
    body = b"..\r\n" * 200 + b"x" * 398 + b"\r\n"  # 800 raw bytes become 600, + 400 = 1000
    await client.send(body + b".\r\n")
    assert (await client.reply())[0] == 250
    assert running.acceptor.accepted[0].content == b".\r\n" * 200 + b"x" * 398 + b"\r\n"
    assert len(running.acceptor.accepted[0].content) == 1000


async def test_101st_recipient_is_452(running: Running, connect: Connect) -> None:
    client = await connect(running.host, running.port)
    await _ehlo(client)
    assert (await client.command("MAIL FROM:<a@x>"))[0] == 250
    await client.send(b"".join(b"RCPT TO:<r%d@x>\r\n" % i for i in range(101)))
    codes = [(await client.reply())[0] for _ in range(101)]
    assert codes == [250] * 100 + [452]
    assert (await client.command("RCPT TO:<again@x>")) == (452, ["4.5.3 Too many recipients"])
    assert (await client.command("DATA"))[0] == 354
    assert (await client.command(b"x\r\n."))[0] == 250
    assert len(running.acceptor.accepted[0].envelope.rcpt_to) == 100


async def test_overlong_line_is_500_and_session_continues(
    running: Running, connect: Connect
) -> None:
    client = await connect(running.host, running.port)
    await _ehlo(client)
    assert await client.command(b"NOOP " + b"x" * 200_000) == (500, ["5.5.2 Line too long"])
    assert (await client.command("MAIL FROM:<a@x> SIZE=10 BODY=8BITMIME SMTPUTF8"))[0] == 250


async def test_too_many_unknown_commands_closes(running: Running, connect: Connect) -> None:
    client = await connect(running.host, running.port)
    await _ehlo(client)
    # Server.Limits.ErrorsPerSession (default 10): the 11th 5xx reply becomes 421.
    codes = [(await client.command(f"BOGUS{i}"))[0] for i in range(11)]
    assert codes == [500] * 10 + [421]
    assert await client.reader.read() == b""


async def test_quit_closes(running: Running, connect: Connect) -> None:
    client = await connect(running.host, running.port)
    await _ehlo(client)
    assert await client.command("QUIT") == (221, ["2.0.0 Bye"])
    assert await client.reader.read() == b""


async def test_closed_ingress_point_421(start_server: StartServer, connect: Connect) -> None:
    running = await start_server(status=IngressPointStatus.CLOSED)
    client = await connect(running.host, running.port)
    assert await client.reply() == (421, ["4.3.2 Service not available"])
    assert await client.reader.read() == b""


async def test_set_status_closes_new_connections(running: Running, connect: Connect) -> None:
    before = await connect(running.host, running.port)
    assert (await before.reply())[0] == 220
    running.server.set_status(IngressPointStatus.CLOSED)
    after = await connect(running.host, running.port)
    assert (await after.reply())[0] == 421
    assert (await before.command("NOOP"))[0] == 250


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 support on this machine")
async def test_ipv6_and_ipv4_listeners(start_server: StartServer) -> None:
    running = await start_server(listen=(ListenAddress("::1", 0), ListenAddress("127.0.0.1", 0)))
    addresses = running.server.addresses()
    assert [host for host, _ in addresses] == ["::1", "127.0.0.1"]
    assert all(port > 0 for _, port in addresses)

    def send(host: str, port: int) -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(host, port, local_hostname="v6.client", timeout=10) as smtp:
            return smtp.sendmail("a@x", ["b@x"], b"Subject: v6\r\n\r\nhi\r\n")

    for host, port in addresses:
        assert await asyncio.to_thread(send, host, port) == {}  # no recipient refused
    peers = [a.session.peer_ip for a in running.acceptor.accepted]
    assert peers == ["::1", "127.0.0.1"]


async def test_stop_closes_idle_and_lets_busy_finish(running: Running, connect: Connect) -> None:
    host, port = running.host, running.port
    idle = await connect(running.host, running.port)
    await _ehlo(idle)
    busy = await connect(running.host, running.port)
    await _ehlo(busy)
    for line in ("MAIL FROM:<a@x>", "RCPT TO:<b@x>"):
        assert (await busy.command(line))[0] == 250
    stopping = asyncio.create_task(running.server.stop(grace=5.0))
    assert await idle.reply() == (421, ["4.3.2 Service shutting down, closing connection"])
    assert (await busy.command("DATA"))[0] == 354
    assert (await busy.command(b"late\r\n."))[0] == 250
    assert (await busy.reply())[0] == 421
    await asyncio.wait_for(stopping, 5)
    assert running.acceptor.accepted[0].content == b"late\r\n"
    with pytest.raises(OSError):
        await RawClient.connect(host, port)


async def test_stop_ends_sessions_with_421_after_grace(running: Running, connect: Connect) -> None:
    busy = await connect(running.host, running.port)
    await _ehlo(busy)
    assert (await busy.command("MAIL FROM:<a@x>"))[0] == 250
    loop = asyncio.get_running_loop()
    started = loop.time()
    await running.server.stop(grace=0.2)
    assert loop.time() - started < 2
    assert not running.server.active_sessions
    assert await busy.reader.read() == b"421 4.3.2 Service shutting down, closing connection\r\n"


async def test_silent_client_times_out_with_421(
    start_server: StartServer, connect: Connect
) -> None:
    running = await start_server(command_timeout=0.2)
    client = await connect(running.host, running.port)
    await _ehlo(client)
    assert await client.reply(wait=3) == (421, ["4.4.2 Timeout, closing connection"])
    assert await client.reader.read() == b""
