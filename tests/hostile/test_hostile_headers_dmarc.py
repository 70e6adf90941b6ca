"""Field 10 (obs white space before the colon hides From from DMARC) and hostile 07 (a From with
10,000 domains makes 10,000 DNS queries), through the real server and a loopback DNS server, plus
the other members of both classes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailmgr.message import DmarcPolicy, Verdict
from mailmgr.verdicts.dkim import DkimResult
from mailmgr.verdicts.dmarc import (
    MAX_FROM_ADDRESSES,
    MAX_FROM_DOMAINS,
    NO_ADDRESS,
    check_dmarc,
    from_domains,
)
from mailmgr.verdicts.dns import DnsResolver
from mailmgr.verdicts.spf import SpfResult
from tests.hostile.headers_support import CASES, config, send
from tests.support import ServerProcess
from tests.verdicts.dns_server import DnsServer, Zone

pytestmark = pytest.mark.slow
FIELD10 = CASES / "field/10-obs-header-whitespace-dmarc-bypass"



@pytest.fixture
def zone(dns_server: DnsServer) -> Iterator[Zone]:
    dns_server.zone.clear()
    dns_server.zone.txt("evil.test", "v=spf1 ip4:127.0.0.1 -all")
    dns_server.zone.txt("bank.test", "v=spf1 -all")
    dns_server.zone.txt("_dmarc.bank.test", "v=DMARC1; p=reject")
    yield dns_server.zone
    dns_server.zone.clear()


@pytest.fixture
def server(tmp_path: Path, server_factory: Any, dns_server: DnsServer, zone: Zone
           ) -> ServerProcess:
    rules = [{"Name": "deliver", "Actions": [{"AddHeader": {"HeaderName": "X-Delivered",
                                                             "HeaderValue": "yes"}}]}]
    started: ServerProcess = server_factory(config(tmp_path, dns_server.address, rules)).start()
    return started


def verdict(server: ServerProcess, content: bytes) -> dict[str, Any]:
    message_id = send(server, content)
    return server.wait_for("verdicts.computed", timeout=20, message_id=message_id)


TAIL = b"To: b@example.test\r\nSubject: pay invoice\r\n\r\nbody\r\n"
SPOOFED = [
    # the field case files
    (FIELD10 / "plain.eml").read_bytes() if FIELD10.exists() else b"From: ceo@bank.test\r\n" + TAIL,
    (FIELD10 / "obs-from.eml").read_bytes() if FIELD10.exists() else b"From : ceo@bank.test\r\n"
    + TAIL,
    (FIELD10 / "obs-optional-first.eml").read_bytes() if FIELD10.exists()
    else b"X-Note : hi\r\nFrom: ceo@bank.test\r\n" + TAIL,
    # other obs white space: tabs, several, before From and before other names
    b"From\t: ceo@bank.test\r\n" + TAIL,
    b"From \t : ceo@bank.test\r\n" + TAIL,
    b"Subject : first\r\nFrom: ceo@bank.test\r\n" + TAIL,
    b"To : b@example.test\r\nCc\t: c@example.test\r\nFrom: ceo@bank.test\r\n" + TAIL,
    b"Sender : s@evil.test\r\nFrom: ceo@bank.test\r\n" + TAIL,
    # a name folded before its colon, an orphan continuation, an mbox line
    b"From\r\n : ceo@bank.test\r\n" + TAIL,
    b" orphan continuation\r\nFrom: ceo@bank.test\r\n" + TAIL,
    b"From evil@evil.test Mon Nov 30 10:00:00 2026\r\nFrom: ceo@bank.test\r\n" + TAIL,
    # duplicate From fields: every domain is evaluated
    b"From: me@evil.test\r\nFrom: ceo@bank.test\r\n" + TAIL,
    # address-list forms (field probes #12, #13) and an encoded display name
    b"From: <ceo@bank.test >\r\n" + TAIL,
    b'From: "Someone <someone@evil.test>"@bank.test\r\n' + TAIL,
    b"From: =?utf-8?q?Evil_=3Cme=40evil=2Etest=3E?= <ceo@bank.test>\r\n" + TAIL,
    b"From: Bank (comment <x@evil.test>) <ceo(c)@bank.test>\r\n" + TAIL,
    # no usable address in a present From field: not a bypass (permerror -> REJECT)
    b"From: ceo@bank.test <\r\n" + TAIL,
    b"From: Bank of Test\r\n" + TAIL,
    b"From: ceo@[127.0.0.1]\r\n" + TAIL,
    # a From line only a reader splitting on a bare CR would see
    b"Subject: hi\rFrom: ceo@bank.test\r\nTo: b@example.test\r\n\r\nbody\r\n",
]


def test_field_10_every_from_form_is_enforced(server: ServerProcess) -> None:
    failures = []
    for content in SPOOFED:
        event = verdict(server, content)
        if (event["dmarc"], event["dmarc_policy"]) != ("FAIL", "REJECT"):
            failures.append((content[:60], event["dmarc"], event["dmarc_policy"]))
    assert failures == []
    assert server.stop() == 0


def test_own_domain_still_passes_and_no_from_is_none(server: ServerProcess, zone: Zone) -> None:
    zone.txt("_dmarc.evil.test", "v=DMARC1; p=reject")
    event = verdict(server, b"From : Me <me@evil.test>\r\n" + TAIL)
    assert event["dmarc"] == "PASS"
    event = verdict(server, b"Subject: no from at all\r\n\r\nbody\r\n")
    assert event["dmarc"] == "GRAY"


def _from_with(domains: int, prefix: str = "") -> bytes:
    frm = ", ".join(f"u{i}@{prefix}d{i}.victim.example" for i in range(domains))
    return f"From: {frm}\r\nTo: b@example.test\r\nSubject: multi\r\n\r\nbody\r\n".encode()


def test_hostile_07_many_from_domains_cost_no_dns(server: ServerProcess, zone: Zone) -> None:
    before = len(zone.queries)
    event = verdict(server, _from_with(10_000))
    assert (event["dmarc"], event["dmarc_policy"]) == ("FAIL", "REJECT")
    dmarc_queries = [q for q in zone.queries[before:] if q[0].startswith("_dmarc.")]
    assert dmarc_queries == []

    # one more than the cap, spread over two From fields: still no DMARC lookup
    before = len(zone.queries)
    half = MAX_FROM_DOMAINS // 2 + 1
    two = (b"From: " + b", ".join(b"a@x%d.test" % i for i in range(half)) + b"\r\nFrom: "
           + b", ".join(b"a@y%d.test" % i for i in range(MAX_FROM_DOMAINS + 1 - half))
           + b"\r\n" + TAIL)
    event = verdict(server, two)
    assert (event["dmarc"], event["dmarc_policy"]) == ("FAIL", "REJECT")
    assert [q for q in zone.queries[before:] if q[0].startswith("_dmarc.")] == []

    # at the cap: evaluated (a bounded number of queries), p=reject of one domain wins
    before = len(zone.queries)
    frm = ", ".join([f"a@d{i}.example" for i in range(MAX_FROM_DOMAINS - 1)] + ["ceo@bank.test"])
    event = verdict(server, f"From: {frm}\r\n".encode() + TAIL)
    assert (event["dmarc"], event["dmarc_policy"]) == ("FAIL", "REJECT")
    queries = [q for q in zone.queries[before:] if q[0].startswith("_dmarc.")]
    assert 0 < len(queries) <= 2 * MAX_FROM_DOMAINS
    assert server.stop() == 0


def test_from_domains_counts_distinct_domains() -> None:
    assert len(from_domains(_from_with(9_000))) == 9_000
    assert from_domains(b"From: a@X.test, B@x.TEST\r\n\r\n") == ("x.test",)
    # 10,000 domains make a 288 KB line, past the reader's line bound: no usable From
    assert from_domains(_from_with(10_000)) == (NO_ADDRESS,)
    assert from_domains(b"From: x@y.test, bad\r\n\r\n") == (NO_ADDRESS,)
    # past MAX_FROM_ADDRESSES "@" the list is not parsed: many domains still counted, one
    # domain repeated is no usable address; both are FAIL/REJECT
    repeated = ", ".join(["ceo@bank.test"] * (MAX_FROM_ADDRESSES + 1))
    assert from_domains(f"From: {repeated}\r\n\r\n".encode()) == (NO_ADDRESS,)
    at_limit = ", ".join(["ceo@bank.test"] * MAX_FROM_ADDRESSES)
    assert from_domains(f"From: {at_limit}\r\n\r\n".encode()) == ("bank.test",)


async def test_check_dmarc_rejects_without_lookups(dns_server: DnsServer, zone: Zone) -> None:
    resolver = DnsResolver([dns_server.address], timeout=1.0)
    spf = SpfResult(Verdict.PASS, "pass", "mailfrom", "m@evil.test", "evil.test")
    dkim = DkimResult(Verdict.GRAY)
    before = len(zone.queries)
    many = await check_dmarc(resolver, from_domains(_from_with(9_000)), spf, dkim, "k", 5.0)
    assert (many.verdict, many.policy, many.result) == (Verdict.FAIL, DmarcPolicy.REJECT,
                                                        "permerror")
    assert many.reason == "From field with 9000 domains"
    bad = await check_dmarc(resolver, (NO_ADDRESS,), spf, dkim, "k", 5.0)
    assert (bad.verdict, bad.policy) == (Verdict.FAIL, DmarcPolicy.REJECT)
    assert zone.queries[before:] == []
