"""The bounded verdicts service and the Authentication-Results stamp."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from mailmgr.message import (
    DmarcPolicy,
    Envelope,
    InboundMessage,
    ProcessingState,
    SessionFacts,
    Verdict,
)
from mailmgr.verdicts.auth_results import (
    STAMP_KEY,
    message_for_actions,
    stamp,
    stamped_content,
)
from mailmgr.verdicts.dns import DnsResolver
from mailmgr.verdicts.service import VerdictsService
from tests.verdicts.dns_server import DnsServer, Zone
from tests.verdicts.verdicts_samples import message, publish_key, sign


def inbound(content: bytes, mail_from: str = "bounce@example.com",
            ip: str = "192.0.2.10", helo: str = "mta.example.com") -> InboundMessage:
    session = SessionFacts("inp-x", "inbound", ip, helo=helo)
    return InboundMessage("msgid0000001", time.time(), Envelope(mail_from, ("bob@rcpt.test",)),
                          session, content)


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A UDP port that receives queries and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


async def test_all_pass(zone: Zone, dns_server: DnsServer) -> None:
    zone.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    zone.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    publish_key(zone, "example.com")
    service = VerdictsService(DnsResolver([dns_server.address], 1.0), timeout=5.0)
    try:
        auth = await service.compute(inbound(sign(message(), "example.com")))
    finally:
        service.close()
    assert (auth.verdicts.spf, auth.verdicts.dkim, auth.verdicts.dmarc) == (
        Verdict.PASS, Verdict.PASS, Verdict.PASS)
    assert auth.verdicts.dmarc_policy is None
    assert auth.header_value("mx.test") == (
        "mx.test; spf=pass smtp.mailfrom=bounce@example.com; "
        "dkim=pass header.d=example.com header.s=sel; "
        "dmarc=pass header.from=example.com policy.dmarc=reject")


async def test_dmarc_fail_sets_policy_and_null_sender_uses_helo(
    zone: Zone, dns_server: DnsServer
) -> None:
    zone.txt("mta.example.net", "v=spf1 -all")
    zone.txt("_dmarc.example.com", "v=DMARC1; p=quarantine")
    service = VerdictsService(DnsResolver([dns_server.address], 1.0), timeout=5.0)
    try:
        auth = await service.compute(inbound(message(), mail_from="", helo="mta.example.net"))
    finally:
        service.close()
    assert auth.verdicts.spf is Verdict.FAIL and auth.verdicts.dkim is Verdict.GRAY
    assert (auth.verdicts.dmarc, auth.verdicts.dmarc_policy) == (
        Verdict.FAIL, DmarcPolicy.QUARANTINE)
    assert "spf=fail smtp.helo=mta.example.net" in auth.header_value("mx.test")
    assert "dkim=none" in auth.header_value("mx.test")


async def test_silent_nameserver_is_bounded(black_hole: str) -> None:
    service = VerdictsService(DnsResolver([black_hole], 5.0), timeout=0.5)
    started = time.monotonic()
    try:
        auth = await service.compute(inbound(sign(message(), "example.com")))
    finally:
        service.close()
    assert time.monotonic() - started < 1.5
    assert auth.verdicts.spf is Verdict.PROCESSING_FAILED
    assert auth.verdicts.dkim is Verdict.PROCESSING_FAILED
    assert auth.verdicts.dmarc is Verdict.PROCESSING_FAILED
    assert "spf=temperror" in auth.header_value("mx.test")


def test_stamp_prepends_and_strips_only_our_forged_headers() -> None:
    extra = ("Authentication-Results: MX.TEST (forged); spf=pass\r\n"
             "\tsmtp.mailfrom=x@y\r\n"
             "Authentication-Results: other.example; dkim=pass\r\n")
    content = message(extra=extra)
    found = stamp(content, "mx.test", "mx.test; spf=fail smtp.mailfrom=a@b; dkim=none")
    assert len(found.strip) == 1
    out = stamped_content(content, found)
    assert out.startswith(b"Authentication-Results: mx.test;\r\n\tspf=fail smtp.mailfrom=a@b;"
                          b"\r\n\tdkim=none\r\nAuthentication-Results: other.example;")
    assert b"forged" not in out and out.endswith(b"\r\n\r\nHello Bob.\r\n")


def test_message_for_actions_keeps_received_size() -> None:
    original = inbound(message(extra="Authentication-Results: mx.test; spf=pass\r\n"))
    found = stamp(original.content, "mx.test", "mx.test; spf=none")
    state = ProcessingState(action_data=((STAMP_KEY, found.to_text()),))
    seen = message_for_actions(original, state)
    assert seen.content.startswith(b"Authentication-Results: mx.test;\r\n\tspf=none\r\nFrom:")
    assert seen.size == original.size and len(seen.content) != original.size
    assert message_for_actions(original, ProcessingState()) is original


def test_lf_only_message_keeps_its_line_ending() -> None:
    content = b"From: a@example.com\nSubject: x\n\nbody\n"
    out = stamped_content(content, stamp(content, "mx.test", "mx.test; dkim=none"))
    assert out == b"Authentication-Results: mx.test;\n\tdkim=none\n" + content
