"""Processing benchmark (not a test): N spooled messages through the default pipeline.

    .venv/bin/python bench/bench_processing.py [-n 2000] [--size 10240] [--config FILE]
                                               [--profile OUT.pstats]

Commits N messages to a fresh spool under a temporary DataDirectory, then starts the app (which
recovers them) and times until every message is archived. Prints msgs/s and process CPU per
message; the SMTP listener is bound but unused. DNS goes to the configured resolver.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import resource
import tempfile
import time
from pathlib import Path

from mailmgr.app import App
from mailmgr.config import load
from mailmgr.config.models import ListenAddress
from mailmgr.message import Envelope, InboundMessage, SessionFacts, new_message_id
from mailmgr.spool.store import SpoolStore


def _body(size: int) -> bytes:
    head = (
        b"From: bench <bench@load.test>\r\nTo: sink <sink@mailmgr.test>\r\n"
        b"Subject: load test\r\nMessage-ID: <bench@load.test>\r\n\r\n"
    )
    line = b"x" * 76 + b"\r\n"
    return head + line * max(0, (size - len(head)) // len(line))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(args: argparse.Namespace, data: Path) -> None:
    config = load(Path(args.config))
    server = dataclasses.replace(config.server, data_directory=data)
    ingress = config.ingress_points[0]
    config = dataclasses.replace(
        config,
        server=server,
        ingress_points=(dataclasses.replace(ingress, listen=(ListenAddress("127.0.0.1", 0),),
                                            tls_certificate=None),),
    )
    session = SessionFacts(ingress.id, ingress.name, "127.0.0.1", helo="bench.load.test")
    envelope = Envelope("bench@load.test", ("sink@mailmgr.test",))
    store = SpoolStore(server.spool_directory)
    await store.open()
    content = _body(args.size)
    await asyncio.gather(*(
        store.commit(InboundMessage(new_message_id(), time.time(), envelope, session, content))
        for _ in range(args.n)
    ))
    await store.close()

    app = App(config)
    profiler = cProfile.Profile() if args.profile else None
    cpu0, t0 = _cpu(), time.perf_counter()
    if profiler:
        profiler.enable()
    await app.start()
    assert app._store is not None
    while app._store.stats.pending:  # noqa: ASYNC110 (polls another component)
        await asyncio.sleep(0.02)
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
    await app.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"utime {usage.ru_utime:.2f} s stime {usage.ru_stime:.2f} s (whole process)")
    print(f"{args.n} messages of {args.size} bytes processed in {elapsed:.2f} s: "
          f"{args.n / elapsed:.0f} msg/s, CPU {cpu * 1e6 / args.n:.0f} µs per message")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=10240)
    parser.add_argument("--config", default="config/mailmgr.yaml")
    parser.add_argument("--profile", default="", help="write cProfile stats to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailmgr-bench-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
