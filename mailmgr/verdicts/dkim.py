"""DKIM (RFC 6376) through dkimpy: every signature verified, keys fetched through our Resolver.

Synchronous (dkimpy is): callers run `check_dkim` in an executor. Owns the per-signature results
and the DKIM verdict; must not decide DMARC alignment (dmarc.py does, from these results). Which
DKIM-Signature fields exist is read with mailmgr.mime (the one header reader); dkimpy verifies.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

import dkim
import dkim.util

from mailmgr.message import Verdict
from mailmgr.mime.headers import read
from mailmgr.verdicts.dns import Outcome, RecordType, Resolver

MAX_SIGNATURES = 10  # a message with more is not worth more DNS traffic; the rest are ignored

# dkimpy logs every failure at ERROR through its default logger; our result carries the reason.
_quiet = logging.getLogger("mailmgr.verdicts.dkim.lib")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


@dataclass(frozen=True)
class DkimSignature:
    """One signature's outcome; `result` is an RFC 8601 dkim result name:
    pass, fail, neutral, temperror or permerror."""

    domain: str
    selector: str
    result: str
    reason: str = ""


@dataclass(frozen=True)
class DkimResult:
    verdict: Verdict
    signatures: tuple[DkimSignature, ...] = ()

    def passing_domains(self) -> tuple[str, ...]:
        return tuple(s.domain for s in self.signatures if s.result == "pass")


def _signature_headers(content: bytes) -> list[bytes]:
    """The DKIM-Signature field values, in order (the same order dkimpy indexes them by)."""
    return [v.encode("utf-8") for v in read(content).get_all("DKIM-Signature")]


def _tags(value: bytes) -> tuple[str, str]:
    try:
        tags = dkim.util.parse_tag_value(value)
    except Exception:  # malformed tag list: reported with empty d= and s=
        return "", ""
    domain = tags.get(b"d", b"").decode("ascii", "replace").strip().lower()
    selector = tags.get(b"s", b"").decode("ascii", "replace").strip()
    return domain, selector


class _KeyLookup:
    """dkimpy's `dnsfunc`: TXT as bytes or None. Remembers whether DNS itself failed, which
    dkimpy cannot tell apart from a missing key."""

    def __init__(self, resolver: Resolver, deadline: float) -> None:
        self._resolver = resolver
        self._deadline = deadline
        self.dns_error = ""
        self.no_key = False

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        self.dns_error = ""
        self.no_key = False
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            self.dns_error = "time budget exhausted"
            return None
        text = name.decode("ascii", "replace")
        answer = self._resolver.lookup_sync(text, RecordType.TXT, min(remaining, float(timeout)))
        if answer.outcome is Outcome.ERROR:
            self.dns_error = answer.reason or "DNS error"
            return None
        keys = [t for t in answer.texts if b"p=" in t] or list(answer.texts)
        self.no_key = not keys
        return keys[0] if keys else None


def _verify_one(content: bytes, index: int, lookup: _KeyLookup) -> tuple[str, str]:
    verifier = dkim.DKIM(content, logger=_quiet)
    try:
        valid = verifier.verify(idx=index, dnsfunc=lookup)
    except dkim.ValidationError as exc:  # body hash mismatch and the like: a bad signature
        return "fail", str(exc)[:200]
    except dkim.DKIMException as exc:
        if lookup.dns_error:
            return "temperror", lookup.dns_error
        return "permerror", str(exc)[:200]
    except Exception as exc:  # a library bug must not stall the message
        return "permerror", type(exc).__name__
    if valid:
        return "pass", ""
    if lookup.dns_error:
        return "temperror", lookup.dns_error
    if lookup.no_key:
        return "permerror", "no key for signature"
    return "fail", "signature did not verify"


def verdict_of(signatures: tuple[DkimSignature, ...]) -> Verdict:
    """semantics.md §4: any valid→PASS; unsigned→GRAY; only DNS errors→PROCESSING_FAILED;
    signed but none valid→FAIL."""
    if not signatures:
        return Verdict.GRAY
    if any(s.result == "pass" for s in signatures):
        return Verdict.PASS
    if all(s.result == "temperror" for s in signatures):
        return Verdict.PROCESSING_FAILED
    return Verdict.FAIL


def may_be_signed(content: bytes) -> bool:
    """False when the header section has no DKIM-Signature field, so the DKIM verdict is GRAY
    without dkimpy. Cheap (the reader's cached section): callers use it to skip the executor."""
    return bool(read(content).get_all("DKIM-Signature"))


UNSIGNED = DkimResult(Verdict.GRAY)


_BARE_CR = re.compile(rb"\r(?!\n)")


def _library_view(content: bytes) -> list[tuple[str, str]] | None:
    """(d, s) of every DKIM-Signature as dkimpy indexes them (`verify(idx=...)`); None when
    dkimpy cannot read the header section at all."""
    try:
        headers, _body = dkim.rfc822_parse(content)
    except Exception:  # dkimpy refuses lines our reader ends the section at
        return None
    return [_tags(value) for name, value in headers if name.lower() == b"dkim-signature"]


def check_dkim(resolver: Resolver, content: bytes, budget: float) -> DkimResult:
    """Verify every DKIM-Signature of `content` (up to MAX_SIGNATURES). Never raises.

    dkimpy is asked for a signature by index, so its list of DKIM-Signature fields must be the
    one header reader's: otherwise a signature of one domain would be recorded as another's (a
    DMARC bypass). A bare CR ends a line for our reader (it becomes CRLF downstream) but not for
    dkimpy, so the message is verified as the next hop gets it (bare CR made CRLF); any other
    disagreement (e.g. obs white space before the colon) fails every signature (permerror)."""
    if not may_be_signed(content):
        return UNSIGNED
    if b"\r" in content and _BARE_CR.search(content):
        content = _BARE_CR.sub(b"\r\n", content)
    deadline = time.monotonic() + max(0.001, budget)
    results: list[DkimSignature] = []
    ours = [_tags(header) for header in _signature_headers(content)]
    if _library_view(content) != ours:
        failed = tuple(DkimSignature(d, s, "permerror", "header section read ambiguously")
                       for d, s in ours[:MAX_SIGNATURES])
        return DkimResult(verdict_of(failed), failed)
    for index, (domain, selector) in enumerate(ours[:MAX_SIGNATURES]):
        if time.monotonic() >= deadline:
            results.append(DkimSignature(domain, selector, "temperror", "time budget exhausted"))
            continue
        result, reason = _verify_one(content, index, _KeyLookup(resolver, deadline))
        results.append(DkimSignature(domain, selector, result, reason))
    signatures = tuple(results)
    return DkimResult(verdict_of(signatures), signatures)
