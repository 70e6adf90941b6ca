"""The DNSBL engine against the loopback DNS server: IP and domain zones, code names, refusals,
failures, the RCPT-time result reused after the 250, bounds and hostile names."""

from __future__ import annotations

import asyncio
import base64
import quopri
import time

import pytest

from mailmgr.analysis.base import AnalysisError
from mailmgr.analysis.dnsbl import DnsblEngine, ip_query_prefix
from mailmgr.analysis.urls import body_domains, normalise_domain
from mailmgr.config.models import (
    Analyzer,
    AnalyzerEngine,
    DnsblSettings,
    DnsblZone,
    DnsblZoneType,
)
from mailmgr.message import (
    AnalysisResult,
    AnalysisStatus,
    Envelope,
    InboundMessage,
    SessionFacts,
    Verdict,
)
from mailmgr.verdicts.dns import DnsResolver
from tests.verdicts.dns_server import DnsServer, Zone

ZEN = "zen.dnsbl.test"
DBL = "dbl.dnsbl.test"
IP_ZONE = DnsblZone(ZEN, DnsblZoneType.IP, (("127.0.0.2", "sbl"), ("127.0.0.4", "xbl")))
DOMAIN_ZONE = DnsblZone(DBL, DnsblZoneType.DOMAIN, (("127.0.1.2", "spam-domain"),))


def make_engine(dns_server: DnsServer, *zones: DnsblZone, include_private: bool = True,
                timeout: float = 2.0, max_body_domains: int = 20) -> DnsblEngine:
    settings = DnsblSettings(zones=zones or (IP_ZONE, DOMAIN_ZONE),
                             include_private=include_private,
                             max_body_domains=max_body_domains, timeout=timeout)
    analyzer = Analyzer("spamhaus", "arn:aws:ses:us-east-1:123456789012:addon-instance/ai-x",
                        AnalyzerEngine.DNSBL, settings)
    return DnsblEngine(analyzer, DnsResolver([dns_server.address], timeout=1.0))


def message(content: bytes, peer_ip: str = "127.0.0.9", helo: str = "client.test",
            mail_from: str = "a@sender.test") -> InboundMessage:
    return InboundMessage(
        id="m1", received_at=0.0,
        envelope=Envelope(mail_from, ("rcpt@dest.test",)),
        session=SessionFacts("inbound-id", "inbound", peer_ip, helo=helo),
        content=content,
    )


def plain(body: str, from_: str = "x@clean.test") -> bytes:
    return f"From: {from_}\r\nSubject: hi\r\n\r\n{body}\r\n".encode()


def asked(zone: Zone, suffix: str = "") -> list[str]:
    return [name for name, _ in zone.queries if name.endswith(suffix)]


def fields(result: AnalysisResult) -> dict[str, object]:
    return dict(result.fields)


# --- IP zones --------------------------------------------------------------------------------


async def test_listed_ipv4_named_by_code(dns_server: DnsServer, zone: Zone) -> None:
    zone.add(f"2.0.0.127.{ZEN}", "A", "127.0.0.2").add(f"2.0.0.127.{ZEN}", "A", "127.0.0.4")
    result = await make_engine(dns_server).analyze_session("127.0.0.2", "", "")
    assert result.status is AnalysisStatus.OK
    assert result.engine == "Dnsbl" and result.analyzer == "spamhaus"
    assert result.verdict is Verdict.FAIL
    assert fields(result) == {"isListed": True, "listedOn": "sbl,xbl"}
    assert "client 127.0.0.2 on zen.dnsbl.test" in result.detail
    assert asked(zone) == [f"2.0.0.127.{ZEN}"]


async def test_unmapped_code_is_zone_and_address(dns_server: DnsServer, zone: Zone) -> None:
    zone.add(f"2.0.0.127.{ZEN}", "A", "127.0.0.10")
    result = await make_engine(dns_server).analyze_session("127.0.0.2", "", "")
    assert fields(result)["listedOn"] == f"{ZEN}:127.0.0.10"


