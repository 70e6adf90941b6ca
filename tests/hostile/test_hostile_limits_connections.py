"""Hostile case 04 and its class: connection caps enforced at accept (before the banner), the
cap kept below the fd limit, and accept() running out of fds logged once, without tracebacks."""

from __future__ import annotations

import asyncio
import json
import smtplib
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from limits_support import FdLimitedServer, limited_server, raise_own_fd_limit, raw_client

from mailmgr.config.models import ServerLimits
from mailmgr.ingress import IngressServer
from mailmgr.ingress.limits import AddressTable, address_key
from tests.support import ROOT, basic_config, write_config

REFUSED_FROM_ADDRESS = "421 4.7.0 Too many connections from your address, try again later"


async def test_sixth_connection_from_one_address_gets_421_before_any_banner() -> None:
    limits = ServerLimits(max_connections_per_address=5)
    async with limited_server(limits) as server:
        port = server.addresses()[0][1]
        held = [await raw_client(port) for _ in range(5)]
        for client in held:
            assert (await client.reply())[0] == 220
        sixth = await raw_client(port)
        first = await sixth.reader.readline()
        assert first.decode().rstrip() == REFUSED_FROM_ADDRESS  # the first line, no 220
        assert await sixth.reader.read() == b""
        other = await raw_client(port, source="127.0.0.2")  # another address is not affected
        assert (await other.reply())[0] == 220
        assert (await other.command("EHLO other.test"))[0] == 250
        await held[0].close()
        await _settle(server, 5)
        again = await raw_client(port)  # a closed connection gives its place back
        assert (await again.reply())[0] == 220
        for client in (*held[1:], sixth, other, again):
            await client.close()


async def test_total_cap_counts_every_address() -> None:
    limits = ServerLimits(max_connections=3, max_connections_per_address=2)
    async with limited_server(limits) as server:
        port = server.addresses()[0][1]
        held = [await raw_client(port, src) for src in ("127.0.0.1", "127.0.0.1", "127.0.0.2")]
        for client in held:
            assert (await client.reply())[0] == 220
        fourth = await raw_client(port, "127.0.0.3")
        assert await fourth.reader.readline() == (
            b"421 4.7.0 Too many connections, try again later\r\n")
        assert server.active_sessions == 3
        for client in (*held, fourth):
            await client.close()


async def test_connection_rate_per_address_per_minute() -> None:
    limits = ServerLimits(connections_per_address_per_minute=3)
    async with limited_server(limits) as server:
        port = server.addresses()[0][1]
        for _ in range(3):
            client = await raw_client(port)
            assert (await client.command("QUIT"))[0] in (220, 221)
            await client.close()
        late = await raw_client(port)
        assert (await late.reply())[0] == 421
        await late.close()
        other = await raw_client(port, "127.0.0.2")
        assert (await other.reply())[0] == 220
        await other.close()


async def _settle(server: IngressServer, below: int) -> None:
    for _ in range(100):
        if server.active_sessions < below:
            return
        await asyncio.sleep(0.02)


def test_flood_from_one_address_under_a_low_fd_limit(tmp_path: Path) -> None:
    """The repro of case 04 at small scale: a 256-fd server, 300 connections from 127.0.0.1."""
    raise_own_fd_limit(2048)
    config = basic_config(tmp_path, Limits={"MaxConnectionsPerAddress": 40})
    server = FdLimitedServer(write_config(tmp_path / "mailmgr.yaml", config), nofile=256)
    server.start()
    try:
        lowered = server.wait_for("server.connection_cap_lowered")
        assert lowered["configured"] == 2000 and lowered["effective"] == 256 - 128
        socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5)
                 for _ in range(300)]
        first_lines = [_first_line(s) for s in socks]
        served = sum(line.startswith(b"220 ") for line in first_lines)
        refused = sum(line.startswith(b"421 4.7.0") for line in first_lines)
        assert served == 40 and served + refused == 300, first_lines[-1]
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10,
                          source_address=("127.0.0.2", 0)) as legit:
            assert legit.ehlo("legit.test")[0] == 250
        time.sleep(1.0)
        assert not any("Traceback" in line for line in server.raw)
        assert server.stderr_bytes < 200_000
        assert sum(e.get("event") == "server.connection_cap_lowered"
                   for e in server.events) == 1
        for s in socks:
            s.close()
        time.sleep(0.5)
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as again:
            assert again.ehlo("again.test")[0] == 250
    finally:
        assert server.stop() == 0


def _first_line(sock: socket.socket) -> bytes:
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


# A server whose fds really run out: accept() fails with EMFILE on every try. asyncio alone logs
# a traceback per failed accept (up to the backlog per readable event); AcceptErrorLog turns that
# into at most one line per 10 s, and accepting resumes once fds are free again.
_EMFILE_SERVER = textwrap.dedent("""
    import asyncio, os, resource, sys
    from mailmgr import logs
    from mailmgr.ingress.limits import AcceptErrorLog
    released = False

    async def main():
        global released
        logs.setup("json")
        loop = asyncio.get_running_loop()
        AcceptErrorLog().install(loop)
        held = []
        async def connected(reader, writer):
            writer.write(b"hello\\n")
            if released:
                writer.close()
            else:
                held.append(writer)
        server = await asyncio.start_server(connected, "127.0.0.1", 0, backlog=512)
        print(server.sockets[0].getsockname()[1], flush=True)
        used = len(os.listdir("/proc/self/fd"))
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (used + 4, hard))
        await loop.run_in_executor(None, sys.stdin.readline)   # the flood is on
        released = True
        for writer in held:
            writer.close()
        held.clear()
        print("released", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
    asyncio.run(main())
""")


def test_accept_emfile_gives_one_log_line_and_no_traceback(tmp_path: Path) -> None:
    raise_own_fd_limit(2048)
    err = tmp_path / "server.err"
    with err.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", _EMFILE_SERVER], cwd=ROOT,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        try:
            assert proc.stdout is not None and proc.stdin is not None
            port = int(proc.stdout.readline())
            socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(60)]
            time.sleep(3.0)  # several accept retries while out of fds
            for s in socks:
                s.close()
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == b"released\n"
            time.sleep(1.5)  # asyncio retries accept() after 1 s
            late = socket.create_connection(("127.0.0.1", port), timeout=5)
            late.settimeout(5)
            assert late.recv(16) == b"hello\n"
            late.close()
            proc.stdin.write(b"end\n")
            proc.stdin.flush()
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = err.read_text()
    assert "Traceback" not in text and len(text) < 5_000, text[:2000]
    events = [json.loads(line) for line in text.splitlines()]
    failed = [e for e in events if e["event"] == "ingress.accept_failed"]
    assert 1 <= len(failed) <= 2 and failed[0]["error"] == "EMFILE"


def test_ipv6_clients_are_counted_per_64() -> None:
    assert address_key("2001:db8:0:1::1") == address_key("2001:db8:0:1:ffff:ffff:ffff:ffff")
    assert address_key("2001:db8:0:1::1") != address_key("2001:db8:0:2::1")
    assert address_key("192.0.2.7") == "192.0.2.7"


def test_address_table_stays_bounded_and_keeps_live_entries() -> None:
    table = AddressTable(max_addresses=100)
    limits = ServerLimits()
    assert table.admit("10.0.0.1", limits) is None  # stays open throughout
    for i in range(10_000):  # a spray of one-shot addresses
        key = f"10.1.{i // 256}.{i % 256}"
        assert table.admit(key, limits) is None
        table.release(key)
    assert len(table) <= 100
    peek = table.peek("10.0.0.1")
    assert peek is not None and peek.connections == 1
    assert table.connections == 1
