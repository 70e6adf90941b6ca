"""DMARC: a table of cases, records served by the loopback DNS server, SPF/DKIM results given."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mailmgr.message import DmarcPolicy, Verdict
from mailmgr.verdicts.dkim import DkimResult, DkimSignature
from mailmgr.verdicts.dmarc import check_dmarc, from_domains, organizational_domain
from mailmgr.verdicts.dns import DnsResolver
from mailmgr.verdicts.spf import SpfResult
from tests.verdicts.dns_server import Zone
from tests.verdicts.verdicts_samples import message

P, F, G, E = Verdict.PASS, Verdict.FAIL, Verdict.GRAY, Verdict.PROCESSING_FAILED
NONE, QUAR, REJ = DmarcPolicy.NONE, DmarcPolicy.QUARANTINE, DmarcPolicy.REJECT


@dataclass(frozen=True)
class Case:
    name: str
    records: dict[str, str | tuple[str, ...]]  # _dmarc owner → TXT value(s)
    from_: tuple[str, ...]
    spf: tuple[str, str] | None  # (domain, result) of a checked SPF identity
    dkim: tuple[tuple[str, str], ...]  # (d=, result)
    verdict: Verdict
    policy: DmarcPolicy | None = None
    servfail: tuple[str, ...] = ()


REJECT = "v=DMARC1; p=reject"
CASES = [
    Case("spf-aligned-relaxed", {"example.com": REJECT}, ("example.com",),
         ("bounce.example.com", "pass"), (), P),
    Case("spf-aligned-exact", {"example.com": REJECT}, ("example.com",),
         ("example.com", "pass"), (), P),
    Case("spf-unaligned", {"example.com": REJECT}, ("example.com",),
         ("other.net", "pass"), (), F, REJ),
    Case("spf-strict-subdomain-unaligned", {"example.com": REJECT + "; aspf=s"},
         ("example.com",), ("bounce.example.com", "pass"), (), F, REJ),
    Case("spf-aligned-but-failed", {"example.com": REJECT}, ("example.com",),
         ("example.com", "fail"), (), F, REJ),
    Case("dkim-aligned-relaxed", {"example.com": "v=DMARC1; p=quarantine"}, ("example.com",),
         None, (("mail.example.com", "pass"),), P),
    Case("dkim-unaligned", {"example.com": "v=DMARC1; p=quarantine"}, ("example.com",),
         None, (("other.net", "pass"),), F, QUAR),
    Case("dkim-strict-subdomain-unaligned", {"example.com": REJECT + "; adkim=s"},
         ("example.com",), None, (("mail.example.com", "pass"),), F, REJ),
    Case("dkim-strict-exact", {"example.com": REJECT + "; adkim=s"}, ("example.com",),
         None, (("example.com", "pass"),), P),
    Case("dkim-aligned-but-failed", {"example.com": REJECT}, ("example.com",),
         None, (("example.com", "fail"),), F, REJ),
    Case("dkim-second-signature-aligned", {"example.com": REJECT}, ("example.com",),
         None, (("other.net", "pass"), ("example.com", "pass")), P),
    Case("p-none-fail", {"example.com": "v=DMARC1; p=none"}, ("example.com",),
         None, (), F, NONE),
    Case("no-record", {}, ("example.com",), ("example.com", "pass"), (), G),
    Case("org-fallback-p", {"example.com": "v=DMARC1; p=quarantine"}, ("news.example.com",),
         None, (), F, QUAR),
    Case("org-fallback-sp", {"example.com": "v=DMARC1; p=reject; sp=none"},
         ("news.example.com",), None, (), F, NONE),
    Case("sp-ignored-at-own-record", {"news.example.com": "v=DMARC1; p=reject; sp=none"},
         ("news.example.com",), None, (), F, REJ),
    Case("org-fallback-pass-relaxed", {"example.com": REJECT}, ("news.example.com",),
         ("example.com", "pass"), (), P),
    Case("public-suffix-org", {"example.co.uk": "v=DMARC1; p=quarantine"},
         ("a.b.example.co.uk",), None, (), F, QUAR),
    Case("pct-zero-downgrades", {"example.com": REJECT + "; pct=0"}, ("example.com",),
         None, (), F, QUAR),
    Case("pct-hundred", {"example.com": REJECT + "; pct=100"}, ("example.com",),
         None, (), F, REJ),
    Case("malformed-p-no-rua", {"example.com": "v=DMARC1; p=bogus"}, ("example.com",),
         None, (), G),
    Case("malformed-p-with-rua", {"example.com": "v=DMARC1; p=bogus; rua=mailto:d@example.com"},
         ("example.com",), None, (), F, NONE),
    Case("not-a-dmarc-record", {"example.com": "v=spf1 -all"}, ("example.com",), None, (), G),
    Case("two-records", {"example.com": (REJECT, "v=DMARC1; p=none")}, ("example.com",),
         None, (), G),
    Case("several-from-one-fails", {"example.com": REJECT, "example.org": "v=DMARC1; p=none"},
         ("example.com", "example.org"), None, (("example.org", "pass"),), F, REJ),
    Case("several-from-strictest", {"example.com": "v=DMARC1; p=quarantine",
                                    "example.org": REJECT},
         ("example.com", "example.org"), None, (), F, REJ),
    Case("several-from-all-pass", {"example.com": REJECT, "example.org": REJECT},
         ("example.com", "example.org"), None,
         (("example.com", "pass"), ("example.org", "pass")), P),
    Case("no-from", {}, (), None, (), G),
    Case("servfail", {}, ("example.com",), None, (), E, servfail=("_dmarc.example.com",)),
    Case("uppercase-tags", {"example.com": "v=DMARC1; p=REJECT; ADKIM=r"}, ("example.com",),
         None, (), F, REJ),
]


def _spf(spec: tuple[str, str] | None) -> SpfResult:
    if spec is None:
        return SpfResult(Verdict.GRAY, "none", "mailfrom", "", "")
    domain, result = spec
    verdict = {"pass": P, "fail": F}[result]
    return SpfResult(verdict, result, "mailfrom", f"bounce@{domain}", domain)


def _dkim(spec: tuple[tuple[str, str], ...]) -> DkimResult:
    sigs = tuple(DkimSignature(d, "sel", r) for d, r in spec)
    verdict = P if any(r == "pass" for _, r in spec) else (F if spec else G)
    return DkimResult(verdict, sigs)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_dmarc_table(zone: Zone, resolver: DnsResolver, case: Case) -> None:
    for owner, value in case.records.items():
        zone.txt(f"_dmarc.{owner}", *((value,) if isinstance(value, str) else value))
    zone.servfail.update(case.servfail)
    result = await check_dmarc(resolver, case.from_, _spf(case.spf), _dkim(case.dkim),
                               "message-id", 2.0)
    assert (result.verdict, result.policy) == (case.verdict, case.policy), result


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 20


def test_from_domains_reads_every_address() -> None:
    content = message(from_='"A, B" <a@Example.COM>, b@example.org, c@example.com')
    assert from_domains(content) == ("example.com", "example.org")
    assert from_domains(b"Subject: x\r\n\r\nbody") == ()


def test_organizational_domain_uses_public_suffix_list() -> None:
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organizational_domain("mail.example.com") == "example.com"
