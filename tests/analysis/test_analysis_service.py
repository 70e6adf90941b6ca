"""The analysis service with real engines and misbehaving servers: the overall bound, FAILED
results instead of exceptions, the spam/virus verdicts, and results surviving the spool."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmgr.analysis.service import AnalysisService, AnalysisSwitch, combine
from mailmgr.config.models import (
    Analyzer,
    AnalyzerEngine,
    DnsblSettings,
    DnsblZone,
    DnsblZoneType,
)
from mailmgr.message import (
    AnalysisResult,
    AnalysisResults,
    AnalysisStatus,
    ProcessingState,
    Verdict,
    Verdicts,
    new_message_id,
)
from mailmgr.spool.store import SpoolStore
from mailmgr.verdicts.dns import DnsResolver
from tests.analysis.engines import (  # noqa: F401
    EICAR,
    ClamdInstance,
    clamav_analyzer,
    clamd_fixture,
    inbound,
    mail,
    rspamd_analyzer,
)
from tests.verdicts.dns_server import DnsServer, Zone


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A TCP listener that accepts (in the kernel backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def dnsbl(zone: str = "zen.svc.test") -> Analyzer:
    return Analyzer("spamhaus", "", AnalyzerEngine.DNSBL, DnsblSettings(
        zones=(DnsblZone(zone, DnsblZoneType.IP),), include_private=True, timeout=2.0))


def service(*analyzers: Analyzer, resolver: DnsResolver | None = None,
            timeout: float = 5.0) -> AnalysisService:
    from mailmgr.analysis.registry import build_engines

    resolver = resolver or DnsResolver(("127.0.0.1:1",), 1.0)
    return AnalysisService(build_engines(analyzers, resolver), timeout=timeout)


async def test_overall_timeout_bounds_a_hung_engine(hung_port: int, clamd: ClamdInstance
                                                    ) -> None:
    svc = service(rspamd_analyzer(f"http://127.0.0.1:{hung_port}", timeout=30),
                  clamav_analyzer(unix_path=clamd.socket_path), timeout=0.5)
    started = time.monotonic()
    try:
        results = await svc.analyze(inbound(mail("x " + EICAR.decode())))
    finally:
        await svc.close()
    assert time.monotonic() - started < 2.0
    vade, clam = results.get("vade"), results.get("trendmicro")
    assert vade is not None and vade.status is AnalysisStatus.FAILED
    assert vade.verdict is Verdict.PROCESSING_FAILED and vade.detail.startswith("timeout")
    assert clam is not None and clam.value("isPassed") is False  # the other one still answered
    assert svc.verdicts(results) == (Verdict.PROCESSING_FAILED, Verdict.FAIL)


async def test_session_phase_runs_only_dns_lists(dns_server: DnsServer, zone: Zone,
                                                 clamd: ClamdInstance) -> None:
    zone.add("9.0.0.127.zen.svc.test", "A", "127.0.0.2")
    resolver = DnsResolver((dns_server.address,), 2.0)
    svc = service(dnsbl(), clamav_analyzer(unix_path=clamd.socket_path), resolver=resolver)
    switch = AnalysisSwitch(svc)
    try:
        assert switch.enabled
        early = await switch.session("127.0.0.9", "client.test", "a@b.test")
        assert [r.analyzer for r in early.results] == ["spamhaus"]
        assert early.value("spamhaus", "isListed") is True
        # after the 250 the stored RCPT-time result is extended, ClamAV added
        message = inbound(mail("clean"), peer_ip="127.0.0.9")
        from dataclasses import replace

        full = await svc.analyze(replace(message, analysis=early))
        assert full.value("spamhaus", "isListed") is True
        assert full.value("trendmicro", "category") == "clean"
        assert svc.verdicts(full) == (Verdict.FAIL, Verdict.PASS)
    finally:
        await svc.close()
    switch.service = None
    assert not switch.enabled
    assert await switch.session("127.0.0.9", "h", "") == AnalysisResults()


def test_combine_is_worst_first() -> None:
    assert combine([]) is Verdict.PASS
    assert combine([Verdict.PASS, Verdict.PROCESSING_FAILED]) is Verdict.PROCESSING_FAILED
    assert combine([Verdict.PROCESSING_FAILED, Verdict.GRAY]) is Verdict.GRAY
    assert combine([Verdict.GRAY, Verdict.FAIL, Verdict.PASS]) is Verdict.FAIL


async def test_results_survive_the_spool(tmp_path: Path) -> None:
    """RCPT-time results with the message record, every result with the checkpointed
    verdicts: a restart reads them back as they were."""
    early = AnalysisResults((AnalysisResult("spamhaus", "Dnsbl", AnalysisStatus.OK, Verdict.FAIL,
                                            (("isListed", True), ("listedOn", "sbl"))),))
    full = early.with_result(AnalysisResult("trendmicro", "Clamav", AnalysisStatus.FAILED,
                                            Verdict.PROCESSING_FAILED, (), "connect: refused"))
    verdicts = Verdicts(spam=Verdict.FAIL, virus=Verdict.PROCESSING_FAILED, analysis=full)
    from dataclasses import replace

    message = replace(inbound(mail("x")), analysis=early, id=new_message_id())
    store = SpoolStore(tmp_path / "spool")
    await store.open()
    await store.commit(message)
    await store.checkpoint(message.id, ProcessingState(verdicts=verdicts))
    await store.close()
    again = SpoolStore(tmp_path / "spool")
    assert await again.open() == [message.id]
    entry = await again.load(message.id)
    await again.close()
    assert entry.message.analysis == early
    assert entry.state.verdicts == verdicts
    assert entry.state.verdicts.analysis.value("trendmicro", "isPassed") is None


def test_old_records_read_without_analysis() -> None:
    """States and verdicts written before analyzers existed have no such keys."""
    old = {"spf": "PASS", "dkim": "GRAY", "dmarc": "PASS", "dmarc_policy": None}
    verdicts = Verdicts.from_json(old)
    assert verdicts.spam is None and verdicts.virus is None and not verdicts.analysis
    assert Verdicts().to_json() == {"spf": "PROCESSING_FAILED", "dkim": "PROCESSING_FAILED",
                                    "dmarc": "PROCESSING_FAILED", "dmarc_policy": None}