async def test_listed_ipv6_nibbles(dns_server: DnsServer, zone: Zone) -> None:
    nibbles = ".".join(reversed("2a001450400100000000000000000001"))
    zone.add(f"{nibbles}.{ZEN}", "A", "127.0.0.2")
    engine = make_engine(dns_server, include_private=False)
    result = await engine.analyze_session("2a00:1450:4001::1", "", "")
    assert fields(result) == {"isListed": True, "listedOn": "sbl"}
    assert asked(zone) == [f"{nibbles}.{ZEN}"]
    assert len(nibbles.split(".")) == 32


async def test_not_listed(dns_server: DnsServer, zone: Zone) -> None:
    result = await make_engine(dns_server).analyze_session("127.0.0.3", "", "")
    assert result.status is AnalysisStatus.OK and result.verdict is Verdict.PASS
    assert fields(result) == {"isListed": False, "listedOn": ""}
    assert asked(zone) == [f"3.0.0.127.{ZEN}"]


@pytest.mark.parametrize("peer", ["127.0.0.2", "10.1.2.3", "192.168.0.1", "169.254.1.1",
                                  "0.0.0.0", "::1", "fe80::1", "fd00::1", "::", "240.0.0.1",
                                  "100.64.0.1", "not-an-address", ""])
async def test_private_client_skipped(dns_server: DnsServer, zone: Zone, peer: str) -> None:
    engine = make_engine(dns_server, include_private=False)
    result = await engine.analyze_session(peer, "", "")
    assert fields(result) == {"isListed": False, "listedOn": ""}
    assert result.verdict is Verdict.PASS
    assert "nothing to query" in result.detail
    assert zone.queries == []


async def test_ipv4_mapped_asked_as_ipv4(dns_server: DnsServer, zone: Zone) -> None:
    zone.add(f"2.0.0.127.{ZEN}", "A", "127.0.0.2")
    result = await make_engine(dns_server).analyze_session("::ffff:127.0.0.2", "", "")
    assert fields(result)["listedOn"] == "sbl"
    assert asked(zone) == [f"2.0.0.127.{ZEN}"]
    zone.queries.clear()
    public = make_engine(dns_server, include_private=False)
    await public.analyze_session("::ffff:8.8.4.4", "", "")
    assert asked(zone) == [f"4.4.8.8.{ZEN}"]
    assert ip_query_prefix("::ffff:10.0.0.1", include_private=False) is None


# --- answers that are not listings -----------------------------------------------------------


async def test_refusal_code_is_an_error(dns_server: DnsServer, zone: Zone) -> None:
    zone.add(f"2.0.0.127.{ZEN}", "A", "127.255.255.254")
    with pytest.raises(AnalysisError) as caught:
        await make_engine(dns_server).analyze_session("127.0.0.2", "", "")
    assert caught.value.reason == "refused"
    assert "127.255.255.254" in caught.value.detail


async def test_answer_outside_loopback_is_an_error(dns_server: DnsServer, zone: Zone) -> None:
    zone.add(f"2.0.0.127.{ZEN}", "A", "192.0.2.1")
    with pytest.raises(AnalysisError) as caught:
        await make_engine(dns_server).analyze_session("127.0.0.2", "", "")
    assert caught.value.reason == "dns"
    assert "outside 127.0.0.0/8" in caught.value.detail


async def test_servfail_is_an_error(dns_server: DnsServer, zone: Zone) -> None:
    zone.servfail.add(f"2.0.0.127.{ZEN}")
    with pytest.raises(AnalysisError) as caught:
        await make_engine(dns_server).analyze_session("127.0.0.2", "", "")
    assert caught.value.reason == "dns"
    assert "SERVFAIL" in caught.value.detail


async def test_timeout_is_an_error_within_the_budget(dns_server: DnsServer, zone: Zone) -> None:
    zone.timeout.add(f"2.0.0.127.{ZEN}")
    engine = make_engine(dns_server, timeout=0.4)
    started = time.monotonic()
    with pytest.raises(AnalysisError) as caught:
        await engine.analyze_session("127.0.0.2", "mail.slow.test", "a@slow.test")
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == "dns" and "timeout" in caught.value.detail


async def test_listing_wins_over_failed_queries(dns_server: DnsServer, zone: Zone) -> None:
    zone.servfail.add(f"2.0.0.127.{ZEN}")
    zone.add(f"evil.test.{DBL}", "A", "127.0.1.2")
    result = await make_engine(dns_server).analyze_session("127.0.0.2", "", "x@evil.test")
    assert result.status is AnalysisStatus.OK
    assert fields(result) == {"isListed": True, "listedOn": "spam-domain"}
    assert "MAIL FROM evil.test on dbl.dnsbl.test" in result.detail


