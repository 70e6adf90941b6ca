"""DKIM through dkimpy with keys published on the loopback DNS server: every signature counts."""

from __future__ import annotations

import base64

import dkim
import pytest

from mailmgr.message import Verdict
from mailmgr.verdicts.dkim import check_dkim
from mailmgr.verdicts.dns import DnsResolver, RecordType
from tests.verdicts.dns_server import Zone
from tests.verdicts.verdicts_samples import message, publish_key, rsa_key, sign


def test_rsa_2048_signature_passes(zone: Zone, resolver: DnsResolver) -> None:
    publish_key(zone, "example.com")
    result = check_dkim(resolver, sign(message(), "example.com"), 5.0)
    assert result.verdict is Verdict.PASS
    assert [(s.domain, s.selector, s.result) for s in result.signatures] == [
        ("example.com", "sel", "pass")]
    assert ("sel._domainkey.example.com", "TXT") in zone.queries


def test_ed25519_signature_passes(zone: Zone, resolver: DnsResolver) -> None:
    pytest.importorskip("nacl", reason="dkimpy needs PyNaCl for ed25519 (not installed)")
    import nacl.signing

    key = nacl.signing.SigningKey.generate()
    private = base64.b64encode(bytes(key))
    public = base64.b64encode(bytes(key.verify_key)).decode()
    zone.txt("ed._domainkey.example.com", f"v=DKIM1; k=ed25519; p={public}")
    content = message()
    header = dkim.sign(content, b"ed", b"example.com", private,
                       signature_algorithm=b"ed25519-sha256")
    result = check_dkim(resolver, bytes(header) + content, 5.0)
    assert result.verdict is Verdict.PASS


def test_tampered_body_fails(zone: Zone, resolver: DnsResolver) -> None:
    publish_key(zone, "example.com")
    signed = sign(message(body="Pay 10 EUR.\r\n"), "example.com")
    result = check_dkim(resolver, signed.replace(b"10 EUR", b"99 EUR"), 5.0)
    assert result.verdict is Verdict.FAIL
    assert result.signatures[0].result == "fail"


def test_unknown_selector_fails(zone: Zone, resolver: DnsResolver) -> None:
    publish_key(zone, "example.com", "sel")
    result = check_dkim(resolver, sign(message(), "example.com", selector="other"), 5.0)
    assert result.verdict is Verdict.FAIL
    assert result.signatures[0].result == "permerror"


def test_two_signatures_only_second_valid_passes(zone: Zone, resolver: DnsResolver) -> None:
    publish_key(zone, "good.example")
    inner = sign(message(), "good.example")
    outer = sign(inner, "bad.example", selector="missing")  # prepended: index 0, no key
    result = check_dkim(resolver, outer, 5.0)
    assert [(s.domain, s.result) for s in result.signatures] == [
        ("bad.example", "permerror"), ("good.example", "pass")]
    assert result.verdict is Verdict.PASS


def test_unsigned_is_gray(resolver: DnsResolver) -> None:
    result = check_dkim(resolver, message(), 5.0)
    assert result.verdict is Verdict.GRAY and result.signatures == ()


def test_servfail_on_key_is_processing_failed(zone: Zone, resolver: DnsResolver) -> None:
    zone.servfail.add("sel._domainkey.example.com")
    result = check_dkim(resolver, sign(message(), "example.com"), 5.0)
    assert result.verdict is Verdict.PROCESSING_FAILED
    assert result.signatures[0].result == "temperror"


def test_dns_error_plus_bad_signature_is_fail(zone: Zone, resolver: DnsResolver) -> None:
    zone.servfail.add("sel._domainkey.down.example")
    publish_key(zone, "example.com")
    signed = sign(sign(message(), "down.example"), "example.com")
    result = check_dkim(resolver, signed.replace(b"Hello Bob", b"Hello Eve"), 5.0)
    assert result.verdict is Verdict.FAIL


def test_malformed_signature_is_fail(resolver: DnsResolver) -> None:
    content = b"DKIM-Signature: v=1; garbage\r\n" + message()
    result = check_dkim(resolver, content, 5.0)
    assert result.verdict is Verdict.FAIL
    assert result.signatures[0].result == "permerror"


def test_key_is_fetched_once_per_ttl(zone: Zone, resolver: DnsResolver) -> None:
    publish_key(zone, "example.com")
    signed = sign(message(), "example.com")
    assert check_dkim(resolver, signed, 5.0).verdict is Verdict.PASS
    assert check_dkim(resolver, signed, 5.0).verdict is Verdict.PASS
    assert zone.queries.count(("sel._domainkey.example.com", "TXT")) == 1
    cached = resolver.cache.get("sel._domainkey.example.com", RecordType.TXT)
    assert cached is not None and cached.texts == (rsa_key()[1].encode(),)
