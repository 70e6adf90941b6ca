"""SMTP ingest load generator: accepted messages per second and end-of-DATA → 250 latency.

Runs against a server that is already running (e.g. `./scripts/serve`). Not a test: it prints
numbers. Example:

    python bench/bench_smtp.py --host 127.0.0.1 --port 2525 -c 50 -n 5000 --size 10240
    python bench/bench_smtp.py --reuse ...            # one connection per worker, many messages
    python bench/bench_smtp.py --idle 1000 --server-pid PID   # memory per idle connection
    python bench/bench_smtp.py --server-pid PID ...   # also server CPU (user+sys) per message
                                        # (a Processes: N supervisor's PID: its workers too)

The client is a lean asyncio implementation (no smtplib) so it costs the shared CPU as little as
possible; `--procs` spreads it over several processes.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import time


def _body(size: int) -> bytes:
    head = (
        b"From: bench <bench@load.test>\r\nTo: sink <sink@mailmgr.test>\r\n"
        b"Subject: load test\r\nMessage-ID: <bench@load.test>\r\n\r\n"
    )
    line = b"x" * 76 + b"\r\n"
    body = head + line * max(0, (size - len(head)) // len(line))
    return body + b".\r\n"


class _Client:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _reply(self) -> bytes:
        assert self.reader
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            if line[3:4] != b"-":
                return line

    sources = 1  # client addresses to spread connections over (127.0.0.2 ... on loopback)
    _next = 0

    async def connect(self) -> None:
        local = None
        if _Client.sources > 1 and self.host.startswith("127."):
            # An MX sees many clients: spread the load over loopback source addresses so the
            # per-address limits (Server.Limits) measure as they would in production.
            _Client._next += 1
            local = (f"127.0.{(_Client._next % _Client.sources) // 250}."
                     f"{2 + _Client._next % _Client.sources % 250}", 0)
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port,
                                                                 local_addr=local)
        await self._reply()
        self.writer.write(b"EHLO bench.load.test\r\n")
        await self._reply()

    async def send(self, data: bytes) -> float:
        """One transaction; returns seconds from the end of DATA to the 250 reply."""
        assert self.writer
        self.writer.write(b"MAIL FROM:<bench@load.test>\r\nRCPT TO:<sink@mailmgr.test>\r\nDATA\r\n")
        for _ in range(3):
            reply = await self._reply()
            if reply[:1] not in (b"2", b"3"):
                raise RuntimeError(reply.decode(errors="replace").strip())
        self.writer.write(data)
        start = time.perf_counter()
        reply = await self._reply()
        elapsed = time.perf_counter() - start
        if not reply.startswith(b"250"):
            raise RuntimeError(reply.decode(errors="replace").strip())
        return elapsed

    async def close(self) -> None:
        if self.writer:
            self.writer.write(b"QUIT\r\n")
            try:
                await self._reply()
            except (ConnectionError, OSError):
                pass
            self.writer.close()


async def _run(args: argparse.Namespace, count: int) -> tuple[list[float], int]:
    data = _body(args.size)
    latencies: list[float] = []
    errors = 0
    remaining = count

    async def worker() -> None:
        nonlocal remaining, errors
        client: _Client | None = None
        while remaining > 0:
            remaining -= 1
            try:
                if client is None:
                    client = _Client(args.host, args.port)
                    await client.connect()
                latencies.append(await client.send(data))
            except (OSError, RuntimeError, ConnectionError):
                errors += 1
                client = None
                continue
            if not args.reuse:
                await client.close()
                client = None
        if client:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return latencies, errors


def _child(args: argparse.Namespace, count: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put(asyncio.run(_run(args, count)))


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds(pid: int) -> float:
    """CPU of `pid` and its live child processes (a Processes: N supervisor's workers)."""
    total = _cpu_seconds(pid)
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children = [int(c) for c in f.read().split()]
        except OSError:
            continue
        for child in children:
            try:
                total += _cpu_seconds(child)
            except OSError:
                pass  # exited meanwhile
    return total


def _client_cpu_seconds() -> float:
    """user+sys of this load generator, its finished --procs children included."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def _idle(args: argparse.Namespace) -> None:
    before = _rss_kib(args.server_pid)
    clients = []
    for _ in range(args.idle):
        client = _Client(args.host, args.port)
        await client.connect()
        clients.append(client)
    await asyncio.sleep(1.0)
    after = _rss_kib(args.server_pid)
    print(f"idle connections: {args.idle}")
    print(f"server RSS: {before} KiB -> {after} KiB")
    print(f"per idle connection: {(after - before) / args.idle:.1f} KiB")
    for client in clients:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("-c", "--concurrency", type=int, default=50)
    parser.add_argument("-n", "--messages", type=int, default=5000)
    parser.add_argument("--size", type=int, default=10240, help="message size in bytes")
    parser.add_argument("--reuse", action="store_true", help="reuse connections")
    parser.add_argument("--procs", type=int, default=1, help="load-generator processes")
    parser.add_argument("--idle", type=int, default=0, help="measure N idle connections")
    parser.add_argument("--server-pid", type=int, default=0)
    parser.add_argument("--sources", type=int, default=250,
                        help="loopback client addresses to connect from (1: 127.0.0.1 only)")
    args = parser.parse_args()
    _Client.sources = max(1, args.sources)
    if args.idle:
        asyncio.run(_idle(args))
        return

    cpu_before = _tree_cpu_seconds(args.server_pid) if args.server_pid else 0.0
    client_before = _client_cpu_seconds()
    start = time.perf_counter()
    if args.procs == 1:
        latencies, errors = asyncio.run(_run(args, args.messages))
    else:
        args.concurrency = max(1, args.concurrency // args.procs)
        queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
        share = args.messages // args.procs
        procs = [
            multiprocessing.Process(target=_child, args=(args, share, queue))
            for _ in range(args.procs)
        ]
        for p in procs:
            p.start()
        latencies, errors = [], 0
        for _ in procs:
            lat, err = queue.get()
            latencies += lat
            errors += err
        for p in procs:
            p.join()
    wall = time.perf_counter() - start
    cpu = _tree_cpu_seconds(args.server_pid) - cpu_before if args.server_pid else 0.0
    client_cpu = _client_cpu_seconds() - client_before
    if not latencies:
        print(f"no message accepted ({errors} errors)")
        return
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    mode = "reused connections" if args.reuse else "new connection per message"
    print(f"{len(latencies)} messages of {args.size} bytes, {args.concurrency * args.procs} "
          f"connections, {mode}, {os.cpu_count()} cores")
    print(f"accepted: {len(latencies) / wall:.0f} msg/s over {wall:.2f} s, errors: {errors}")
    print(f"end-of-DATA -> 250: p50 {statistics.median(latencies) * 1000:.2f} ms, "
          f"p99 {p99 * 1000:.2f} ms, max {latencies[-1] * 1000:.2f} ms")
    # The load generator shares the cores with the server: what it took is not the server's.
    print(f"client CPU during the run: {client_cpu:.2f} s ({client_cpu / wall * 100:.0f} % of "
          f"one core), {client_cpu / len(latencies) * 1e6:.0f} µs per message")
    if args.server_pid:
        # Robust on a shared machine, unlike msg/s; work the server defers past the run
        # (processing a backlog) is not included.
        print(f"server CPU during the run: {cpu / len(latencies) * 1e6:.0f} µs per message")


if __name__ == "__main__":
    main()
