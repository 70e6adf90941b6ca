"""RspamdEngine against a real rspamd (offline: marker rules, DNS on the test server) and
loopback servers that are down, hang or answer garbage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from mailmgr.analysis.base import AnalysisError
from mailmgr.analysis.rspamd import RspamdEngine, category, request_headers, result_from_reply
from mailmgr.message import AnalysisResult, AnalysisStatus, Verdict
from tests.analysis.engines import (  # noqa: F401
    GRAY_MARKER,
    PHISH_MARKER,
    PROBE_FROM,
    PROBE_HELO,
    PROBE_IP,
    PROBE_QUEUE_ID,
    PROBE_RCPT,
    PROBE_USER,
    SPAM_MARKER,
    RspamdInstance,
    free_port,
    inbound,
    mail,
    rspamd_analyzer,
    rspamd_fixture,
    stream_server,
)


async def check(url: str, content: bytes, *, seconds: float = 5.0, **message: Any
                ) -> AnalysisResult:
    engine = RspamdEngine(rspamd_analyzer(url, timeout=seconds))
    try:
        return await engine.analyze(inbound(content, **message), None)
    finally:
        await engine.close()


def symbols(result: AnalysisResult) -> set[str]:
    _, _, listed = result.detail.partition(" symbols=")
    return set(listed.split(",")) if listed else set()


async def test_the_spam_marker_is_rejected_as_spam(rspamd: RspamdInstance) -> None:
    result = await check(rspamd.url, mail(f"Buy now! {SPAM_MARKER}\r\n"))
    assert result.status is AnalysisStatus.OK
    assert result.engine == "Rspamd" and result.analyzer == "vade"
    assert result.verdict is Verdict.FAIL
    assert result.value("isPassed") is False
    assert result.value("verdict") == "FAIL"
    assert result.value("category") == "spam"
    score = result.value("score")
    assert isinstance(score, str) and float(score) >= 45.0
    assert score == f"{float(score):.2f}"
    assert result.detail.startswith(f"action=reject score={score}/30.00 symbols=MAILMGR_TEST_SPAM")


async def test_a_clean_message_passes(rspamd: RspamdInstance) -> None:
    result = await check(rspamd.url, mail(), peer_ip="192.0.2.1")
    assert result.verdict is Verdict.PASS, result.detail
    assert result.value("isPassed") is True
    assert result.value("verdict") == "PASS"
    assert result.value("category") == "clean"
    assert result.detail.startswith("action=no action ")
    assert float(str(result.value("score"))) < 10


async def test_the_phishing_marker_is_categorised_as_phishing(rspamd: RspamdInstance) -> None:
    result = await check(rspamd.url, mail(f"Verify your account {PHISH_MARKER}\r\n"))
    assert result.value("isPassed") is False
    assert result.value("category") == "phishing"
    both = await check(rspamd.url, mail(f"{PHISH_MARKER} and {SPAM_MARKER}\r\n"))
    assert both.value("category") == "phishing"  # phishing outranks plain spam


async def test_greylist_passes_with_a_gray_verdict(rspamd: RspamdInstance) -> None:
    # The marker scores 15, between the fixture's greylist (10) and add header (20) thresholds.
    result = await check(rspamd.url, mail(f"Maybe {GRAY_MARKER}\r\n"))
    assert result.detail.startswith("action=greylist "), result.detail
    assert result.verdict is Verdict.GRAY
    assert result.value("verdict") == "GRAY"
    assert result.value("isPassed") is True
    assert result.value("category") == "clean"


async def test_envelope_and_session_reach_rspamd(rspamd: RspamdInstance) -> None:
    probes = {"MAILMGR_TEST_IP", "MAILMGR_TEST_HELO", "MAILMGR_TEST_FROM", "MAILMGR_TEST_RCPT",
              "MAILMGR_TEST_USER", "MAILMGR_TEST_QUEUEID"}
    result = await check(rspamd.url, mail(), peer_ip=PROBE_IP, helo=PROBE_HELO,
                         mail_from=PROBE_FROM, rcpt_to=("first@example.org", PROBE_RCPT),
                         auth_user=PROBE_USER, message_id=PROBE_QUEUE_ID)
    assert probes <= symbols(result), result.detail
    # ... and each one is the value sent, not a coincidence.
    other = await check(rspamd.url, mail(), peer_ip="192.0.2.78", helo="other.mailmgr.test",
                        mail_from="", rcpt_to=("first@example.org",), auth_user=None,
                        message_id="OTHERQUEUEID")
    assert not probes & symbols(other), other.detail


async def test_an_smtputf8_envelope_from_an_ipv6_client_is_analysed(rspamd: RspamdInstance
                                                                    ) -> None:
    result = await check(rspamd.url, mail(), peer_ip="2001:db8::25", helo="mx.exämple.org",
                         mail_from="jörg@exämple.org", rcpt_to=("ñandú@example.org",))
    assert result.status is AnalysisStatus.OK
    assert result.verdict is Verdict.PASS, result.detail


async def test_rspamd_down_is_a_connect_error_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(AnalysisError) as caught:
        await check(f"http://127.0.0.1:{free_port()}", mail())
    assert caught.value.reason == "connect"
    assert time.monotonic() - started < 1.0


async def test_a_hung_rspamd_is_a_timeout_error() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # returns when the client gives up
        writer.close()

    async with stream_server(never_answer) as address:
        url = f"http://{address}"
        started = time.monotonic()
        with pytest.raises(AnalysisError) as caught:
            await check(url, mail(), seconds=0.5)
        elapsed = time.monotonic() - started
    assert caught.value.reason == "timeout"
    assert 0.4 < elapsed < 2.0


async def test_a_connection_closed_without_a_reply_is_a_protocol_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async with stream_server(hang_up) as address:
        url = f"http://{address}"
        with pytest.raises(AnalysisError) as caught:
            await check(url, mail())
    assert caught.value.reason == "protocol"


@asynccontextmanager
async def http_server(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/checkv2", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, b"<html>not rspamd</html>", "not JSON"),
    (200, b"[1, 2]", "not a JSON object"),
    (200, b'{"score": 3.0}', "no action"),
    (200, b'{"action": "reject", "score": "high"}', "no numeric score"),
    (500, b'{"error": "internal"}', "HTTP 500"),
    (404, b"", "HTTP 404"),
])
async def test_a_bad_reply_is_a_protocol_error(status: int, body: bytes, expected: str) -> None:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, body=body, content_type="application/json")

    async with http_server(answer) as url:
        with pytest.raises(AnalysisError) as caught:
            await check(url, mail())
    assert caught.value.reason == "protocol"
    assert expected in caught.value.detail


async def test_the_request_carries_the_message_and_one_rcpt_header_per_recipient() -> None:
    seen: list[tuple[list[tuple[str, str]], bytes, str]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append((list(request.headers.items()), await request.read(), request.path))
        return web.json_response({"action": "add header", "score": 7.5, "required_score": 15,
                                  "symbols": {"BAYES_SPAM": {"score": 5.1},
                                              "R_SPF_ALLOW": {"score": -0.2}}})

    content = mail("hello\r\n")
    async with http_server(answer) as url:
        result = await check(url, content, mail_from="", rcpt_to=("x@example.org",
                                                                  "y@example.org"),
                             peer_ip="2001:db8::1", helo="mx.example.net", auth_user=None)
    (headers, body, path), = seen
    assert path == "/checkv2" and body == content
    names = [name.lower() for name, _ in headers]
    assert [v for n, v in headers if n.lower() == "rcpt"] == ["x@example.org", "y@example.org"]
    assert dict((n.lower(), v) for n, v in headers)["ip"] == "2001:db8::1"
    assert dict((n.lower(), v) for n, v in headers)["helo"] == "mx.example.net"
    assert dict((n.lower(), v) for n, v in headers)["from"] == ""
    assert "user" not in names and "hostname" not in names and "pass" not in names
    assert result.fields == (("isPassed", False), ("verdict", "FAIL"), ("category", "spam"),
                             ("score", "7.50"))
    assert result.detail == "action=add header score=7.50/15.00 symbols=BAYES_SPAM"


async def test_requests_in_flight_stay_within_max_concurrency() -> None:
    active = peak = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await request.read()
        await asyncio.sleep(0.05)
        active -= 1
        return web.json_response({"action": "no action", "score": 0.0})

    async with http_server(slow) as url:
        engine = RspamdEngine(rspamd_analyzer(url, max_concurrency=3))
        try:
            results = await asyncio.gather(*(engine.analyze(inbound(mail()), None)
                                             for _ in range(10)))
        finally:
            await engine.close()
    assert [r.verdict for r in results] == [Verdict.PASS] * 10
    assert peak == 3


async def test_one_session_serves_many_requests_and_close_releases_it() -> None:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"action": "no action", "score": -1.0})

    async with http_server(ok) as url:
        engine = RspamdEngine(rspamd_analyzer(url))
        await engine.analyze(inbound(mail()), None)
        session = engine._session
        result = await engine.analyze(inbound(mail()), None)
        assert engine._session is session and session is not None
        await engine.close()
        assert session.closed
    assert result.value("score") == "-1.00"


@pytest.mark.parametrize(("action", "verdict", "passed"), [
    ("no action", Verdict.PASS, True),
    ("greylist", Verdict.GRAY, True),
    ("soft reject", Verdict.GRAY, False),
    ("add header", Verdict.FAIL, False),
    ("rewrite subject", Verdict.FAIL, False),
    ("reject", Verdict.FAIL, False),
    ("quarantine", Verdict.FAIL, False),  # a custom action
])
def test_action_mapping(action: str, verdict: Verdict, passed: bool) -> None:
    result = result_from_reply("vade", {"action": action, "score": 1})
    assert result.verdict is verdict
    assert result.value("isPassed") is passed
    assert result.value("verdict") == verdict.value


def test_categories_from_symbols() -> None:
    assert category(["CLAM_VIRUS", "PHISHED_OPENPHISH"], False) == "phishing,virus"
    assert category(["SOPHOS_VIRUS"], True) == "virus"
    assert category(["PHISHING"], False) == "phishing"
    assert category(["BAYES_SPAM"], False) == "spam"
    assert category([], True) == "clean"
    # Symbols that scored zero or less are not evidence (DNS failures, allow-lists).
    reply = {"action": "reject", "score": 20, "symbols": {
        "RBL_VIRUSFREE_UNKNOWN_FAIL": {"score": 0.0}, "PHISHING": {"score": -1.0},
        "BAYES_SPAM": {"score": 20.0}}}
    assert result_from_reply("vade", reply).value("category") == "spam"


def test_header_values_with_line_breaks_are_not_sent() -> None:
    headers = request_headers(inbound(b"x", helo="evil\r\nX-Injected: 1"))
    assert "Helo" not in headers and "X-Injected" not in headers
    assert headers["IP"] == "127.0.0.1"