async def test_cancellation_leaves_no_task(dns_server: DnsServer, zone: Zone) -> None:
    zone.timeout.update({f"2.0.0.127.{ZEN}", f"slow.test.{DBL}"})
    engine = make_engine(dns_server, timeout=5.0)
    before = asyncio.all_tasks()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await engine.analyze_session("127.0.0.2", "slow.test", "a@slow.test")
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == before
    await engine.close()


# --- domain zones ----------------------------------------------------------------------------


async def test_helo_domain_and_its_organizational_domain(dns_server: DnsServer, zone: Zone
                                                         ) -> None:
    zone.add(f"evil.test.{DBL}", "A", "127.0.1.2")
    result = await make_engine(dns_server).analyze_session("127.0.0.3", "Mail.EVIL.test.", "")
    assert fields(result) == {"isListed": True, "listedOn": "spam-domain"}
    assert "HELO evil.test" in result.detail
    assert sorted(asked(zone, DBL)) == [f"evil.test.{DBL}", f"mail.evil.test.{DBL}"]


async def test_mail_from_domain(dns_server: DnsServer, zone: Zone) -> None:
    zone.add(f"sender.test.{DBL}", "A", "127.0.1.2")
    result = await make_engine(dns_server).analyze_session("127.0.0.3", "", "bob@Sender.Test")
    assert fields(result)["listedOn"] == "spam-domain"
    empty = await make_engine(dns_server).analyze_session("127.0.0.3", "", "")
    assert fields(empty)["isListed"] is False


@pytest.mark.parametrize("helo", ["[127.0.0.1]", "[IPv6:::1]", "127.0.0.1",
                                  "a" * 300 + ".test", "x..test", "localhost", "a_b c.test",
                                  "évil\u200b\u2028.test", "%65vil.test"])
async def test_hostile_helo_not_asked(dns_server: DnsServer, zone: Zone, helo: str) -> None:
    result = await make_engine(dns_server).analyze_session("8.8.8.8", helo, "")
    assert fields(result)["isListed"] is False
    assert asked(zone, DBL) == []


async def test_name_too_long_for_the_zone(dns_server: DnsServer, zone: Zone) -> None:
    """A HELO whose query name would pass 253 characters: only its registered domain fits."""
    helo = ("a" * 60 + ".") * 4 + "test"
    await make_engine(dns_server).analyze_session("127.0.0.3", helo, "")
    assert asked(zone, DBL) == ["a" * 60 + f".test.{DBL}"]


async def test_idn_helo_asked_as_a_labels(dns_server: DnsServer, zone: Zone) -> None:
    zone.add(f"xn--bcher-kva.test.{DBL}", "A", "127.0.1.2")
    result = await make_engine(dns_server).analyze_session("127.0.0.3", "BÜCHER.test", "")
    assert fields(result)["isListed"] is True


async def test_from_header_domain(dns_server: DnsServer, zone: Zone) -> None:
    zone.add(f"phish.test.{DBL}", "A", "127.0.1.2")
    engine = make_engine(dns_server)
    result = await engine.analyze(message(plain("hello", 'Bank <support@PHISH.test>')), None)
    assert fields(result) == {"isListed": True, "listedOn": "spam-domain"}
    assert "From phish.test" in result.detail


async def test_url_in_plain_body(dns_server: DnsServer, zone: Zone) -> None:
    zone.add(f"evil.test.{DBL}", "A", "127.0.1.2")
    body = "Click HTTP://user:pw@Login.EVIL.Test:8443/path?q=1 now."
    result = await make_engine(dns_server).analyze(message(plain(body)), None)
    assert fields(result) == {"isListed": True, "listedOn": "spam-domain"}
    assert "URL evil.test" in result.detail
    assert f"login.evil.test.{DBL}" in asked(zone)


