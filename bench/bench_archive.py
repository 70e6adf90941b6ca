"""Archive write benchmark (not a test): N puts of S bytes by C concurrent callers into the
local archive (files + SQLite) and into S3 (moto) with the index in PostgreSQL.

    .venv/bin/python bench/bench_archive.py [-n 2000] [-c 64] [--size 10240]
                                            [--dsn postgresql://…] [--only local|s3pg|localpg]

Prints archive writes per second and p50/p99 put latency for each backend pair. Without --dsn a
throw-away PostgreSQL is started (tests/state/postgres_support.py; Debian package needed); moto
runs in-process on a free port, so its figures include moto's own CPU on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailmgr.actions.base import ActionInput
from mailmgr.archive import MessageArchive
from mailmgr.aws.clients import AwsClients, AwsSettings
from mailmgr.config.models import (
    Archive,
    Config,
    LocalStorage,
    RuleSet,
    S3Storage,
    ServerConfig,
    SharedStateSettings,
)
from mailmgr.message import (
    Envelope,
    InboundMessage,
    SessionFacts,
    Verdicts,
    new_message_id,
)
from mailmgr.state.postgres import migrate, open_pool

SESSION = SessionFacts(ingress_point_id="inp-bench", ingress_point_name="bench",
                       peer_ip="127.0.0.1", helo="client.bench")
ENVELOPE = Envelope(mail_from="a@example.com", rcpt_to=("b@example.org",))


def make_item(size: int) -> ActionInput:
    head = (b"From: A <a@example.com>\r\nTo: b@example.org\r\nSubject: bench\r\n"
            b"Message-ID: <x@example.com>\r\n\r\n")
    content = head + os.urandom(max(0, size - len(head)) // 2).hex().encode()
    message = InboundMessage(new_message_id(), time.time(), ENVELOPE, SESSION, content)
    return ActionInput(message=message, content=content, recipients=ENVELOPE.rcpt_to,
                       verdicts=Verdicts(), rule_set_id="rs", rule_set_name="main",
                       rule_index=0, rule_name="archive", action_index=0)


def config_for(directory: Path, archive: Archive) -> Config:
    return Config(source=directory / "mailmgr.yaml",
                  server=ServerConfig(hostname="bench.test", data_directory=directory),
                  ingress_points=(), traffic_policies=(),
                  rule_sets=(RuleSet(id="rs", name="main", arn="arn:rs", rules=()),),
                  archives=(archive,))


async def measure(name: str, store: MessageArchive, args: argparse.Namespace) -> None:
    items = [make_item(args.size) for _ in range(args.n)]
    latencies: list[float] = []
    next_index = 0

    async def caller() -> None:
        nonlocal next_index
        while next_index < len(items):
            item = items[next_index]
            next_index += 1
            start = time.perf_counter()
            await store.put(item)
            latencies.append(time.perf_counter() - start)

    await store.open()
    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(args.c)))
    elapsed = time.perf_counter() - t0
    await store.close()
    q = statistics.quantiles(latencies, n=100)
    print(f"{name:<22} {args.n / elapsed:>8.0f} writes/s  p50 {q[49] * 1000:6.1f} ms  "
          f"p99 {q[98] * 1000:6.1f} ms  ({args.n} x {args.size} B, {args.c} callers)")


@contextlib.contextmanager
def postgres(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    from tests.state.postgres_support import postgres_instance

    with postgres_instance() as instance:
        yield instance.fresh_database()


@contextlib.contextmanager
def moto() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
        os.environ.setdefault(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-archive-", dir=args.dir))
    local = Archive(id="a-local", name="local", arn="arn:a-local", storage=LocalStorage())
    if args.only in (None, "local"):
        await measure("local files + SQLite", MessageArchive.from_config(
            config_for(root / "local", local), local), args)
    if args.only == "local":
        return
    with postgres(args.dsn) as dsn, moto() as endpoint:
        pool = await open_pool(SharedStateSettings(dsn=dsn, pool_size=args.pool))
        await migrate(pool)
        clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=endpoint))
        try:
            s3 = await clients.client("s3")
            await s3.create_bucket(Bucket="bench-archive")
            cold = Archive(id="a-cold", name="cold", arn="arn:a-cold",
                           storage=S3Storage("bench-archive", "mailmgr/"))
            if args.only in (None, "s3pg"):
                await measure("S3 (moto) + PostgreSQL", MessageArchive.from_config(
                    config_for(root / "s3pg", cold), cold, aws=clients, pool=pool), args)
            if args.only in (None, "localpg"):
                await measure("local files + PostgreSQL", MessageArchive.from_config(
                    config_for(root / "localpg", local), local, pool=pool), args)
        finally:
            await clients.close()
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("-c", type=int, default=64)
    parser.add_argument("--size", type=int, default=10240)
    parser.add_argument("--pool", type=int, default=4, help="PostgreSQL pool size")
    parser.add_argument("--dsn", help="an existing PostgreSQL database (else one is started)")
    parser.add_argument("--dir", help="where the local archives go (default: the temp dir)")
    parser.add_argument("--only", choices=("local", "s3pg", "localpg"))
    asyncio.run(main(parser.parse_args()))
