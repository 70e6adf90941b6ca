"""Hostile case 05 and its class: bounded work per connection. A client that never reads is
aborted (write timeout, and a timeout's 421 that cannot be delivered); session, command and DATA
timeouts; a too-slow DATA transfer; ErrorsPerSession over every 5xx; MessagesPerConnection."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from pathlib import Path

import pytest
from limits_support import limited_server, raw_client, wait_until

from mailmgr.config.models import ServerLimits
from tests.ingress.ingress_support import RawClient, make_certs


def _flood_without_reading(port: int) -> socket.socket:
    """Pipeline NOOPs with a tiny receive buffer and never read, until the server stops
    reading us (hostile case 05's client)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(1.0)
    try:
        while True:
            sock.sendall(b"NOOP\r\n" * 10000)
    except (TimeoutError, OSError):
        pass
    return sock


async def test_client_that_never_reads_is_aborted_after_the_write_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An error limit no flood reaches: this test is about the write timeout alone.
    limits = ServerLimits(write_timeout=1.0, errors_per_session=10**9)
    async with limited_server(limits) as server:
        port = server.addresses()[0][1]
        with caplog.at_level(logging.WARNING, logger="mailmgr"):
            socks = await asyncio.gather(
                *(asyncio.to_thread(_flood_without_reading, port) for _ in range(2))
            )
        # The server first answers what the kernel already took from the client (MBs of
        # NOOPs), then its writes stall and the write timeout (1 s) aborts. Before: never.
            await wait_until(lambda: server.active_sessions == 0, timeout=20)
        assert [r.msg for r in caplog.records].count("smtp.write_timeout") == 2
        healthy = await raw_client(port)
        assert (await healthy.reply())[0] == 220
        await healthy.close()
        for sock in socks:
            sock.close()


async def test_timeout_421_that_cannot_be_delivered_still_ends_the_connection() -> None:
    # The write timeout is long; the command timeout fires while the peer reads nothing:
    # its 421 cannot be flushed, so close() alone would wait forever (the old behaviour).
    limits = ServerLimits(write_timeout=60.0, command_timeout=0.5)
    async with limited_server(limits) as server:
        port = server.addresses()[0][1]
        sock = await asyncio.to_thread(_flood_without_reading, port)
        await wait_until(lambda: server.active_sessions == 0, timeout=20)
        sock.close()


async def test_session_timeout_ends_a_busy_session() -> None:
    async with limited_server(ServerLimits(session_timeout=1.0)) as server:
        client = await raw_client(server.addresses()[0][1])
        assert (await client.reply())[0] == 220
        start = time.monotonic()
        code = 250
        while code == 250 and time.monotonic() - start < 5:  # never idle for long
            code = (await client.command("NOOP"))[0]
            await asyncio.sleep(0.1)
        assert code == 421
        assert 0.9 < time.monotonic() - start < 3
        assert await client.reader.read() == b""
        await client.close()


async def _in_data(port: int) -> RawClient:
    client = await raw_client(port)
    assert (await client.reply())[0] == 220
    await client.command("EHLO client.test")
    assert (await client.command("MAIL FROM:<a@sender.test>"))[0] == 250
    assert (await client.command("RCPT TO:<b@x.test>"))[0] == 250
    assert (await client.command("DATA"))[0] == 354
    return client


async def test_data_timeout_between_chunks() -> None:
    limits = ServerLimits(data_timeout=1.0, command_timeout=30.0)
    async with limited_server(limits) as server:
        client = await _in_data(server.addresses()[0][1])
        await client.send(b"Subject: half\r\n\r\nsome body")
        start = time.monotonic()
        assert await client.reply(wait=5) == (
            421, ["4.4.2 Timeout waiting for message data, closing connection"])
        assert 0.9 < time.monotonic() - start < 3
        await client.close()


async def test_slow_data_transfer_is_ended() -> None:
    # 20 bytes every 0.3 s (~67 B/s) never stalls long enough for the DATA timeout, but stays
    # below MinDataRateBytesPerSecond over the rate window (min(10 s, DataTimeoutSeconds)).
    limits = ServerLimits(min_data_rate=256, data_timeout=5.0)
    async with limited_server(limits) as server:
        client = await _in_data(server.addresses()[0][1])
        start = time.monotonic()

        async def trickle() -> None:
            while True:
                await client.send(b"x" * 18 + b"\r\n")
                await asyncio.sleep(0.3)

        task = asyncio.create_task(trickle())
        try:
            assert await client.reply(wait=15) == (
                421, ["4.4.2 Message data arriving too slowly, closing connection"])
        finally:
            task.cancel()
        assert 4.5 < time.monotonic() - start < 8
        await client.close()


async def test_fast_data_after_the_window_is_accepted() -> None:
    limits = ServerLimits(min_data_rate=256, data_timeout=5.0)
    async with limited_server(limits) as server:
        client = await _in_data(server.addresses()[0][1])
        await client.send(b"Subject: ok\r\n\r\n" + b"y" * 998 + b"\r\n.\r\n")
        assert (await client.reply())[0] == 250
        await client.close()


async def test_a_pipelined_junk_flood_is_cut_off_long_before_any_timeout() -> None:
    """Hostile 05 with 40 clients: each had pipelined MBs of NOOPs the server kept answering
    into growing kernel buffers (90 % CPU for minutes, no timeout could fire). Past 100 junk
    commands (NOOP, RSET, VRFY, EXPN, HELP, HELO, EHLO, RCPT past the limit) each counts as an
    error, so ErrorsPerSession ends the session within ~110 commands."""
    async with limited_server(ServerLimits()) as server:
        port = server.addresses()[0][1]
        started = time.monotonic()
        socks = await asyncio.gather(
            *(asyncio.to_thread(_flood_without_reading, port) for _ in range(8)))
        await wait_until(lambda: server.active_sessions == 0, timeout=10)
        assert time.monotonic() - started < 10
        for sock in socks:
            sock.close()
    async with limited_server(ServerLimits()) as server:
        client = await raw_client(server.addresses()[0][1])
        assert (await client.reply())[0] == 220
        for _ in range(100):
            assert (await client.command("NOOP"))[0] == 250  # 100 junk commands are fine
        codes = [(await client.command("NOOP"))[0] for _ in range(11)]
        assert codes == [250] * 10 + [421], codes  # then each one is an error: the 11th closes
        await client.close()


async def test_errors_per_session_counts_5xx_of_every_command() -> None:
    async with limited_server(ServerLimits(errors_per_session=4)) as server:
        client = await raw_client(server.addresses()[0][1])
        assert (await client.reply())[0] == 220
        replies = [
            await client.command("MAIL FROM:<a@x.test>"),  # 503: no EHLO
            await client.command("BOGUS"),  # 500
            await client.command("EHLO c.test"),  # 250, not counted
            await client.command("RCPT TO:<b@x.test>"),  # 503: no MAIL
            await client.command("VRFY"),  # 501
            await client.command("EXPN x"),  # 502: the fifth 5xx
        ]
        codes = [code for code, _ in replies]
        assert codes == [503, 500, 250, 503, 501, 421], replies
        assert replies[-1][1] == ["4.7.0 Too many errors, closing connection"]
        assert await client.reader.read() == b""
        await client.close()


async def test_messages_per_connection() -> None:
    async with limited_server(ServerLimits(messages_per_connection=2)) as server:
        client = await raw_client(server.addresses()[0][1])
        assert (await client.reply())[0] == 220
        await client.command("EHLO c.test")
        for _ in range(2):
            assert (await client.command("MAIL FROM:<a@x.test>"))[0] == 250
            assert (await client.command("RCPT TO:<b@x.test>"))[0] == 250
            assert (await client.command("DATA"))[0] == 354
            assert (await client.command(b"Subject: n\r\n\r\nbody\r\n."))[0] == 250
        assert await client.command("MAIL FROM:<a@x.test>") == (
            421, ["4.7.0 Too many messages in this session, closing connection"])
        await client.close()


async def test_messages_per_address_per_minute_span_connections() -> None:
    async with limited_server(ServerLimits(messages_per_address_per_minute=2)) as server:
        port = server.addresses()[0][1]
        codes = []
        for _ in range(3):
            client = await raw_client(port)
            assert (await client.reply())[0] == 220
            await client.command("EHLO c.test")
            codes.append((await client.command("MAIL FROM:<a@x.test>"))[0])
            await client.close()
        assert codes == [250, 250, 451]  # transaction-level: 451 4.7.1, session usable
        other = await raw_client(port, "127.0.0.2")
        assert (await other.reply())[0] == 220
        await other.command("EHLO c.test")
        assert (await other.command("MAIL FROM:<a@x.test>"))[0] == 250
        await other.close()


def _flood_over_starttls(port: int, context: ssl.SSLContext) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(5.0)
    file = sock.makefile("rb")
    assert file.readline().startswith(b"220")
    sock.sendall(b"EHLO c.test\r\n")
    while file.readline()[3:4] == b"-":
        pass
    sock.sendall(b"STARTTLS\r\n")
    assert file.readline().startswith(b"220")
    tls = context.wrap_socket(sock, server_hostname="localhost")
    tls.settimeout(1.0)
    try:
        while True:
            tls.sendall(b"NOOP\r\n" * 10000)
    except (TimeoutError, OSError):
        pass
    return tls


async def test_never_reading_client_inside_tls_is_aborted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certs = make_certs(tmp_path)
    # An error limit no flood reaches: this test is about the write timeout alone.
    async with limited_server(ServerLimits(write_timeout=1.0, errors_per_session=10**9),
                              certs=certs) as server:
        port = server.addresses()[0][1]
        with caplog.at_level(logging.WARNING, logger="mailmgr"):
            sock = await asyncio.to_thread(_flood_over_starttls, port, certs.client_context())
            await wait_until(lambda: server.active_sessions == 0, timeout=20)
        assert "smtp.write_timeout" in [r.msg for r in caplog.records]
        sock.close()