async def test_url_with_userinfo_is_the_host(dns_server: DnsServer, zone: Zone) -> None:
    zone.add(f"evil.test.{DBL}", "A", "127.0.1.2")
    zone.add(f"bank.test.{DBL}", "A", "127.0.1.2")
    result = await make_engine(dns_server).analyze(
        message(plain("see http://user@evil.test/ and https://bank.test@evil.test/x")), None)
    assert fields(result)["isListed"] is True
    assert f"bank.test.{DBL}" not in asked(zone)


def mime(cte: str, payload: bytes, subtype: str = "html") -> bytes:
    return (b"From: x@clean.test\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/alternative; boundary=b1\r\n\r\n"
            b"--b1\r\nContent-Type: text/plain\r\n\r\nno links here\r\n"
            b"--b1\r\nContent-Type: text/" + subtype.encode() + b"; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n" + payload +
            b"\r\n--b1--\r\n")


async def test_url_in_quoted_printable_html(dns_server: DnsServer, zone: Zone) -> None:
    zone.add(f"hidden.test.{DBL}", "A", "127.0.1.2")
    html = ('<a href="https://www.hidden.test/' + "x" * 100 + '">go</a>').encode()
    encoded = quopri.encodestring(html)
    assert b"=\n" in encoded or b"=\r\n" in encoded  # the host is split by a soft line break
    result = await make_engine(dns_server).analyze(message(mime("quoted-printable", encoded)),
                                                   None)
    assert fields(result)["isListed"] is True


async def test_url_in_base64_text(dns_server: DnsServer, zone: Zone) -> None:
    zone.add(f"xn--bcher-kva.test.{DBL}", "A", "127.0.1.2")
    text = "Angebot: http://bücher.test/ jetzt".encode()
    result = await make_engine(dns_server).analyze(
        message(mime("base64", base64.encodebytes(text), "plain")), None)
    assert fields(result)["isListed"] is True


async def test_attachment_that_is_not_text_not_scanned(dns_server: DnsServer, zone: Zone
                                                       ) -> None:
    zone.add(f"evil.test.{DBL}", "A", "127.0.1.2")
    payload = base64.encodebytes(b"http://evil.test/")
    content = mime("base64", payload).replace(b"text/html", b"application/octet-stream")
    result = await make_engine(dns_server).analyze(message(content), None)
    assert fields(result)["isListed"] is False


# --- the RCPT-time result after the 250 ------------------------------------------------------


async def test_early_result_reused_not_asked_again(dns_server: DnsServer, zone: Zone) -> None:
    engine = make_engine(dns_server)
    early = await engine.analyze_session("127.0.0.3", "mail.client.test", "a@sender.test")
    assert fields(early)["isListed"] is False
    session_names = set(asked(zone))
    assert f"3.0.0.127.{ZEN}" in session_names and f"sender.test.{DBL}" in session_names
    zone.queries.clear()
    zone.add(f"3.0.0.127.{ZEN}", "A", "127.0.0.2")  # listed since: the early part stands
    zone.add(f"url.test.{DBL}", "A", "127.0.1.2")
    msg = message(plain("http://url.test/ http://sender.test/"), peer_ip="127.0.0.3",
                  helo="mail.client.test", mail_from="a@sender.test")
    result = await engine.analyze(msg, early)
    assert fields(result) == {"isListed": True, "listedOn": "spam-domain"}
    assert set(asked(zone)).isdisjoint(session_names)
    assert sorted(asked(zone)) == [f"clean.test.{DBL}", f"url.test.{DBL}"]


async def test_early_listing_kept(dns_server: DnsServer, zone: Zone) -> None:
    zone.add(f"2.0.0.127.{ZEN}", "A", "127.0.0.2")
    zone.add(f"url.test.{DBL}", "A", "127.0.1.2")
    engine = make_engine(dns_server)
    early = await engine.analyze_session("127.0.0.2", "", "")
    result = await engine.analyze(message(plain("http://url.test/"), peer_ip="127.0.0.2",
                                          helo="", mail_from=""), early)
    assert fields(result) == {"isListed": True, "listedOn": "sbl,spam-domain"}
    assert "client 127.0.0.2" in result.detail and "URL url.test" in result.detail


