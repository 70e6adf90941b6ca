"""The `Analyzers` section's typed settings: local engines behind Mail Manager's add-ons.

Split from config/models.py so each stays small; models.py re-exports every name here. An
analyzer is what an `Analysis.Analyzer` (an add-on instance ARN, or the analyzer's Name) refers
to; conditions hold the analyzer's Name once the loader has resolved the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mailmgr.config.server_models import ListenAddress


class AnalyzerEngine(StrEnum):
    DNSBL = "Dnsbl"
    RSPAMD = "Rspamd"
    CLAMAV = "Clamav"


class DnsblZoneType(StrEnum):
    IP = "IP"  # reversed-octet (IPv4) or nibble (IPv6) queries for the client address
    DOMAIN = "DOMAIN"  # <domain>.<zone> queries for sender, HELO, From and body URL domains


# Result fields per engine (interface.md "Config keys added in the second wave"), with their
# types: a BooleanExpression needs a bool field, a StringExpression a str one, and a
# VerdictExpression the `verdict` field.
RESULT_FIELDS: dict[AnalyzerEngine, dict[str, type]] = {
    AnalyzerEngine.DNSBL: {"isListed": bool, "listedOn": str},
    AnalyzerEngine.RSPAMD: {"isPassed": bool, "verdict": str, "category": str, "score": str},
    AnalyzerEngine.CLAMAV: {"isPassed": bool, "category": str},
}


@dataclass(frozen=True)
class DnsblZone:
    """One list. `codes` maps an answer address (127.0.0.2) to a list name (spam-domain);
    an answer without a mapping is reported as the zone name with the code."""

    zone: str
    type: DnsblZoneType
    codes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DnsblSettings:
    zones: tuple[DnsblZone, ...]
    include_private: bool = False  # query loopback/private client addresses too (tests, LANs)
    max_body_domains: int = 20  # URL domains taken from the body, at most
    timeout: float = 5.0  # seconds, all of one analysis's queries together


@dataclass(frozen=True)
class RspamdSettings:
    url: str  # base URL of a normal worker: http://host:11333 (POST {url}/checkv2)
    timeout: float = 5.0  # seconds per request
    max_concurrency: int = 16  # requests in flight to this rspamd at once


@dataclass(frozen=True)
class ClamavSettings:
    """`Address`: "unix:/path/to/clamd.ctl" or "host:port" (parsed into one of the two)."""

    unix_path: str | None = None
    tcp: ListenAddress | None = None
    timeout: float = 10.0  # seconds per scan
    max_stream_bytes: int = 25 * 1024 * 1024  # clamd's StreamMaxLength (default 25 MiB)
    max_concurrency: int = 8  # scans in flight to this clamd at once (clamd MaxThreads is 10)


@dataclass(frozen=True)
class Analyzer:
    """One `Analyzers` entry. `name` is unique; `arn` is the AnalyzerArn, or "" when the entry
    gives none (then only its Name can refer to it)."""

    name: str
    arn: str
    engine: AnalyzerEngine
    settings: DnsblSettings | RspamdSettings | ClamavSettings

    @property
    def key(self) -> str:
        """How explain, logs and events name it: the Name."""
        return self.name
