"""PROXY protocol v1/v2 (HAProxy's proxy-protocol.txt): the header parser and the gate protocol
that reads it before anything else reads the socket, then hands the connection to SMTP."""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass

from mailmgr import logs
from mailmgr.admin.metrics import METRICS
from mailmgr.config.models import ProxyProtocol
from mailmgr.ingress import replies

V1_MAX = 107  # proxy-protocol.txt 2.1: the longest v1 line, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED = 16  # signature, ver/cmd, fam/proto, length
_V1_PREFIX = b"PROXY "


@dataclass(frozen=True)
class ProxyHeader:
    """A complete header: `source` is (ip, port) of the client, or None for v2 LOCAL and v1
    UNKNOWN (the balancer's own address stays the peer). `length`: bytes the header used."""

    version: int
    source: tuple[str, int] | None
    length: int


@dataclass(frozen=True)
class Incomplete:
    """More bytes are needed (never more than 107 for v1, 16 + 65535 for v2)."""


@dataclass(frozen=True)
class Malformed:
    reason: str


Parsed = ProxyHeader | Incomplete | Malformed
INCOMPLETE = Incomplete()


def parse(data: bytes) -> Parsed:
    """Parse the header at the start of `data` (the bytes received so far). Never reads past
    the header; what follows it belongs to the SMTP (or TLS) stream."""
    if not data:
        return INCOMPLETE
    if data[0] == V2_SIGNATURE[0]:
        return _parse_v2(data)
    if data[0] == _V1_PREFIX[0]:
        return _parse_v1(data)
    return Malformed("not a PROXY header")


def _port(text: str) -> int | None:
    # Spec 2.1: 0..65535 in decimal without leading zeros.
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        return None
    value = int(text)
    return value if value <= 65535 else None


