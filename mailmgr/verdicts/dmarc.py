"""DMARC (RFC 7489) from SPF and DKIM results: record discovery, alignment, policy.

checkdmarc supplies the organizational domain (`get_base_domain`, on publicsuffixlist's bundled
list, offline) and validates tag values (`parse_dmarc_record`, given only the policy tags so it
never does DNS). Ours: retrieval through our Resolver (cache, bound), RFC 7489 §6.6.3 discovery
(From domain, then organizational domain; several records = no policy), the p/rua fallback,
RFC 7489 defaults (checkdmarc follows RFC 9989, which drops pct and changes sp), alignment, `sp`
and `pct`. Must not look at the message beyond the From domains it is given.

From domains (RFC 7489 §6.6.1) come from mailmgr.mime (the one header reader, strict address
lists). Policy: at most MAX_FROM_DOMAINS (5) distinct domains, over all From fields, are
evaluated. More: no lookup at all, DMARC FAIL with policy REJECT, reason "From field with N
domains" (as OpenDMARC's RejectMultiValueFrom), so extra domains can neither hide a p=reject
domain nor cost DNS queries; From fields with more than MAX_FROM_ADDRESSES (50) "@" are not even
parsed (the same verdict; N from a plain scan). Not a bypass either -- DMARC permerror, FAIL with
policy REJECT, reason "From field with no usable address" -- a present From field with no usable
address (malformed list, no mailbox, a domain literal), a header section truncated at the
reader's bound before any From field (a bare CR ends a line for the reader, so a From after one
is a From field). No From field at all stays "none" (GRAY).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from checkdmarc.dmarc import DMARCError, parse_dmarc_record
from checkdmarc.utils import get_base_domain

from mailmgr.message import DmarcPolicy, Verdict
from mailmgr.mime import addresses
from mailmgr.mime.headers import read
from mailmgr.verdicts.dkim import DkimResult
from mailmgr.verdicts.dns import Outcome, RecordType, Resolver
from mailmgr.verdicts.spf import SpfResult

_RECORD = re.compile(r"^v\s*=\s*DMARC1\s*(;|$)", re.IGNORECASE)
_POLICIES = {"none": DmarcPolicy.NONE, "quarantine": DmarcPolicy.QUARANTINE,
             "reject": DmarcPolicy.REJECT}
_DOWNGRADE = {DmarcPolicy.REJECT: DmarcPolicy.QUARANTINE,
              DmarcPolicy.QUARANTINE: DmarcPolicy.NONE, DmarcPolicy.NONE: DmarcPolicy.NONE}
MAX_FROM_DOMAINS = 5
MAX_FROM_ADDRESSES = 50  # more "@" than this in the From fields: not parsed, FAIL/REJECT
_DOMAIN_SCAN = re.compile(r"@([^\s,;:<>()\"\[\]@\\]+)")
NO_ADDRESS = ""  # from_domains' marker: a From field is there, but no usable domain in it
_SEVERITY = {DmarcPolicy.NONE: 0, DmarcPolicy.QUARANTINE: 1, DmarcPolicy.REJECT: 2}


@dataclass(frozen=True)
class DmarcRecord:
    """A usable policy record. `found_at` is where it was published (From or org domain)."""

    found_at: str
    p: DmarcPolicy
    sp: DmarcPolicy
    adkim_strict: bool = False
    aspf_strict: bool = False
    pct: int = 100


@dataclass(frozen=True)
class DmarcResult:
    """`result` is the RFC 8601 dmarc result (pass, fail, none, temperror, permerror); `policy`
    is set only when DMARC fails (the policy to apply, after `sp` and `pct`)."""

    verdict: Verdict
    result: str
    header_from: str = ""
    policy: DmarcPolicy | None = None
    published: DmarcPolicy | None = None  # the record's p/sp for header.from, for policy.dmarc
    reason: str = ""


def from_domains(content: bytes) -> tuple[str, ...]:
    """The distinct domains of every address in every From field, lower-case, in order; () when
    there is no From field; (NO_ADDRESS,) when a From field yields no usable domain or the header
    section was truncated before any From field (see the module docstring)."""
    section = read(content)
    values = section.get_all("From")
    if not values:
        # A header section cut at a bound: a From may be hidden past it, so no bypass.
        return (NO_ADDRESS,) if section.truncated else ()
    if sum(v.count("@") for v in values) > MAX_FROM_ADDRESSES:
        # Not worth a full parse (it runs on the event loop): the verdict is FAIL/REJECT either
        # way; the domains found by a plain scan give the count for the reason.
        found = dict.fromkeys(d.rstrip(".").lower() for v in values
                              for d in _DOMAIN_SCAN.findall(v))
        return tuple(found) if len(found) > MAX_FROM_DOMAINS else (NO_ADDRESS,)
    domains: dict[str, None] = {}
    for value in values:
        mailboxes = addresses.parse(value)
        if not mailboxes:
            return (NO_ADDRESS,)
        for mailbox in mailboxes:
            domain = mailbox.domain.rstrip(".").lower()
            if not domain or domain.startswith("["):
                return (NO_ADDRESS,)
            domains.setdefault(domain, None)
    return tuple(domains)


def organizational_domain(domain: str) -> str:
    return str(get_base_domain(domain))


def _tags(record: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in record.split(";"):
        name, eq, value = part.partition("=")
        if eq and name.strip():
            tags.setdefault(name.strip().lower(), value.strip())
    return tags


def parse_record(text: str, found_at: str) -> DmarcRecord | None:
    """A record as RFC 7489 §6.6.3 reads it; None when DMARC does not apply (no valid p and no
    rua to fall back to p=none)."""
    tags = _tags(text)
    policy_tags = ["v=DMARC1"] + [
        f"{name}={tags[name]}" for name in ("p", "sp", "adkim", "aspf") if name in tags
    ]
    try:
        parsed = parse_dmarc_record("; ".join(policy_tags), found_at)["tags"]
        valid = "p" in tags
    except DMARCError:
        parsed, valid = {}, False
    except Exception:  # a checkdmarc bug must not make DMARC fail the message
        parsed, valid = {}, False
    if not valid:
        if "mailto:" not in tags.get("rua", "").lower():
            return None
        return DmarcRecord(found_at, DmarcPolicy.NONE, DmarcPolicy.NONE)
    p = _POLICIES[str(parsed["p"]["value"]).lower()]
    sp_tag = parsed.get("sp")
    sp = _POLICIES[str(sp_tag["value"]).lower()] if sp_tag and sp_tag["explicit"] else p
    pct_text = tags.get("pct", "100")
    pct = int(pct_text) if pct_text.isdigit() and int(pct_text) <= 100 else 100
    return DmarcRecord(
        found_at, p, sp,
        adkim_strict=str(parsed["adkim"]["value"]).lower() == "s",
        aspf_strict=str(parsed["aspf"]["value"]).lower() == "s",
        pct=pct,
    )


class _Lookup:
    def __init__(self, resolver: Resolver, timeout: float) -> None:
        self.resolver = resolver
        self.timeout = timeout

    async def records(self, domain: str) -> tuple[str, ...] | None:
        """The v=DMARC1 records at `domain`; None on a DNS failure."""
        answer = await self.resolver.lookup(f"_dmarc.{domain}", RecordType.TXT, self.timeout)
        if answer.outcome is Outcome.ERROR:
            return None
        texts = (t.decode("utf-8", "replace").strip() for t in answer.texts)
        return tuple(t for t in texts if _RECORD.match(t))

    async def discover(self, domain: str) -> DmarcRecord | str | None:
        """The record for `domain` (a str reason when DMARC does not apply; None on DNS
        failure)."""
        org = organizational_domain(domain)
        for candidate in dict.fromkeys((domain, org)):
            found = await self.records(candidate)
            if found is None:
                return None
            if len(found) > 1:
                return f"several DMARC records at {candidate}"
            if found:
                record = parse_record(found[0], candidate)
                return record if record is not None else f"no valid policy at {candidate}"
        return "no DMARC record"


def _aligned(identifier: str, from_domain: str, strict: bool) -> bool:
    identifier = identifier.lower().rstrip(".")
    if not identifier:
        return False
    if strict:
        return identifier == from_domain
    return organizational_domain(identifier) == organizational_domain(from_domain)


def _sampled(pct: int, sample_key: str) -> bool:
    """pct sampling, deterministic per message so a retry or explain run agrees."""
    if pct >= 100:
        return True
    digest = hashlib.sha256(sample_key.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < pct


async def _evaluate(lookup: _Lookup, domain: str, spf: SpfResult, dkim: DkimResult,
                    sample_key: str) -> DmarcResult:
    found = await lookup.discover(domain)
    if found is None:
        return DmarcResult(Verdict.PROCESSING_FAILED, "temperror", domain, reason="DNS error")
    if isinstance(found, str):
        return DmarcResult(Verdict.GRAY, "none", domain, reason=found)
    published = found.p if found.found_at == domain else found.sp
    spf_ok = spf.verdict is Verdict.PASS and _aligned(spf.domain, domain, found.aspf_strict)
    dkim_ok = any(_aligned(d, domain, found.adkim_strict) for d in dkim.passing_domains())
    if spf_ok or dkim_ok:
        return DmarcResult(Verdict.PASS, "pass", domain, published=published)
    policy = published if _sampled(found.pct, sample_key + domain) else _DOWNGRADE[published]
    return DmarcResult(Verdict.FAIL, "fail", domain, policy, published,
                       reason="no aligned SPF or DKIM pass")


async def check_dmarc(resolver: Resolver, domains: tuple[str, ...], spf: SpfResult,
                      dkim: DkimResult, sample_key: str, budget: float) -> DmarcResult:
    """DMARC for the message's From domains (as `from_domains` gives them). With several
    domains (at most MAX_FROM_DOMAINS; more, or NO_ADDRESS, is a FAIL/REJECT without DNS) each
    is evaluated: any failure wins (the strictest policy), then a DNS error, then any pass."""
    if not domains:
        return DmarcResult(Verdict.GRAY, "none", reason="no From address")
    if NO_ADDRESS in domains:
        return DmarcResult(Verdict.FAIL, "permerror", policy=DmarcPolicy.REJECT,
                           reason="From field with no usable address")
    if len(domains) > MAX_FROM_DOMAINS:
        return DmarcResult(Verdict.FAIL, "permerror", policy=DmarcPolicy.REJECT,
                           reason=f"From field with {len(domains)} domains")
    lookup = _Lookup(resolver, budget)
    results = [await _evaluate(lookup, d, spf, dkim, sample_key) for d in domains]
    failures = [r for r in results if r.verdict is Verdict.FAIL]
    if failures:
        return max(failures, key=lambda r: _SEVERITY[r.policy or DmarcPolicy.NONE])
    for verdict in (Verdict.PROCESSING_FAILED, Verdict.PASS):
        for result in results:
            if result.verdict is verdict:
                return result
    return results[0]
