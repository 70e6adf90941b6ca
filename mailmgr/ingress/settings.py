"""Per-ingress-point constants shared by every connection, the registry of live sessions, and
the small value types and parsers of one connection's state.

Settings are built once per listener (and again on SIGHUP); nothing here does I/O.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from typing import TYPE_CHECKING

from mailmgr.ingress import replies
from mailmgr.ingress.auth import MECHANISMS, Authenticator, AuthThrottle
from mailmgr.ingress.counters import CONNECT, PointCounters
from mailmgr.ingress.limits import AddressTable, Limit, Limits, address_key
from mailmgr.ingress.replies import Reply
from mailmgr.ingress.truststore import TrustAnchors
from mailmgr.message import SessionFacts

if TYPE_CHECKING:
    from mailmgr.config.models import IngressPoint
    from mailmgr.ingress.smtp import SmtpProtocol
    from mailmgr.ingress.tls import SessionTls

AWS_MAX_MESSAGE_SIZE = 41_943_040  # 40 MB, Mail Manager's per-message limit


def effective_size_limit(policy_max: int | None) -> int:
    """The traffic policy's MaxMessageSizeBytes or 40 MB, whichever is smaller."""
    if policy_max is None or policy_max <= 0:
        return AWS_MAX_MESSAGE_SIZE
    return min(policy_max, AWS_MAX_MESSAGE_SIZE)


class SmtpSettings:
    """Per-ingress-point constants shared by every connection (built once per listener)."""

    __slots__ = (
        "auth",
        "ehlo_plain",
        "ehlo_tls",
        "fips",
        "hostname",
        "limits",
        "max_message_size",
        "require_tls",
        "ssl_context",
        "throttle",
        "timeout",
        "trust",
    )

    def __init__(
        self,
        *,
        hostname: str,
        max_message_size: int,
        require_tls: bool,
        ssl_context: ssl.SSLContext | None,
        timeout: float = 300.0,
        auth: Authenticator | None = None,
        throttle: AuthThrottle | None = None,
        trust: TrustAnchors | None = None,
        fips: bool = False,
        limits: Limits | None = None,
    ) -> None:
        """`timeout`: seconds a client may stay silent (RFC 5321 §4.5.3.2 suggests 5 min);
        `limits`: `Server.Limits` (its CommandTimeoutSeconds is not used here: pass `timeout`).
        `auth`: AUTH is required before MAIL; `trust`: a verified, unrevoked client
        certificate is required before MAIL; `fips`: TLS 1.3 suites are checked per session."""
        if require_tls and ssl_context is None:
            raise ValueError("a TLS policy that requires STARTTLS needs a server certificate")
        if trust is not None and ssl_context is None:
            raise ValueError("an MTLS ingress point needs a server certificate")
        self.hostname = hostname
        self.max_message_size = max_message_size
        self.require_tls = require_tls
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.auth = auth
        self.throttle = AuthThrottle() if throttle is None else throttle
        self.trust = trust
        self.fips = fips
        self.limits = Limits() if limits is None else limits
        common = (
            f"SIZE {max_message_size}",
            "8BITMIME",
            "SMTPUTF8",
            "PIPELINING",
            "ENHANCEDSTATUSCODES",
        )
        # AUTH is offered only inside TLS (RFC 4954 §4 lets a server hide mechanisms).
        with_auth = (*common, f"AUTH {' '.join(MECHANISMS)}") if auth else common
        self.ehlo_tls = replies.ehlo(hostname, with_auth)
        self.ehlo_plain = (
            replies.ehlo(hostname, (*common, "STARTTLS"))
            if ssl_context
            else replies.ehlo(hostname, common)
        )


class SessionSet:
    """The live connections of one listener, so shutdown can reach them; each is counted in
    the process's AddressTable from `admit` until `discard`."""

    def __init__(self, table: AddressTable | None = None,
                 counters: PointCounters | None = None) -> None:
        self.live: dict[SmtpProtocol, str] = {}  # session -> its address key
        self.table = AddressTable() if table is None else table
        self.counters = counters  # the ingress point's reply counters (refusals sent here)
        self._empty = asyncio.Event()
        self._empty.set()

    def admit(
        self, session: SmtpProtocol, transport: asyncio.BaseTransport, ip: str, limits: Limits
    ) -> bool:
        """Count a new connection; False: refused by a connection cap, with 421 written on a
        plaintext port (before any banner; a TLS port cannot carry it yet) and closed."""
        key = address_key(ip)
        refusal = self.table.admit(key, limits)
        if refusal is not None:
            if isinstance(transport, asyncio.WriteTransport) and not session.implicit_tls:
                transport.write(refusal.line())
                if self.counters is not None:
                    self.counters.reply(CONNECT, refusal)
            transport.close()
            return False
        self.live[session] = key
        self._empty.clear()
        return True

    def mail_refusal(self, session: SmtpProtocol, messages: int, recipients: int,
                     limits: Limits) -> Reply | None:
        """The limit's reply to a MAIL of a session that opened `messages` transactions and
        asked for `recipients` recipients so far; None: go ahead (counted). AddressTable.mail"""
        return self.table.mail(self.live.get(session, ""), messages, recipients, limits)

    def rcpt_refusal(self, session: SmtpProtocol, recipients: int,
                     limits: Limits) -> Reply | None:
        """The limit's 451 to a RCPT; None: go ahead (counted). AddressTable.recipient"""
        return self.table.recipient(self.live.get(session, ""), recipients, limits)

    def too_many_errors(self, session: SmtpProtocol) -> bool:
        """A session passed ErrorsPerSession: counted and logged as a refusal; True."""
        self.table.refuse(self.live.get(session, ""), Limit.ERRORS_PER_SESSION,
                          replies.TOO_MANY_ERRORS)
        return True

    def discard(self, session: SmtpProtocol) -> None:
        key = self.live.pop(session, None)
        if key is not None:
            self.table.release(key)
        if not self.live:
            self._empty.set()

    async def wait_empty(self) -> None:
        await self._empty.wait()


class Transaction:
    """One mail transaction in progress (MAIL accepted, DATA not finished)."""

    __slots__ = ("body_8bit", "facts", "mail_from", "rcpt_attempted", "recipients", "smtputf8")

    def __init__(self, mail_from: str, facts: SessionFacts, smtputf8: bool, body_8bit: bool):
        self.mail_from = mail_from
        self.facts = facts
        self.smtputf8 = smtputf8
        self.body_8bit = body_8bit
        self.recipients: list[str] = []
        self.rcpt_attempted = False


def peer_ip(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)



def session_facts(point: IngressPoint, peer: tuple[str, int], helo: str,
                  tls: SessionTls | None, implicit: bool, auth_user: str | None) -> SessionFacts:
    """What a transaction records about its session, captured at MAIL."""
    return SessionFacts(
        ingress_point_id=point.id,
        ingress_point_name=point.name,
        peer_ip=peer[0],
        peer_port=peer[1],
        helo=helo,
        tls=tls is not None,
        tls_wrapped=tls is not None and implicit,
        tls_protocol=tls.protocol if tls is not None else None,
        tls_cipher=tls.cipher if tls is not None else None,
        auth_user=auth_user,
        client_certificate=tls.client_certificate if tls is not None else None,
    )
