"""Add-on analysis benchmark (not a test): processing cost per message with each engine enabled,
and the RCPT-time DNSBL latency a traffic policy adds.

    .venv/bin/python bench/bench_analysis.py [-n 1000] [--size 10240] [--rcpt 2000]

Starts a loopback DNS server (tests/verdicts/dns_server.py), clamd and rspamd (the launchers of
tests/analysis/engines.py: local EICAR signature, no download, DNS at the loopback server), then
runs the default config's pipeline (AddHeader + local Archive) over N spooled messages as
bench/bench_processing.py does, once per analyzer set: none, dnsbl, rspamd, clamav, all. Prints
msg/s, mailmgr's CPU per message and the engines' CPU per message (from /proc). Then times
`AnalysisService.session` (what RCPT waits for when a traffic policy reads a DNSBL result) for
distinct client addresses (cache misses) and a repeated one (cache hits): p50/p99/max. With two
cores or more, mailmgr runs on the first and the engines and the DNS server on the others.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_processing import run as run_pipeline

from mailmgr.analysis.service import AnalysisService
from mailmgr.config import load
from mailmgr.verdicts.dns import DnsResolver
from tests.analysis.engines import clamd_instance, rspamd_instance
from tests.verdicts.dns_server import DnsServer

ZEN, DBL = "zen.bench.test", "dbl.bench.test"


def _tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of `root` and its descendants, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(p for p, parent in parents.items() if parent == pid)
    return total


def _serve_dns(ready: Any) -> None:
    """The loopback DNS server in a process of its own: rspamd's lookups must not be billed
    to mailmgr's CPU."""
    server = DnsServer().start()
    ready.send(server.address)
    ready.recv()  # until the parent says stop
    server.stop()


def _pin(pid: int, cores: set[int]) -> None:
    """Pin `pid` and every process under it (rspamd's workers) to `cores`."""
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            os.sched_setaffinity(current, cores)
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(c) for c in children)


def _analyzers(kind: str, dns: str, clamd: str, rspamd: str) -> list[dict[str, Any]]:
    dnsbl = {"Name": "spamhaus", "Dnsbl": {
        "Zones": [{"Zone": ZEN, "Type": "IP"}, {"Zone": DBL, "Type": "DOMAIN"}],
        "IncludePrivate": True}}
    engines = {
        "dnsbl": [dnsbl],
        "rspamd": [{"Name": "vade", "Rspamd": {"Url": rspamd}}],
        "clamav": [{"Name": "trendmicro", "Clamav": {"Address": clamd}}],
    }
    if kind == "all":
        return [*engines["dnsbl"], *engines["rspamd"], *engines["clamav"]]
    return engines.get(kind, [])


def _config(base: dict[str, Any], folder: Path, kind: str, dns: str, clamd: str,
            rspamd: str) -> Path:
    data = dict(base)
    data["Server"] = {**base["Server"], "Dns": {"Nameservers": [dns]},
                      "Admin": {"Listen": []}}
    # bench_processing replaces the listeners (and drops TLS): the SMTP side is not measured
    data["IngressPoints"] = [{k: v for k, v in p.items() if k != "TlsCertificate"}
                             for p in base["IngressPoints"]]
    analyzers = _analyzers(kind, dns, clamd, rspamd)
    if analyzers:
        data["Analyzers"] = analyzers
    path = folder / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"p50 {statistics.median(ordered) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, "
            f"max {ordered[-1] * 1000:.2f} ms")


async def _rcpt_latency(config_file: Path, count: int) -> None:
    config = load(config_file)
    resolver = DnsResolver(config.server.dns_nameservers, config.server.dns_timeout)
    service = AnalysisService.from_config(config, resolver)
    assert service is not None
    misses, hits = [], []
    try:
        for i in range(count):
            ip = f"127.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255 or 1}"
            started = time.perf_counter()
            await service.session(ip, f"client{i}.bench.test", f"sender@domain{i}.bench.test")
            misses.append(time.perf_counter() - started)
        for _ in range(count):
            started = time.perf_counter()
            await service.session("127.0.0.9", "client.bench.test", "sender@bench.test")
            hits.append(time.perf_counter() - started)
    finally:
        await service.close()
    print(f"RCPT-time DNSBL (2 zones, client + HELO + sender domain), {count} transactions:")
    print(f"  cache misses: {_percentiles(misses)}")
    print(f"  cache hits:   {_percentiles(hits)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="messages per analyzer set")
    parser.add_argument("--size", type=int, default=10240)
    parser.add_argument("--rcpt", type=int, default=2000, help="RCPT-time samples")
    parser.add_argument("--only", default="none,dnsbl,rspamd,clamav,all")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    base = yaml.safe_load((root / "config/mailmgr.yaml").read_text())
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="mailmgr-bench-") as tmp:
        folder = Path(tmp)
        parent, child = multiprocessing.Pipe()
        dns_process = multiprocessing.Process(target=_serve_dns, args=(child,), daemon=True)
        dns_process.start()
        stack.callback(dns_process.join, 5)
        stack.callback(parent.send, "stop")
        dns = argparse.Namespace(address=parent.recv())
        clamd = stack.enter_context(clamd_instance())
        rspamd = stack.enter_context(rspamd_instance(dns.address))
        engines = {"clamav": clamd.proc.pid, "rspamd": rspamd.proc.pid}
        # mailmgr on core 0, the engines and the DNS server on the other (as bench_smtp.py
        # puts the server and the load generator on different cores)
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) > 1:
            for pid in (*engines.values(), dns_process.pid or 0):
                _pin(pid, set(cores[1:]))
            os.sched_setaffinity(0, {cores[0]})
        for kind in args.only.split(","):
            config = _config(base, folder, kind, dns.address, clamd.address, rspamd.url)
            before = {k: _tree_cpu(pid) for k, pid in engines.items()}
            data = folder / f"data-{kind}"
            print(f"--- {kind}")
            asyncio.run(run_pipeline(argparse.Namespace(
                config=str(config), n=args.n, size=args.size, profile=""), data))
            used = {k: _tree_cpu(pid) - before[k] for k, pid in engines.items()}
            print("engine CPU per message: " + ", ".join(
                f"{k} {v * 1e6 / args.n:.0f} µs" for k, v in used.items()))
        config = _config(base, folder, "dnsbl", dns.address, clamd.address, rspamd.url)
        asyncio.run(_rcpt_latency(config, args.rcpt))


if __name__ == "__main__":
    main()