async def test_failed_early_result_redone(dns_server: DnsServer, zone: Zone) -> None:
    zone.add(f"2.0.0.127.{ZEN}", "A", "127.0.0.2")
    failed = AnalysisResult("spamhaus", "Dnsbl", AnalysisStatus.FAILED,
                            Verdict.PROCESSING_FAILED, detail="dns: timeout")
    result = await make_engine(dns_server).analyze(
        message(plain("no links"), peer_ip="127.0.0.2"), failed)
    assert fields(result) == {"isListed": True, "listedOn": "sbl"}
    assert f"2.0.0.127.{ZEN}" in asked(zone)


async def test_message_errors_without_listing_raise(dns_server: DnsServer, zone: Zone) -> None:
    engine = make_engine(dns_server)
    early = await engine.analyze_session("127.0.0.3", "", "")
    zone.servfail.add(f"url.test.{DBL}")
    with pytest.raises(AnalysisError):
        await engine.analyze(message(plain("http://url.test/"), peer_ip="127.0.0.3"), early)


# --- bounds ----------------------------------------------------------------------------------


async def test_many_urls_bounded(dns_server: DnsServer, zone: Zone) -> None:
    body = "\r\n".join(f"http://host{i}.spam{i}.test/" for i in range(2000))
    engine = make_engine(dns_server, DOMAIN_ZONE, max_body_domains=7)
    result = await engine.analyze(message(plain(body), helo="", mail_from=""), None)
    assert fields(result)["isListed"] is False
    # the From domain, then 7 body names (hosts and their organizational domains)
    assert len(asked(zone)) == 8


async def test_huge_body_time_bounded(dns_server: DnsServer, zone: Zone) -> None:
    line = "filler text http://a.b.c.spam.test/x?y=z " * 20 + "\r\n"
    content = plain(line * 40_000)  # ~32 MB
    late = f"http://late.test/ {'x' * 80}\r\n".encode()
    content += late
    zone.add(f"late.test.{DBL}", "A", "127.0.1.2")
    started = time.monotonic()
    result = await make_engine(dns_server).analyze(message(content), None)
    assert time.monotonic() - started < 2.0
    assert fields(result)["isListed"] is False  # past the scanned bytes
    assert f"late.test.{DBL}" not in asked(zone)


def test_domain_normalisation() -> None:
    assert normalise_domain("Example.COM.") == "example.com"
    assert normalise_domain("Bücher.Example") == "xn--bcher-kva.example"
    assert normalise_domain("[192.0.2.1]") is None
    assert normalise_domain("192.0.2.1") is None
    assert normalise_domain("a" * 64 + ".test") is None
    assert normalise_domain("-bad.test") is None
    content = plain("http://[2001:db8::1]/ http://192.0.2.1/ https://OK.test. ftp://ftp.test/")
    assert body_domains(content, 10) == ("ok.test",)


async def test_a_session_retries_a_failed_rcpt_analysis_at_its_next_mail(
    dns_server: DnsServer, zone: Zone
) -> None:
    """A later transaction with the same HELO and sender reuses the session's answer, but not
    a failed one: a lookup that timed out once must not exempt a listed client from a DENY
    on isListed for the rest of its session (up to 1000 messages)."""
    from mailmgr.analysis.service import AnalysisService, AnalysisSwitch
    from mailmgr.ingress.analysis import TransactionAnalysis

    zone.timeout.add(f"2.0.0.127.{ZEN}")
    zone.add(f"2.0.0.127.{ZEN}", "A", "127.0.0.2")
    service = AnalysisService([make_engine(dns_server, IP_ZONE, timeout=0.3)], timeout=5)
    analysis = TransactionAnalysis(AnalysisSwitch(service))
    facts = SessionFacts("inbound-id", "inbound", "127.0.0.2", helo="client.test")
    analysis.begin(facts, "a@sender.test")
    first = (await analysis.results()).get("spamhaus")
    assert first is not None and first.status is AnalysisStatus.FAILED
    zone.timeout.clear()  # the list answers again
    analysis.begin(facts, "a@sender.test")  # the session's next MAIL, same HELO and sender
    second = (await analysis.results()).get("spamhaus")
    assert second is not None and second.value("isListed") is True
    analysis.begin(facts, "a@sender.test")  # an OK answer is reused: no new query
    asked = len(zone.queries)
    assert (await analysis.results()).get("spamhaus") == second
    assert len(zone.queries) == asked
    analysis.close()
