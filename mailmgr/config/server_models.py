"""The `Server` section's typed settings (and listen addresses): what config/server.py produces.

Split from config/models.py so each stays small; models.py re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for temporary action failures: initial * 2**n capped at max, until max_age."""

    initial_delay: float = 30.0
    max_delay: float = 3600.0
    max_age: float = 5 * 24 * 3600.0

    def delay(self, attempts: int) -> float:
        """Seconds before the next try after `attempts` earlier failures."""
        # The exponent cap keeps 2**n a small float; max_delay wins long before it matters.
        factor: float = 2.0 ** min(attempts, 32)
        return min(self.initial_delay * factor, self.max_delay)


@dataclass(frozen=True)
class ServerLimits:
    """`Server.Limits`: bounds on connections, sessions and messages (counts, seconds, bytes/s).

    Enforced by `mailmgr.ingress.limits`; the README's Security section lists what happens when
    each is exceeded."""

    max_connections: int = 2000  # all ingress points together
    max_connections_per_address: int = 50  # per client IPv4 address or IPv6 /64
    connections_per_address_per_minute: int = 600
    messages_per_connection: int = 1000
    messages_per_address_per_minute: int = 600
    # Recipients (RCPT commands that reach the traffic policy, accepted or not, so a
    # directory-harvest attack is counted too): 10 per message on average at the message caps.
    recipients_per_connection: int = 10_000
    recipients_per_address_per_minute: int = 6_000
    errors_per_session: int = 10  # 5xx replies
    command_timeout: float = 300.0  # RFC 5321 §4.5.3.2
    data_timeout: float = 600.0  # between two DATA reads that bring bytes
    write_timeout: float = 300.0  # a reply that cannot be written for this long: abort
    session_timeout: float = 1800.0
    min_data_rate: float = 256.0  # bytes per second over the rate window; 0 turns it off


@dataclass(frozen=True)
class ApiCredentials:
    """`Server.Admin.Credentials`: the one access key the Mail Manager API accepts (SigV4).
    The secret is SecretAccessKeyFile's content; never logged and not part of repr."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True)
class AdminSettings:
    """`Server.Admin`: the admin HTTP listener (probes, metrics). No addresses = off.

    `token` is the TokenFile's content (bearer token for everything but /healthz/*); it is
    never logged and not part of repr."""

    listen: tuple[ListenAddress, ...] = ()
    token: str | None = field(default=None, repr=False)
    drain_seconds: float = 5.0  # readiness 503 before the SMTP listeners close on SIGTERM
    credentials: ApiCredentials | None = None  # None: the API accepts any signature


@dataclass(frozen=True)
class AnalysisSettings:
    """`Server.Analysis`: `add_headers` writes X-Mailmgr-Spam / X-Mailmgr-Virus (off by
    default); `timeout` bounds one message's analyses together (seconds)."""

    add_headers: bool = False
    timeout: float = 15.0


@dataclass(frozen=True)
class SharedStateSettings:
    """`Server.SharedState.PostgreSQL`: the fleet's shared state (archive index, config
    documents). `dsn` may hold a password: never logged, not in repr."""

    dsn: str = field(repr=False)
    pool_size: int = 4  # connections per process


@dataclass(frozen=True)
class ServerConfig:
    hostname: str
    data_directory: Path
    region: str = "us-east-1"
    account_id: str = "000000000000"
    endpoint_url: str | None = None
    endpoint_urls: tuple[tuple[str, str], ...] = ()
    dns_nameservers: tuple[str, ...] = ()
    dns_timeout: float = 5.0
    verdict_timeout: float = 10.0  # bound on one message's SPF + DKIM + DMARC computation
    log_format: str = "json"  # json | text
    log_level: str = "INFO"
    log_records: bool = False  # Log.Records: mailmanager (AWS's vended log records, records.py)
    workers: int = 8
    retry: RetryPolicy = RetryPolicy()
    shutdown_grace: float = 10.0
    limits: ServerLimits = ServerLimits()
    admin: AdminSettings = AdminSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    processes: int = 1  # worker processes (Processes: N | auto, resolved to a number)
    shared_state: SharedStateSettings | None = None  # None: embedded (files + SQLite)

    @property
    def spool_directory(self) -> Path:
        return self.data_directory / "spool"

    @property
    def archive_directory(self) -> Path:
        return self.data_directory / "archives"
