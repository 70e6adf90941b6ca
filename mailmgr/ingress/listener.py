"""Binds an ingress point's listen addresses on the running loop and stops them gracefully.

Owns sockets and connection lifetimes; SMTP behaviour lives in `smtp`, decisions in `handler`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

from mailmgr import logs
from mailmgr.config.models import IngressPoint, IngressPointStatus, IngressPointType, TlsPolicy
from mailmgr.ingress import replies
from mailmgr.ingress.auth import Authenticator, AuthThrottle, SecretSource
from mailmgr.ingress.counters import CONNECT, PointCounters, point_counters
from mailmgr.ingress.handler import IngressHandler
from mailmgr.ingress.limits import ABORT_GRACE, AddressTable, Limits
from mailmgr.ingress.proxy import ProxyGate
from mailmgr.ingress.seams import Acceptor, RecipientPolicy, SessionAnalyzer
from mailmgr.ingress.settings import SessionSet, SmtpSettings, effective_size_limit
from mailmgr.ingress.smtp import SmtpProtocol
from mailmgr.ingress.truststore import TrustAnchors

_BACKLOG = 512
# Set once in a worker process of a multi-process server (share_ports), before any listener
# starts: every listener binds with SO_REUSEPORT, and a Listen port 0 becomes the port the
# supervisor resolved for it, so all workers accept on the same port.
_REUSE_PORT = False
_SHARED_PORTS: dict[tuple[str, str, int], int] = {}


def share_ports(ports: dict[tuple[str, str, int], int]) -> None:
    """Worker processes only: bind with SO_REUSEPORT; `ports` maps (ingress point ID, "listen"
    or "wrapped", position in that list) to the port to use where the config says 0."""
    global _REUSE_PORT
    _REUSE_PORT = True
    _SHARED_PORTS.clear()
    _SHARED_PORTS.update(ports)


class _ClosedProtocol(asyncio.Protocol):
    """A CLOSED ingress point: one 421 reply, then the connection is closed."""

    def __init__(self, counters: PointCounters) -> None:
        self._counters = counters

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(replies.CLOSED.line())
        self._counters.reply(CONNECT, replies.CLOSED)
        transport.close()


class IngressServer:
    """The listeners of one ingress point on the running loop: `Listen` (STARTTLS-capable) and
    `TlsWrappedListen` (implicit TLS)."""

    def __init__(
        self,
        ingress_point: IngressPoint,
        *,
        hostname: str,
        max_message_size: int | None,
        acceptor: Acceptor,
        recipient_policy: RecipientPolicy,
        ssl_context: ssl.SSLContext | None,
        command_timeout: float | None = None,
        trust: TrustAnchors | None = None,
        secrets: SecretSource | None = None,
        throttle: AuthThrottle | None = None,
        limits: Limits | None = None,
        addresses: AddressTable | None = None,
        analyzer: SessionAnalyzer | None = None,
    ) -> None:
        """`max_message_size` is the traffic policy's MaxMessageSizeBytes (None: 40 MB); the
        smaller of it and 40 MB applies. `command_timeout`: seconds a client may stay silent
        (default: `limits.command_timeout`). `limits`: Server.Limits; `addresses`: the
        process's per-address table (connection caps count across all ingress points).
        `ssl_context` comes from `tls.server_context` (with `fips` for TlsPolicy FIPS and, for
        MTLS, `trust`, which must also be passed here for the revocation check). `secrets`
        serves an AUTH point's SecretArn; `throttle` counts its failed logins per address.
        `analyzer`: the RCPT-time analyzers (DNS lists) the traffic policy may read.
        Raises ValueError for TlsPolicy REQUIRED/FIPS, TlsWrappedListen or MTLS without an SSL
        context, MTLS without `trust`, and AUTH without a password source.
        """
        self.ingress_point = ingress_point
        self._status = ingress_point.status
        if ingress_point.type is IngressPointType.MTLS and trust is None:
            raise ValueError(f"MTLS ingress point {ingress_point.name} needs a trust store")
        if ingress_point.tls_wrapped_listen and ssl_context is None:
            raise ValueError(f"TlsWrappedListen of {ingress_point.name} needs a certificate")
        auth = None
        if ingress_point.type is IngressPointType.AUTH:
            auth = Authenticator(
                ingress_point.id,
                password=ingress_point.smtp_password,
                secret_arn=ingress_point.secret_arn,
                secrets=secrets,
            )
        # `is None`, never `or`: an empty AddressTable is falsy (it has a length), and every
        # ingress point must share the app's one table (process-wide caps, one AUTH budget).
        limits = Limits() if limits is None else limits
        addresses = AddressTable() if addresses is None else addresses
        self._settings = SmtpSettings(
            hostname=hostname,
            max_message_size=effective_size_limit(max_message_size),
            require_tls=ingress_point.tls_policy in (TlsPolicy.REQUIRED, TlsPolicy.FIPS),
            ssl_context=ssl_context,
            timeout=limits.command_timeout if command_timeout is None else command_timeout,
            auth=auth,
            throttle=AuthThrottle(table=addresses) if throttle is None else throttle,
            trust=trust,
            fips=ingress_point.tls_policy is TlsPolicy.FIPS,
            limits=limits,
        )
        self._handler = IngressHandler(ingress_point, acceptor, recipient_policy, analyzer)
        self._sessions = SessionSet(addresses, point_counters(ingress_point.name))
        self._servers: list[asyncio.Server] = []
        self._stopped: list[asyncio.Server] = []  # not serving; wait_closed() at stop()

    @property
    def max_message_size(self) -> int:
        return self._settings.max_message_size

    @property
    def active_sessions(self) -> int:
        return len(self._sessions.live)

    @property
    def status(self) -> IngressPointStatus:
        return self._status

    def set_status(self, status: IngressPointStatus) -> None:
        """CLOSED applies to new connections; sessions already open continue."""
        self._status = status

    def reload_tls(
        self, ssl_context: ssl.SSLContext | None, trust: TrustAnchors | None = None
    ) -> None:
        """SIGHUP: new connections get the new certificate and trust store; open sessions keep
        the settings they were created with (each protocol holds its own reference). The
        AUTH throttle's counters survive."""
        old = self._settings
        if self.ingress_point.type is IngressPointType.MTLS and trust is None:
            raise ValueError(f"MTLS ingress point {self.ingress_point.name} needs a trust store")
        self._settings = SmtpSettings(
            hostname=old.hostname,
            max_message_size=old.max_message_size,
            require_tls=old.require_tls,
            ssl_context=ssl_context,
            timeout=old.timeout,
            auth=old.auth,
            throttle=old.throttle,
            trust=trust,
            fips=old.fips,
            limits=old.limits,
        )

    def adopt(self, replacement: IngressServer) -> None:
        """Reload: new connections get `replacement`'s ingress point, settings (hostname, size
        limit, TLS, auth), recipient policy and status; open sessions keep theirs. The
        replacement is built for the same listen addresses and never started."""
        new, old = replacement.ingress_point, self.ingress_point
        if (new.listen, new.tls_wrapped_listen) != (old.listen, old.tls_wrapped_listen):
            raise ValueError(f"ingress point {new.name}: listen addresses differ")
        self.ingress_point = new
        self._status = replacement._status
        self._settings = replacement._settings
        self._handler = replacement._handler

    async def stop_accepting(self) -> None:
        """Close the listening sockets only (their ports are free again at once); `stop` still
        ends the open sessions gracefully."""
        self._stop_serving()

    def _protocol(self) -> asyncio.Protocol:
        point_counters(self.ingress_point.name).opened.inc()  # every accepted connection
        if self._status is IngressPointStatus.CLOSED:
            return _ClosedProtocol(point_counters(self.ingress_point.name))
        if self.ingress_point.proxy_protocol is not None:
            return self._gate(implicit_tls=False, closed=False)
        return SmtpProtocol(self._settings, self._handler, self._sessions)

    def _wrapped_protocol(self) -> asyncio.Protocol:
        point_counters(self.ingress_point.name).opened.inc()
        # A CLOSED point still completes the handshake, so its 421 is readable by the client.
        closed = self._status is IngressPointStatus.CLOSED
        if self.ingress_point.proxy_protocol is not None:
            return self._gate(implicit_tls=True, closed=closed)
        return SmtpProtocol(
            self._settings, self._handler, self._sessions, implicit_tls=True, closed=closed
        )

    def _gate(self, *, implicit_tls: bool, closed: bool) -> asyncio.Protocol:
        """PROXY header first (trusted sources), then the session with the header's client
        address; admission (per-address caps) happens in the session, so it counts that one.
        The settings are those of the moment the connection arrived, as without PROXY."""
        point, settings, handler, sessions = (
            self.ingress_point, self._settings, self._handler, self._sessions
        )
        assert point.proxy_protocol is not None

        def session(source: tuple[str, int] | None) -> asyncio.Protocol:
            return SmtpProtocol(
                settings, handler, sessions, implicit_tls=implicit_tls, closed=closed,
                proxied=source,
            )

        return ProxyGate(point.proxy_protocol, session, point.name)

    async def start(self) -> None:
        """Bind every Listen address (port 0 picks a free port); all or nothing."""
        loop = asyncio.get_running_loop()
        point = self.ingress_point
        listeners = [(a, "listen", i, self._protocol) for i, a in enumerate(point.listen)]
        listeners += [(a, "wrapped", i, self._wrapped_protocol)
                      for i, a in enumerate(point.tls_wrapped_listen)]
        try:
            for address, kind, position, factory in listeners:
                port = address.port or _SHARED_PORTS.get((point.id, kind, position), 0)
                server = await loop.create_server(
                    factory,
                    host=address.host or None,
                    port=port,
                    backlog=_BACKLOG,
                    reuse_address=True,
                    reuse_port=_REUSE_PORT or None,
                )
                self._servers.append(server)
        except BaseException:
            await self._close_servers()
            raise
        logs.event(
            "ingress.listening",
            ingress_point=self.ingress_point.name,
            ingress_point_id=self.ingress_point.id,
            addresses=[f"{host}:{port}" for host, port in self.addresses()],
            tls_wrapped_addresses=[f"{host}:{port}" for host, port in self.wrapped_addresses()],
            type=self.ingress_point.type.value,
            tls_policy=self.ingress_point.tls_policy.value,
            max_message_size=self.max_message_size,
        )

    @property
    def sockets(self) -> list[socket.socket]:
        return [sock for server in self._servers for sock in server.sockets]

    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) pairs, with the real port when Listen said 0: the Listen
        addresses first, then the TlsWrappedListen ones."""
        return [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in self.sockets]

    def wrapped_addresses(self) -> list[tuple[str, int]]:
        """The bound implicit-TLS (host, port) pairs."""
        servers = self._servers[len(self.ingress_point.listen):]
        return [
            (str(s.getsockname()[0]), int(s.getsockname()[1]))
            for server in servers
            for s in server.sockets
        ]

    async def stop(self, grace: float) -> None:
        """Stop accepting (new connections are refused from now on); idle sessions get
        `421 4.3.2` at once, busy ones may finish their transaction — a DATA transfer and its
        commit included — within `grace` seconds. Sessions still open then get `421 4.3.2`
        (no 250 after it) and are closed, and aborted ABORT_GRACE later if the peer does not
        read."""
        self._stop_serving()
        sessions = self._sessions
        for session in list(sessions.live):
            session.begin_shutdown()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await sessions.wait_empty()
        left = list(sessions.live)
        for session in left:
            session.end_shutdown()
        if left:
            logs.warning("ingress.sessions_cut", ingress_point=self.ingress_point.name,
                         count=len(left), grace=grace)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ABORT_GRACE + 0.5):
                    await sessions.wait_empty()
            for session in list(sessions.live):  # e.g. a TLS handshake that never finished
                session.abort()
            # Let connection_lost run so nothing outlives stop().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await sessions.wait_empty()
        stopped, self._stopped = self._stopped, []
        for server in stopped:  # Python >= 3.12 waits here for the connections to be gone
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await server.wait_closed()

    def _stop_serving(self) -> None:
        """Close the listening sockets now (Server.close() closes them synchronously)."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        self._stopped += servers

    async def _close_servers(self) -> None:
        self._stop_serving()
        stopped, self._stopped = self._stopped, []
        for server in stopped:
            await server.wait_closed()
