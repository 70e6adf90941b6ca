"""The one place that maps an analyzer's engine (Dnsbl, Rspamd, Clamav) to its implementation."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mailmgr.analysis.base import Engine
from mailmgr.analysis.clamav import ClamavEngine
from mailmgr.analysis.dnsbl import DnsblEngine
from mailmgr.analysis.rspamd import RspamdEngine
from mailmgr.config.models import Analyzer, AnalyzerEngine
from mailmgr.verdicts.dns import Resolver

ENGINES: dict[AnalyzerEngine, Callable[[Analyzer, Resolver], Engine]] = {
    AnalyzerEngine.DNSBL: DnsblEngine,
    AnalyzerEngine.RSPAMD: lambda analyzer, resolver: RspamdEngine(analyzer),
    AnalyzerEngine.CLAMAV: lambda analyzer, resolver: ClamavEngine(analyzer),
}


def build_engines(analyzers: Sequence[Analyzer], resolver: Resolver) -> tuple[Engine, ...]:
    """One engine per analyzer, in config order; DNS lists share mailmgr's resolver (and its
    cache) with SPF, DKIM and DMARC."""
    return tuple(ENGINES[a.engine](a, resolver) for a in analyzers)
