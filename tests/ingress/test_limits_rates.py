"""Server.Limits rates over real sockets: connection rate per address (421, before the banner),
messages and recipients per address per minute and per connection (451 4.7.1, the session
stays usable; a spent connection budget 421 at the next MAIL), the retry after the window, the
DATA rate floor, and one `limits.refused` line per address per minute with every refusal
counted in mailmgr_limit_refusals_total.

The one-minute windows are moved on through AddressTable's clock, a documented constructor seam
(`IngressServer(addresses=AddressTable(clock=...))`), so no test waits 60 s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from ingress_support import HOSTNAME, DenyListPolicy, RawClient, RecordingAcceptor, ingress_point

from mailmgr.admin.metrics import METRICS
from mailmgr.config.models import ServerLimits
from mailmgr.ingress import IngressServer
from mailmgr.ingress.limits import AddressTable


class Clock:
    """A monotonic clock the test moves on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Limited:
    def __init__(self, server: IngressServer, acceptor: RecordingAcceptor, clock: Clock) -> None:
        self.server, self.acceptor, self.clock = server, acceptor, clock
        self.port = server.addresses()[0][1]

    async def client(self, source: str = "127.0.0.1") -> RawClient:
        """A client whose connection comes from `source` (any 127/8 address is local)."""
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.port, local_addr=(source, 0), limit=2**20)
        return RawClient(reader, writer)

    async def greeted(self, source: str = "127.0.0.1") -> RawClient:
        client = await self.client(source)
        assert (await client.reply())[0] == 220
        assert (await client.command("EHLO client.test"))[0] == 250
        return client


@asynccontextmanager
async def limited(**limits: Any) -> AsyncIterator[Limited]:
    clock = Clock()
    acceptor = RecordingAcceptor()
    server = IngressServer(
        ingress_point(), hostname=HOSTNAME, max_message_size=None, acceptor=acceptor,
        recipient_policy=DenyListPolicy(), ssl_context=None, limits=ServerLimits(**limits),
        addresses=AddressTable(clock=clock),
    )
    await server.start()
    try:
        yield Limited(server, acceptor, clock)
    finally:
        await server.stop(grace=0.5)


def refusals(limit: str) -> float:
    value = METRICS.registry.get_sample_value("mailmgr_limit_refusals_total", {"limit": limit})
    return value or 0.0


def refused_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records  # type: ignore[attr-defined]
            if getattr(r, "event", "") == "limits.refused"]


async def send_message(client: RawClient, *rcpts: str) -> tuple[int, list[str]]:
    assert (await client.command("MAIL FROM:<a@sender.test>"))[0] == 250
    for rcpt in rcpts or ("b@x.test",):
        assert (await client.command(f"RCPT TO:<{rcpt}>"))[0] == 250
    assert (await client.command("DATA"))[0] == 354
    return await client.command(b"Subject: t\r\n\r\nbody\r\n.")


async def test_connection_past_the_rate_gets_421_while_another_address_gets_220() -> None:
    async with limited(connections_per_address_per_minute=3) as srv:
        before = refusals("ConnectionsPerAddressPerMinute")
        for _ in range(3):
            client = await srv.client()
            assert (await client.reply())[0] == 220
            assert (await client.command("QUIT"))[0] == 221
            await client.close()
        fourth = await srv.client()
        assert await fourth.reader.read() == (  # the only line: no banner, then closed
            b"421 4.7.0 Too many connections from your address per minute, try again later\r\n")
        await fourth.close()
        other = await srv.client("127.0.0.2")
        assert (await other.reply())[0] == 220
        assert (await other.command("EHLO other.test"))[0] == 250
        await other.close()
        assert refusals("ConnectionsPerAddressPerMinute") - before == 1
        srv.clock.now += 60  # the next minute: the address is welcome again
        again = await srv.client()
        assert (await again.reply())[0] == 220
        await again.close()


async def test_message_rate_answers_451_and_the_retry_after_the_window_succeeds() -> None:
    async with limited(messages_per_address_per_minute=2) as srv:
        before = refusals("MessagesPerAddressPerMinute")
        client = await srv.greeted()
        for _ in range(2):
            assert (await send_message(client))[0] == 250
        assert await client.command("MAIL FROM:<a@sender.test>") == (
            451, ["4.7.1 Too many messages from your address per minute, try again later"])
        # Transaction-level: the session stays usable, no transaction was opened.
        assert (await client.command("NOOP"))[0] == 250
        assert (await client.command("RCPT TO:<b@x.test>"))[0] == 503
        other = await srv.greeted("127.0.0.2")  # another address has its own budget
        assert (await send_message(other))[0] == 250
        await other.close()
        srv.clock.now += 60
        code, text = await send_message(client)  # the sender's retry, same session
        assert code == 250, text
        assert len(srv.acceptor.accepted) == 4
        assert refusals("MessagesPerAddressPerMinute") - before == 1
        await client.close()


