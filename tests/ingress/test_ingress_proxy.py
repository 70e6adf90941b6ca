"""PROXY protocol v1/v2 on a real listener: hand-made headers over raw sockets (a real HAProxy:
tests/e2e/test_haproxy.py), trusted and untrusted sources, refusals before any banner and their
counts, implicit TLS."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import ipaddress
import json
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from ingress_support import (
    HOSTNAME,
    Certs,
    DenyListPolicy,
    RawClient,
    RecordingAcceptor,
    ingress_point,
)

from mailmgr import logs
from mailmgr.admin.metrics import METRICS
from mailmgr.config.models import ListenAddress, ProxyProtocol, ServerLimits
from mailmgr.ingress import IngressServer
from mailmgr.ingress.proxy import V2_SIGNATURE
from mailmgr.ingress.tls import server_context

LOCAL = ipaddress.ip_network("127.0.0.1/32")


def v1(src: str, sport: int = 40000, family: str = "TCP4", dst: str = "192.0.2.1") -> bytes:
    return f"PROXY {family} {src} {dst} {sport} 25\r\n".encode()


def v2(src: str | None, sport: int = 40000, *, local: bool = False, tlv: bytes = b"") -> bytes:
    if local or src is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", len(tlv)) + tlv
    address = ipaddress.ip_address(src)
    if address.version == 4:
        body = address.packed + bytes(4) + struct.pack("!HH", sport, 25)
        fam = 0x11
    else:
        body = address.packed + bytes(16) + struct.pack("!HH", sport, 25)
        fam = 0x21
    body += tlv
    return V2_SIGNATURE + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


StartProxy = Callable[..., Awaitable[tuple[IngressServer, RecordingAcceptor]]]


@pytest.fixture
async def start_proxy(certs: Certs) -> AsyncIterator[StartProxy]:
    started: list[IngressServer] = []

    async def start(
        trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (LOCAL,),
        header_timeout: float = 5.0,
        wrapped: bool = False,
        limits: ServerLimits | None = None,
    ) -> tuple[IngressServer, RecordingAcceptor]:
        point = dataclasses.replace(
            ingress_point(certs=certs),
            proxy_protocol=ProxyProtocol(trusted, header_timeout),
            tls_wrapped_listen=(ListenAddress("127.0.0.1", 0),) if wrapped else (),
        )
        acceptor = RecordingAcceptor()
        assert point.tls_certificate is not None
        server = IngressServer(
            point, hostname=HOSTNAME, max_message_size=None, acceptor=acceptor,
            recipient_policy=DenyListPolicy(denied=frozenset()),
            ssl_context=server_context(point.tls_certificate), limits=limits,
        )
        await server.start()
        started.append(server)
        return server, acceptor

    yield start
    for server in started:
        await server.stop(grace=1.0)


async def _send_message(client: RawClient) -> None:
    assert (await client.reply())[0] == 220
    assert (await client.command("EHLO client.test"))[0] == 250
    assert (await client.command("MAIL FROM:<a@sender.test>"))[0] == 250
    assert (await client.command("RCPT TO:<b@rcpt.test>"))[0] == 250
    assert (await client.command("DATA"))[0] == 354
    assert (await client.command(b"Subject: x\r\n\r\nbody\r\n."))[0] == 250
    await client.command("QUIT")


async def _proxied(start_proxy: StartProxy, header: bytes) -> tuple[str, int]:
    server, acceptor = await start_proxy()
    client = await RawClient.connect("127.0.0.1", server.addresses()[0][1])
    await client.send(header)
    await _send_message(client)
    await client.close()
    facts = acceptor.accepted[0].session
    return facts.peer_ip, facts.peer_port


async def test_v1_tcp4_source_becomes_the_client(start_proxy: StartProxy) -> None:
    assert await _proxied(start_proxy, v1("203.0.113.7", 51000)) == ("203.0.113.7", 51000)


async def test_v1_tcp6_source_becomes_the_client(start_proxy: StartProxy) -> None:
    header = v1("2001:db8::7", 52000, "TCP6", "2001:db8::1")
    assert await _proxied(start_proxy, header) == ("2001:db8::7", 52000)


async def test_v2_ipv4_with_tlv_source_becomes_the_client(start_proxy: StartProxy) -> None:
    tlv = bytes([0x04]) + struct.pack("!H", 3) + b"abc"  # PP2_TYPE_NOOP, skipped
    assert await _proxied(start_proxy, v2("198.51.100.9", 53000, tlv=tlv)) == (
        "198.51.100.9", 53000)


async def test_v2_ipv6_source_becomes_the_client(start_proxy: StartProxy) -> None:
    assert await _proxied(start_proxy, v2("2001:db8::9", 54000)) == ("2001:db8::9", 54000)


async def test_v2_local_is_a_normal_session_with_the_balancer_address(
    start_proxy: StartProxy,
) -> None:
    ip, _ = await _proxied(start_proxy, v2(None, local=True))
    assert ip == "127.0.0.1"


async def test_header_and_first_command_in_one_segment(start_proxy: StartProxy) -> None:
    server, _ = await start_proxy()
    client = await RawClient.connect("127.0.0.1", server.addresses()[0][1])
    await client.send(v1("203.0.113.7") + b"NOOP\r\n")
    assert (await client.reply())[0] == 220
    assert (await client.reply())[0] == 250
    await client.close()


async def _refused(port: int, data: bytes, *, eof: bool = False) -> bytes:
    client = await RawClient.connect("127.0.0.1", port)
    await client.send(data)
    if eof:
        client.writer.write_eof()
    try:
        got = await asyncio.wait_for(client.reader.read(), 5)
    except ConnectionResetError:
        got = b""
    await client.close()
    return got


@pytest.mark.parametrize("data", [
    b"EHLO client.test\r\n",  # no header at all: SMTP from a trusted source
    b"PROXY TCP4 203.0.113.7 192.0.2.1 99999 25\r\n",  # port out of range
    b"PROXY TCP4 2001:db8::1 192.0.2.1 1 25\r\n",  # family mismatch
    b"PROXY TCP4 203.0.113.7 192.0.2.1 01 25\r\n",  # leading zero
    b"PROXY TCP5 203.0.113.7 192.0.2.1 1 25\r\n",
    b"PROXY TCP6 fe80::1%eth0 fe80::2 1 25\r\n",  # zone IDs are not addresses
    b"PROXY TCP4 203.0.113.7 192.0.2.1 1 25 extra\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 1 25\n",  # LF only
    b"PROXY " + b"A" * 120,  # longer than 107 bytes without CRLF
    V2_SIGNATURE + bytes([0x31, 0x11, 0, 12]) + bytes(12),  # version 3
    V2_SIGNATURE + bytes([0x21, 0x11, 0, 4]) + bytes(4),  # address block too short
    V2_SIGNATURE[:6] + b"X" * 20,  # broken signature
])
async def test_malformed_header_closes_without_banner(
    start_proxy: StartProxy, data: bytes
) -> None:
    server, _ = await start_proxy()
    assert await _refused(server.addresses()[0][1], data) == b""


@pytest.mark.parametrize("data", [v1("203.0.113.7")[:20], v2("203.0.113.7")[:20], b""])
async def test_truncated_header_closes_without_banner(
    start_proxy: StartProxy, data: bytes
) -> None:
    server, _ = await start_proxy()
    assert await _refused(server.addresses()[0][1], data, eof=True) == b""


async def test_timeout_closes_without_banner_and_is_logged(start_proxy: StartProxy) -> None:
    stream = io.StringIO()
    logs.setup("json", stream=stream)
    try:
        server, _ = await start_proxy(header_timeout=0.3)
        began = time.monotonic()
        assert await _refused(server.addresses()[0][1], b"PROXY TCP4 ") == b""
        assert time.monotonic() - began < 3
    finally:
        logs.setup("json")
    records = [json.loads(line) for line in stream.getvalue().splitlines() if line]
    refused = [r for r in records if r.get("event") == "ingress.proxy_refused"]
    assert len(refused) == 1 and refused[0]["reason"] == "timeout"
    assert "Traceback" not in stream.getvalue()


def _refusals(reason: str) -> float:
    value = METRICS.registry.get_sample_value(
        "mailmgr_proxy_refusals_total", {"ingress_point": "test", "reason": reason})
    return value or 0.0


async def test_untrusted_source_is_a_plain_session(start_proxy: StartProxy) -> None:
    server, acceptor = await start_proxy(trusted=(ipaddress.ip_network("10.0.0.0/8"),))
    client = await RawClient.connect("127.0.0.1", server.addresses()[0][1])
    await _send_message(client)  # banner at once, no header awaited; then a normal session
    await client.close()
    assert acceptor.accepted[0].session.peer_ip == "127.0.0.1"


@pytest.mark.parametrize("header", [
    v1("203.0.113.7"), v2("203.0.113.7"), v2(None, local=True), b"PROXY UNKNOWN\r\n",
])
async def test_untrusted_source_sending_a_header_is_dropped(
    start_proxy: StartProxy, header: bytes
) -> None:
    stream = io.StringIO()
    logs.setup("json", stream=stream)
    before = _refusals("untrusted_source")
    try:
        server, acceptor = await start_proxy(trusted=(ipaddress.ip_network("10.0.0.0/8"),))
        client = await RawClient.connect("127.0.0.1", server.addresses()[0][1])
        assert (await client.reply())[0] == 220
        await client.send(header + b"EHLO client.test\r\n")
        rest = await asyncio.wait_for(client.reader.read(), 5)  # then EOF: closed
        await client.close()
    finally:
        logs.setup("json")
    assert rest == b"421 4.7.0 PROXY header not accepted from this address, closing connection\r\n"
    assert acceptor.accepted == []
    assert _refusals("untrusted_source") == before + 1
    refused = [json.loads(line) for line in stream.getvalue().splitlines()
               if '"ingress.proxy_refused"' in line]
    assert [(r["reason"], r["peer_ip"]) for r in refused] == [("untrusted_source", "127.0.0.1")]


async def test_untrusted_header_split_across_segments_is_dropped(start_proxy: StartProxy) -> None:
    server, _ = await start_proxy(trusted=(ipaddress.ip_network("10.0.0.0/8"),))
    client = await RawClient.connect("127.0.0.1", server.addresses()[0][1])
    assert (await client.reply())[0] == 220
    await client.send(b"PRO")
    await asyncio.sleep(0.05)
    await client.send(b"XY TCP4 203.0.113.7 192.0.2.1 1 25\r\n")
    assert (await client.reply())[0] == 421
    await client.close()


async def test_untrusted_first_bytes_like_a_header_but_not_one_pass(
    start_proxy: StartProxy,
) -> None:
    server, _ = await start_proxy(trusted=(ipaddress.ip_network("10.0.0.0/8"),))
    client = await RawClient.connect("127.0.0.1", server.addresses()[0][1])
    assert (await client.reply())[0] == 220
    await client.send(b"PR")  # a prefix of "PROXY ": held, then handed on with what follows
    await asyncio.sleep(0.05)
    assert (await client.command("OBE"))[0] == 500  # "PROBE": an unknown command, not a 421
    assert (await client.command("NOOP"))[0] == 250
    await client.close()


async def test_untrusted_implicit_tls_header_is_dropped_before_the_handshake(
    start_proxy: StartProxy,
) -> None:
    server, _ = await start_proxy(trusted=(ipaddress.ip_network("10.0.0.0/8"),), wrapped=True)
    got = await _refused(server.wrapped_addresses()[0][1], v2("203.0.113.7"))
    assert got.startswith(b"421 4.7.0 ")


async def test_untrusted_implicit_tls_session_passes_the_gate(
    start_proxy: StartProxy, certs: Certs
) -> None:
    server, acceptor = await start_proxy(trusted=(ipaddress.ip_network("10.0.0.0/8"),),
                                         wrapped=True)
    port = server.wrapped_addresses()[0][1]
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=certs.client_context(), server_hostname="localhost")
    client = RawClient(reader, writer)
    await _send_message(client)  # the ClientHello went through the gate to the TLS layer
    await client.close()
    assert acceptor.accepted[0].session.peer_ip == "127.0.0.1"


@pytest.mark.parametrize(("data", "eof", "reason"), [
    (b"EHLO client.test\r\n", False, "missing"),
    (b"", True, "missing"),
    (b"PROXY TCP4 203.0.113.7 192.0.2.1 99999 25\r\n", False, "malformed"),
    (v2("203.0.113.7")[:20], True, "truncated"),
])
async def test_refusals_are_counted_by_reason(
    start_proxy: StartProxy, data: bytes, eof: bool, reason: str
) -> None:
    before = _refusals(reason)
    server, _ = await start_proxy()
    assert await _refused(server.addresses()[0][1], data, eof=eof) == b""
    assert _refusals(reason) == before + 1


async def test_per_address_cap_counts_the_proxied_address(start_proxy: StartProxy) -> None:
    server, _ = await start_proxy(limits=ServerLimits(max_connections_per_address=1))
    port = server.addresses()[0][1]
    first = await RawClient.connect("127.0.0.1", port)
    await first.send(v1("203.0.113.7"))
    assert (await first.reply())[0] == 220
    other = await RawClient.connect("127.0.0.1", port)  # same balancer, another client
    await other.send(v1("203.0.113.8"))
    assert (await other.reply())[0] == 220
    again = await RawClient.connect("127.0.0.1", port)  # the first client a second time
    await again.send(v1("203.0.113.7"))
    assert (await again.reply())[0] == 421
    for client in (first, other, again):
        await client.close()


async def test_implicit_tls_header_before_handshake(
    start_proxy: StartProxy, certs: Certs
) -> None:
    server, acceptor = await start_proxy(wrapped=True)
    port = server.wrapped_addresses()[0][1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
    writer.write(v2("203.0.113.50", 55000))
    await writer.drain()
    await writer.start_tls(certs.client_context(), server_hostname="localhost")
    client = RawClient(reader, writer)
    await _send_message(client)
    await client.close()
    assert (acceptor.accepted[0].session.peer_ip, acceptor.accepted[0].session.peer_port) == (
        "203.0.113.50", 55000)

