"""Spool ingest benchmark (not a test): N messages of S bytes committed by C concurrent committers.

    .venv/bin/python bench/bench_spool.py [-n 6000] [-c 64] [--size 10240] [--dir DIR] [--no-fsync]
                                         [--rate MSGS_PER_S]

Prints msgs/s, p50/p99/max commit latency and fdatasyncs per commit. With --rate the committers
are paced to an offered load (open loop) so latency is measured at that throughput rather than
at saturation.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from mailmgr.message import Envelope, InboundMessage, SessionFacts, new_message_id
from mailmgr.spool.store import SpoolStore

SESSION = SessionFacts(
    ingress_point_id="inp-bench", ingress_point_name="bench", peer_ip="127.0.0.1"
)
ENVELOPE = Envelope(mail_from="a@example.com", rcpt_to=("b@example.org",))


def make_message(size: int) -> InboundMessage:
    head = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: bench\r\n\r\n"
    body = os.urandom(max(0, size - len(head)) // 2).hex().encode()
    return InboundMessage(new_message_id(), time.time(), ENVELOPE, SESSION, head + body)


async def run(args: argparse.Namespace, directory: Path) -> None:
    store = SpoolStore(directory, fsync=not args.no_fsync)
    await store.open()
    messages = [make_message(args.size) for _ in range(args.n)]
    latencies: list[float] = []
    next_index = 0
    interval = 1.0 / args.rate if args.rate else 0.0
    t0 = time.perf_counter()

    async def committer() -> None:
        nonlocal next_index
        while next_index < len(messages):
            i = next_index
            next_index += 1
            if interval:
                delay = t0 + i * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            start = time.perf_counter()
            await store.commit(messages[i])
            latencies.append(time.perf_counter() - start)

    before = store.stats
    await asyncio.gather(*(committer() for _ in range(args.c)))
    elapsed = time.perf_counter() - t0
    after = store.stats
    await store.close()

    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    fsyncs = after.fsyncs - before.fsyncs
    print(
        f"n={args.n} size={args.size} concurrency={args.c} fsync={not args.no_fsync}"
        + (f" offered={args.rate}/s" if args.rate else "")
    )
    print(f"throughput      {args.n / elapsed:9.0f} msgs/s  ({elapsed:.2f} s)")
    print(
        f"commit latency  p50 {q[49] * 1000:.2f} ms  p99 {q[98] * 1000:.2f} ms  "
        f"max {latencies[-1] * 1000:.2f} ms"
    )
    print(
        f"fdatasyncs      {fsyncs} for {args.n} commits = {fsyncs / args.n:.3f} per commit "
        f"({args.n / max(fsyncs, 1):.1f} commits per batch)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=6000)
    parser.add_argument("-c", type=int, default=64)
    parser.add_argument("--size", type=int, default=10 * 1024)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--rate", type=float, default=0.0)
    args = parser.parse_args()
    if args.dir is not None:
        asyncio.run(run(args, args.dir))
        return
    with tempfile.TemporaryDirectory(prefix="bench-spool-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