async def test_recipients_per_connection_451_at_rcpt_then_421_at_the_next_mail() -> None:
    async with limited(recipients_per_connection=3) as srv:
        client = await srv.greeted()
        assert (await client.command("MAIL FROM:<a@sender.test>"))[0] == 250
        for rcpt in ("r1@x.test", "r2@x.test", "r3@x.test"):
            assert (await client.command(f"RCPT TO:<{rcpt}>"))[0] == 250
        assert await client.command("RCPT TO:<r4@x.test>") == (
            451, ["4.7.1 Too many recipients in this session, try again later"])
        # The recipients already accepted still get the message.
        assert (await client.command("DATA"))[0] == 354
        assert (await client.command(b"Subject: t\r\n\r\nbody\r\n."))[0] == 250
        assert srv.acceptor.accepted[-1].envelope.rcpt_to == ("r1@x.test", "r2@x.test",
                                                                "r3@x.test")
        # The session's budget is spent: the next MAIL closes, so the sender reconnects.
        assert await client.command("MAIL FROM:<a@sender.test>") == (
            421, ["4.7.0 Too many recipients in this session, closing connection"])
        assert await client.reader.read() == b""
        await client.close()
        fresh = await srv.greeted()
        assert (await send_message(fresh, "r4@x.test"))[0] == 250
        await fresh.close()


async def test_recipient_rate_spans_connections_and_resets_after_the_window() -> None:
    async with limited(recipients_per_address_per_minute=2) as srv:
        before = refusals("RecipientsPerAddressPerMinute")
        first = await srv.greeted()
        assert (await send_message(first, "r1@x.test", "r2@x.test"))[0] == 250
        await first.close()
        second = await srv.greeted()
        assert (await second.command("MAIL FROM:<a@sender.test>"))[0] == 250
        assert await second.command("RCPT TO:<r3@x.test>") == (
            451, ["4.7.1 Too many recipients from your address per minute, try again later"])
        assert (await second.command("DATA"))[0] == 554  # no valid recipients
        other = await srv.greeted("127.0.0.2")
        assert (await send_message(other, "r3@x.test"))[0] == 250
        await other.close()
        srv.clock.now += 60
        assert (await second.command("RSET"))[0] == 250
        assert (await send_message(second, "r3@x.test"))[0] == 250
        assert refusals("RecipientsPerAddressPerMinute") - before == 1
        await second.close()


async def test_each_address_is_logged_once_per_minute_and_every_refusal_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with limited(messages_per_address_per_minute=1) as srv:
        before = refusals("MessagesPerAddressPerMinute")
        with caplog.at_level(logging.WARNING, logger="mailmgr"):
            one = await srv.greeted()
            assert (await send_message(one))[0] == 250
            for _ in range(5):
                assert (await one.command("MAIL FROM:<a@sender.test>"))[0] == 451
            two = await srv.greeted("127.0.0.2")
            assert (await send_message(two))[0] == 250
            assert (await two.command("MAIL FROM:<a@sender.test>"))[0] == 451
            assert refused_lines(caplog) == [
                {"limit": "MessagesPerAddressPerMinute", "address": "127.0.0.1",
                 "reply": "451 4.7.1", "unlogged": 0},
                {"limit": "MessagesPerAddressPerMinute", "address": "127.0.0.2",
                 "reply": "451 4.7.1", "unlogged": 0},
            ]
            srv.clock.now += 60  # a new minute: the next refusal is logged with the count
            assert (await send_message(one))[0] == 250
            assert (await one.command("MAIL FROM:<a@sender.test>"))[0] == 451
        lines = refused_lines(caplog)
        assert len(lines) == 3
        assert lines[-1]["address"] == "127.0.0.1" and lines[-1]["unlogged"] == 4
        assert refusals("MessagesPerAddressPerMinute") - before == 7
        for client in (one, two):
            await client.close()


async def test_a_byte_per_second_in_data_is_cut_off_by_the_rate_floor() -> None:
    # The rate is judged over min(10 s, DataTimeoutSeconds) = 2 s; one byte a second never
    # stalls for 2 s, so only the floor (256 B/s) can end it.
    async with limited(min_data_rate=256, data_timeout=2.0) as srv:
        before = refusals("MinDataRateBytesPerSecond")
        client = await srv.greeted()
        assert (await client.command("MAIL FROM:<a@sender.test>"))[0] == 250
        assert (await client.command("RCPT TO:<b@x.test>"))[0] == 250
        assert (await client.command("DATA"))[0] == 354
        started = time.monotonic()

        async def trickle() -> None:
            for byte in b"Subject: slow\r\n\r\n" * 10:
                await client.send(bytes([byte]))
                await asyncio.sleep(1.0)

        task = asyncio.create_task(trickle())
        try:
            assert await client.reply(wait=8) == (
                421, ["4.4.2 Message data arriving too slowly, closing connection"])
        finally:
            task.cancel()
        assert 1.9 < time.monotonic() - started < 5
        assert not srv.acceptor.accepted
        assert refusals("MinDataRateBytesPerSecond") - before == 1
        await client.close()
