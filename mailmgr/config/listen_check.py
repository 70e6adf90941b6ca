"""Listen addresses that cannot all be bound: the same address twice (ingress points, also across
Listen and TlsWrappedListen, or the admin listener's), or a wildcard and an address of its family
on the same port. Found by check-config instead of `serve` failing with "address in use".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mailmgr.config.fields import Ctx, index_path, key_path, parse_host_port
from mailmgr.config.ids import ResourceKind
from mailmgr.config.resources import Pending
from mailmgr.config.server import DEFAULT_ADMIN_LISTEN

# Names are not resolved (check-config does no DNS): a name conflicts only with itself, except
# `localhost`, which every host maps to the loopback addresses.
_LOCALHOST = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class Bind:
    """One socket mailmgr binds: family ("4", "6", or "name" for an unresolved host name), the
    normalised host, the port, and where it is configured (for the messages)."""

    family: str
    host: str
    port: int
    wildcard: bool
    text: str  # as written, e.g. "0.0.0.0:25"
    ctx: Ctx
    path: str
    owner: str  # e.g. "ingress point 'inbound'" or "the admin listener"

    def clashes(self, other: Bind) -> bool:
        """True when binding both fails on Linux: asyncio and aiohttp bind with SO_REUSEADDR
        (no SO_REUSEPORT in one process; a multi-process server's workers add SO_REUSEPORT,
        where the second bind would silently share the first one's connections instead), and
        IPv6 sockets are IPV6_V6ONLY, so `[::]` and `0.0.0.0` do not clash."""
        if self.port == 0 or self.port != other.port or self.family != other.family:
            return False
        return self.host == other.host or self.wildcard or other.wildcard


def _binds(ctx: Ctx, text: str, path: str, owner: str) -> list[Bind]:
    """The sockets `text` (host:port) binds; none when it does not parse (reported elsewhere)."""
    try:
        address = parse_host_port(text)
    except ValueError:
        return []
    hosts = _LOCALHOST if address.host.lower() == "localhost" else (address.host,)
    out = []
    for host in hosts:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:  # a name, or an IPv6 literal with a %scope: compared as written
            family, normal, wildcard = "name", host.lower(), False
        else:
            family, normal, wildcard = str(ip.version), str(ip), ip.is_unspecified
        out.append(Bind(family, normal, address.port, wildcard, text, ctx, path, owner))
    return out


def _admin(ctx: Ctx, server_raw: Any) -> list[Bind]:
    admin = server_raw.get("Admin") if isinstance(server_raw, dict) else None
    listen = admin.get("Listen") if isinstance(admin, dict) else None
    where = "$.Server.Admin.Listen"
    if listen is None:
        return _binds(ctx, DEFAULT_ADMIN_LISTEN, where, "the admin listener (default address)")
    if not isinstance(listen, list):
        return []
    return [b for i, text in enumerate(listen) if isinstance(text, str)
            for b in _binds(ctx, text, index_path(where, i), "the admin listener")]


def _ingress(points: Iterable[Pending]) -> list[Bind]:
    out: list[Bind] = []
    for p in points:
        if p.kind is not ResourceKind.INGRESS_POINT:
            continue
        for key in ("Listen", "TlsWrappedListen"):
            texts = p.raw.get(key)
            if not isinstance(texts, list):
                continue
            for i, text in enumerate(texts):
                if isinstance(text, str):
                    out += _binds(p.ctx, text, index_path(key_path(p.path, key), i),
                                  f"ingress point {p.name!r}")
    return out


def _where(first: Bind, second: Bind) -> str:
    if first.ctx.file != second.ctx.file:
        return f"{first.path} in {first.ctx.file}"
    return first.path


def check_listen_conflicts(server_ctx: Ctx, server_raw: Any, points: Iterable[Pending]) -> None:
    """Report each listen address that clashes with one configured before it (the admin
    listener's first, then the ingress points in order) as a problem at the later one's JSON
    path, naming the earlier one. Port 0 (any free port) never clashes."""
    seen: dict[tuple[str, int], list[Bind]] = {}
    reported: set[tuple[str, str]] = set()  # `localhost` is two binds: one problem for it
    for bind in _admin(server_ctx, server_raw) + _ingress(points):
        if bind.port == 0:
            continue
        group = seen.setdefault((bind.family, bind.port), [])
        first = next((b for b in group if b.clashes(bind)), None)
        group.append(bind)
        here = (bind.ctx.file, bind.path)
        if first is None or here in reported or (first.ctx.file, first.path) == here:
            continue
        reported.add(here)
        if first.text == bind.text:
            what = f"listen address {bind.text} is already used by"
        else:  # a wildcard takes the port on every address of its family
            what = f"listen address {bind.text} overlaps {first.text} of"
        bind.ctx.problem(bind.path, f"{what} {first.owner} at {_where(first, bind)}: both "
                                    "cannot be bound ('address already in use' at serve); "
                                    "give each listener its own port")
