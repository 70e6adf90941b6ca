"""Address-list benchmark (not a test): load a large list from a CSV file through the config
loader, build its AddressListIndex and a traffic policy using it, then time lookups.

    .venv/bin/python bench/bench_address_list.py [-n 100000] [--lookups 200000]

The list mixes every member form (exact addresses, domains, *@domain, prefix*@domain, *.domain,
local@*.domain). For each form it reports lookups per second for hits and misses, through
AddressListIndex.contains and through a compiled traffic policy's IsInAddressList decision, and
compares a 10-member list to show the cost per lookup does not grow with the list.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from mailmgr import config
from mailmgr.message import SessionFacts
from mailmgr.rules.address_lists import AddressListIndex, build_indexes
from mailmgr.rules.traffic_policy import CompiledTrafficPolicy

SESSION = SessionFacts(ingress_point_id="inp-bench", ingress_point_name="bench",
                       peer_ip="192.0.2.1", tls=True, tls_protocol="TLSv1.3")

# form -> (member for index i, a hit for index i, a miss for index i)
FORMS: dict[str, tuple[Callable[[int], str], Callable[[int], str], Callable[[int], str]]] = {
    "address": (lambda i: f"user{i}@d{i % 997}.example",
                lambda i: f"USER{i}@d{i % 997}.example",
                lambda i: f"user{i}@d{(i + 1) % 997}.example"),
    "domain": (lambda i: f"dom{i}.example",
               lambda i: f"anyone@dom{i}.example",
               lambda i: f"anyone@x.dom{i}.example"),
    "*@domain": (lambda i: f"*@any{i}.example",
                 lambda i: f"someone@any{i}.example",
                 lambda i: f"someone@any{i}.example.org"),
    "prefix*@domain": (lambda i: f"team{i}*@prefix.example",
                       lambda i: f"team{i}-sales+tag@prefix.example",
                       lambda i: f"xteam{i}@prefix.example"),
    "*.domain": (lambda i: f"*.sub{i}.example",
                 lambda i: f"a@mx.eu.sub{i}.example",
                 lambda i: f"a@sub{i}.example"),
    "local@*.domain": (lambda i: f"ops{i}@*.corp{i}.example",
                       lambda i: f"ops{i}@eu.corp{i}.example",
                       lambda i: f"dev{i}@eu.corp{i}.example"),
}


def members(n: int) -> list[str]:
    per_form = n // len(FORMS)
    out: list[str] = []
    for member, _, _ in FORMS.values():
        out.extend(member(i) for i in range(per_form))
    return out


def config_document(list_file: str) -> dict[str, object]:
    return {
        "Server": {"Hostname": "mx.bench.example"},
        "IngressPoints": [{"IngressPointName": "bench", "Type": "OPEN", "RuleSetId": "rules",
                           "TrafficPolicyId": "gate", "TlsPolicy": "OPTIONAL",
                           "Listen": ["127.0.0.1:0"]}],
        "TrafficPolicies": [{"TrafficPolicyName": "gate", "DefaultAction": "ALLOW",
                             "PolicyStatements": [{"Action": "DENY", "Conditions": [{
                                 "BooleanExpression": {"Evaluate": {"IsInAddressList": {
                                     "Attribute": "RECIPIENT", "AddressLists": ["big"]}},
                                     "Operator": "IS_TRUE"}}]}]}],
        "RuleSets": [{"RuleSetName": "rules",
                      "Rules": [{"Name": "drop", "Actions": [{"Drop": {}}]}]}],
        "AddressLists": [{"AddressListName": "big", "File": list_file}],
    }


def rate(probe: Callable[[str], object], addresses: list[str], lookups: int) -> float:
    rounds = max(1, lookups // len(addresses))
    start = time.perf_counter()
    for _ in range(rounds):
        for address in addresses:
            probe(address)
    return rounds * len(addresses) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="list size (default 100000)")
    parser.add_argument("--lookups", type=int, default=200_000, help="lookups per measurement")
    args = parser.parse_args()
    listed = members(args.n)
    per_form = args.n // len(FORMS)

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "big.csv").write_text("address\n" + "\n".join(listed) + "\n")
        (root / "mailmgr.yaml").write_text(yaml.safe_dump(config_document("big.csv")))
        t0 = time.perf_counter()
        cfg = config.load(root / "mailmgr.yaml")
        load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    indexes = build_indexes(cfg.address_lists)
    index_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    policy = CompiledTrafficPolicy.compile(cfg.traffic_policies[0], indexes)
    compile_s = time.perf_counter() - t0
    big = indexes[cfg.address_lists[0].id]
    small = AddressListIndex([member(3) for member, _, _ in FORMS.values()])

    print(f"members: {len(cfg.address_lists[0].members)} ({per_form} per form, {len(FORMS)} forms)")
    print(f"config load (CSV through mailmgr.config.load): {load_s:.2f} s")
    print(f"index build: {index_s * 1000:.0f} ms; policy compile: {compile_s * 1e6:.0f} us")
    print()
    header = (f"{'form':16} {'hit/s':>11} {'miss/s':>11} {'policy hit/s':>13} "
              f"{'10-member hit/s':>16}")
    print(header)
    print("-" * len(header))
    sample = range(0, per_form, max(1, per_form // 1000))
    for form, (_, hit, miss) in FORMS.items():
        hits = [hit(i) for i in sample]
        misses = [miss(i) for i in sample]
        assert all(big.contains(a) for a in hits), form
        assert not any(big.contains(a) for a in misses), form
        hit_rate = rate(big.contains, hits, args.lookups)
        miss_rate = rate(big.contains, misses, args.lookups)
        policy_rate = rate(lambda a: policy.decide(SESSION, a), hits, args.lookups)
        small_rate = rate(small.contains, [hit(3)], args.lookups)
        print(f"{form:16} {hit_rate:11,.0f} {miss_rate:11,.0f} {policy_rate:13,.0f} "
              f"{small_rate:16,.0f}")


if __name__ == "__main__":
    main()
