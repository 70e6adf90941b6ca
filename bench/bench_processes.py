"""Ingest throughput with `Server.Processes: 1` and `Processes: 2` (or --processes ...): starts a
real `mailmgr serve` per setting on a temp data directory, drives it with bench_smtp.py (new
connection per message, 10 KB, durable spool), and prints each run and the scaling ratio.

    python bench/bench_processes.py -n 4000 -c 50 --processes 1 2

The load generator shares the machine's cores: its CPU is printed with each run.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _config(data: Path, processes: int) -> dict[str, object]:
    return {
        "Server": {"Hostname": "mx.bench.example", "DataDirectory": str(data),
                   "Processes": processes, "Log": {"Format": "json", "Level": "INFO"},
                   "Admin": {"Listen": [], "DrainSeconds": 0}},
        "IngressPoints": [{"IngressPointName": "inbound", "Type": "OPEN", "RuleSetId": "main",
                           "TrafficPolicyId": "allow-all", "Listen": ["127.0.0.1:0"]}],
        "TrafficPolicies": [{"TrafficPolicyName": "allow-all", "DefaultAction": "ALLOW",
                             "PolicyStatements": []}],
        "RuleSets": [{"RuleSetName": "main", "Rules": [{"Name": "drop",
                                                         "Actions": [{"Drop": {}}]}]}],
    }


def _serve(config: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The server and its SMTP port (from the supervisor's, or the one process's,
    `server.started`); its log is read and discarded from then on."""
    proc = subprocess.Popen([sys.executable, "-m", "mailmgr", "serve", "--config", str(config),
                             "--log-format", "json"], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    for raw in proc.stderr:
        line = json.loads(raw) if raw.startswith(b"{") else {}
        if line.get("event") == "server.started" and "worker" not in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, int(line["listeners"][0]["address"].rsplit(":", 1)[1])
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("-n", "--messages", type=int, default=4000)
    parser.add_argument("-c", "--concurrency", type=int, default=50)
    parser.add_argument("--size", type=int, default=10240)
    parser.add_argument("--procs", type=int, default=1, help="load-generator processes")
    args = parser.parse_args()
    rates: dict[int, float] = {}
    for processes in args.processes:
        with tempfile.TemporaryDirectory(prefix="mailmgr-bench-") as tmp:
            config = Path(tmp) / "mailmgr.yaml"
            config.write_text(yaml.safe_dump(_config(Path(tmp) / "var", processes)))
            proc, port = _serve(config)
            try:
                done = subprocess.run(
                    [sys.executable, str(ROOT / "bench" / "bench_smtp.py"), "--port", str(port),
                     "-n", str(args.messages), "-c", str(args.concurrency), "--size",
                     str(args.size), "--procs", str(args.procs), "--server-pid", str(proc.pid)],
                    capture_output=True, text=True, check=True)
            finally:
                proc.terminate()
                proc.wait(60)
        print(f"--- Processes: {processes}")
        print(done.stdout.rstrip())
        found = re.search(r"accepted: (\d+) msg/s", done.stdout)
        rates[processes] = float(found.group(1)) if found else 0.0
    base = rates.get(args.processes[0], 0.0)
    for processes, rate in rates.items():
        if base and processes != args.processes[0]:
            print(f"scaling Processes {processes} / {args.processes[0]}: {rate / base:.2f}x")


if __name__ == "__main__":
    main()