def _parse_v1(data: bytes) -> Parsed:
    prefix = data[: len(_V1_PREFIX)]
    if not _V1_PREFIX.startswith(prefix):
        return Malformed("not a PROXY header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            return Malformed("v1 header longer than 107 bytes")
        if b"\n" in data[:V1_MAX] or b"\r" in data[: max(len(data) - 1, 0)]:
            return Malformed("v1 header without CRLF")
        return INCOMPLETE
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError:
        return Malformed("v1 header is not ASCII")
    parts = line.split(" ")
    if len(parts) < 2 or parts[0] != "PROXY":
        return Malformed("v1 header malformed")
    if parts[1] == "UNKNOWN":  # the rest of the line is ignored (spec 2.1)
        return ProxyHeader(1, None, end + 2)
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        return Malformed("v1 header malformed")
    kind = ipaddress.IPv4Address if parts[1] == "TCP4" else ipaddress.IPv6Address
    if "%" in parts[2] or "%" in parts[3]:  # ipaddress accepts IPv6 zone IDs; the spec does not
        return Malformed("v1 address malformed")
    try:
        src = kind(parts[2])
        kind(parts[3])
    except ValueError:
        return Malformed("v1 address malformed")
    sport, dport = _port(parts[4]), _port(parts[5])
    if sport is None or dport is None:
        return Malformed("v1 port malformed")
    return ProxyHeader(1, (str(src), sport), end + 2)


def _parse_v2(data: bytes) -> Parsed:
    head = data[: len(V2_SIGNATURE)]
    if not V2_SIGNATURE.startswith(head):
        return Malformed("not a PROXY header")
    if len(data) < _V2_FIXED:
        return INCOMPLETE
    ver_cmd, fam, length = data[12], data[13], struct.unpack("!H", data[14:16])[0]
    if ver_cmd >> 4 != 2:
        return Malformed("v2 version is not 2")
    command = ver_cmd & 0x0F
    if command > 1:
        return Malformed("v2 command unknown")
    total = _V2_FIXED + length
    if len(data) < total:
        return INCOMPLETE
    if command == 0:  # LOCAL: the balancer's own connection (health check); body ignored
        return ProxyHeader(2, None, total)
    body = data[_V2_FIXED:total]
    family, transport = fam >> 4, fam & 0x0F
    if family == 0 or transport == 0:  # AF_UNSPEC/UNSPEC: keep the real peer (spec 2.2)
        return ProxyHeader(2, None, total)
    if transport != 1:
        return Malformed("v2 transport is not STREAM")
    if family == 1 and length >= 12:
        src4 = ipaddress.IPv4Address(body[0:4])
        return ProxyHeader(2, (str(src4), struct.unpack("!H", body[8:10])[0]), total)
    if family == 2 and length >= 36:
        src6 = ipaddress.IPv6Address(body[0:16])
        return ProxyHeader(2, (str(src6), struct.unpack("!H", body[32:34])[0]), total)
    if family in (1, 2):
        return Malformed("v2 address block too short")
    if family == 3:  # AF_UNIX: no IP to use; keep the real peer (the spec allows it)
        return ProxyHeader(2, None, total)
    return Malformed("v2 address family not supported")


def trusted(config: ProxyProtocol, ip: str) -> bool:
    """True when `ip` (the TCP peer) is inside one of the TrustedSources CIDRs."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in config.trusted_sources)


def _feed(transport: asyncio.BaseTransport, data: bytes) -> None:
    """Give bytes read past the header to whatever protocol the transport now has (SMTP, or
    the TLS layer of an implicit-TLS point, a BufferedProtocol)."""
    protocol = transport.get_protocol()  # type: ignore[attr-defined]
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(data)
        while view:
            buf = memoryview(protocol.get_buffer(len(view)))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            protocol.buffer_updated(n)
            view = view[n:]
    else:
        assert isinstance(protocol, asyncio.Protocol)
        protocol.data_received(data)


# Fixed reason set of `mailmgr_proxy_refusals_total` (and the log's `reason`).
REFUSAL_REASONS = ("missing", "malformed", "truncated", "timeout", "untrusted_source")


def _kind(reason: str) -> str:
    """The refusal's metric reason for a parser verdict (`Malformed.reason`)."""
    return "missing" if reason == "not a PROXY header" else "malformed"


def _proxy_start(data: bytes) -> bool | None:
    """True when `data` opens with a PROXY v1 line or the v2 signature, False when it cannot,
    None while it is still a prefix of one (at most 11 bytes)."""
    for marker in (_V1_PREFIX, V2_SIGNATURE):
        if data.startswith(marker):
            return True
        if marker.startswith(data):
            return None
    return False


class ProxyGate(asyncio.Protocol):
    """Stands in front of the SMTP protocol on a ProxyProtocol point. From a trusted source it
    reads the header (within TimeoutSeconds, before any banner or TLS handshake), then builds
    the session with the header's source as the client address. An untrusted source gets its
    session (its own address, banner) at once; the gate only looks at its first bytes: a PROXY
    v1 line or v2 signature there gets `421 4.7.0` and the connection closes (as Haraka does),
    anything else goes to the session and the gate steps aside.

    Every refusal is logged once (`ingress.proxy_refused`, reason from REFUSAL_REASONS, detail)
    and counted in `mailmgr_proxy_refusals_total{ingress_point, reason}`."""

    def __init__(
        self,
        config: ProxyProtocol,
        make_session: Callable[[tuple[str, int] | None], asyncio.Protocol],
        ingress_point: str,
    ) -> None:
        self._config = config
        self._make = make_session
        self._point = ingress_point
        self._buf = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._peer = ""
        # Untrusted source: the protocol its bytes go to once they are not a PROXY header.
        self._next: asyncio.BaseProtocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername") or ("", 0)
        self._peer = str(peer[0])
        if not trusted(self._config, self._peer):
            self._hand_over(None, b"")
            if not transport.is_closing():  # admitted: watch its first bytes
                self._next = transport.get_protocol()  # the session, or its TLS layer
                transport.set_protocol(self)
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._config.timeout_seconds, self._refuse, "timeout")

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._next is not None:
            return self._watch()
        result = parse(self._buf)
        if isinstance(result, Incomplete):
            return
        if isinstance(result, Malformed):
            self._refuse(_kind(result.reason), result.reason)
            return
        rest, self._buf = self._buf[result.length:], b""
        self._cancel()
        self._hand_over(result.source, rest)

    def _watch(self) -> None:
        """An untrusted source's first bytes: refuse a PROXY header, else step aside."""
        starts = _proxy_start(self._buf)
        if starts is None:
            return
        transport, rest = self._transport, self._buf
        assert transport is not None and self._next is not None
        self._buf = b""
        if starts:
            if not transport.is_closing():
                transport.write(replies.PROXY_UNTRUSTED.line())
            self._refuse("untrusted_source", "PROXY header from an untrusted source")
            return
        transport.set_protocol(self._next)
        self._next = None
        if not transport.is_closing():
            _feed(transport, rest)

    def eof_received(self) -> bool | None:
        if self._next is not None:
            return self._next.eof_received()  # type: ignore[attr-defined, no-any-return]
        if self._buf:
            self._refuse("truncated", "connection closed inside the header")
        else:
            self._refuse("missing", "connection closed before a header")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self._next is not None:
            self._next.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._next is not None:
            self._next.pause_writing()

    def resume_writing(self) -> None:
        if self._next is not None:
            self._next.resume_writing()

    def _hand_over(self, source: tuple[str, int] | None, rest: bytes) -> None:
        transport = self._transport
        assert transport is not None
        session = self._make(source)
        transport.set_protocol(session)
        session.connection_made(transport)
        if rest and not transport.is_closing():
            _feed(transport, rest)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _refuse(self, reason: str, detail: str = "") -> None:
        self._cancel()
        if self._transport is not None and not self._transport.is_closing():
            logs.warning(
                "ingress.proxy_refused", ingress_point=self._point, peer_ip=self._peer,
                reason=reason, detail=detail or reason,
            )
            METRICS.proxy_refusals.labels(self._point, reason).inc()
            if reason == "untrusted_source":
                self._transport.close()  # the 421 goes out first
            else:
                self._transport.abort()
