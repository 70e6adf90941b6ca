"""Comparison operators of rule and policy conditions, compiled once into small matchers.

Semantics (semantics.md §4): strings are case-insensitive, any candidate matching any value
matches, NOT_EQUALS means no candidate equals any value, and no candidates match only NOT_EQUALS.
Pure, no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from mailmgr.config.models import (
    BooleanOperator,
    IpOperator,
    NumberOperator,
    StringOperator,
    VerdictOperator,
)
from mailmgr.message import DmarcPolicy

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

StringMatcher = Callable[[Sequence[str]], bool]


def string_matcher(operator: StringOperator, values: Sequence[str]) -> StringMatcher:
    wanted = tuple(v.casefold() for v in values)
    wanted_set = frozenset(wanted)

    def equals(candidates: Sequence[str]) -> bool:
        return any(c.casefold() in wanted_set for c in candidates)

    def not_equals(candidates: Sequence[str]) -> bool:
        return not equals(candidates)

    def starts_with(candidates: Sequence[str]) -> bool:
        return any(c.casefold().startswith(wanted) for c in candidates)

    def ends_with(candidates: Sequence[str]) -> bool:
        return any(c.casefold().endswith(wanted) for c in candidates)

    def contains(candidates: Sequence[str]) -> bool:
        return any(w in c.casefold() for c in candidates for w in wanted)

    table: dict[StringOperator, StringMatcher] = {
        StringOperator.EQUALS: equals,
        StringOperator.NOT_EQUALS: not_equals,
        StringOperator.STARTS_WITH: starts_with,
        StringOperator.ENDS_WITH: ends_with,
        StringOperator.CONTAINS: contains,
    }
    return table[StringOperator(operator)]


def number_matcher(operator: NumberOperator, value: float) -> Callable[[float], bool]:
    table: dict[NumberOperator, Callable[[float], bool]] = {
        NumberOperator.EQUALS: lambda n: n == value,
        NumberOperator.NOT_EQUALS: lambda n: n != value,
        NumberOperator.LESS_THAN: lambda n: n < value,
        NumberOperator.GREATER_THAN: lambda n: n > value,
        NumberOperator.LESS_THAN_OR_EQUAL: lambda n: n <= value,
        NumberOperator.GREATER_THAN_OR_EQUAL: lambda n: n >= value,
    }
    return table[NumberOperator(operator)]


def boolean_matcher(operator: BooleanOperator) -> Callable[[bool], bool]:
    if BooleanOperator(operator) is BooleanOperator.IS_TRUE:
        return lambda b: b
    return lambda b: not b


def parse_address(text: str) -> IpAddress | None:
    """An IP address, with IPv4-mapped IPv6 (dual-stack sockets) folded to IPv4; None if bad."""
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(cidrs: Sequence[str]) -> tuple[IpNetwork, ...]:
    """Networks of `cidrs` (host bits allowed); raises ValueError on a malformed one."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)


def cidr_matcher(operator: IpOperator, cidrs: Sequence[str]) -> Callable[[str], bool]:
    """An address of the other family, or an unparsable one, is in none of the networks."""
    networks = parse_networks(cidrs)

    def inside(ip: str) -> bool:
        address = parse_address(ip)
        if address is None:
            return False
        return any(
            address.version == net.version and address in net for net in networks
        )

    if IpOperator(operator) is IpOperator.CIDR_MATCHES:
        return inside
    return lambda ip: not inside(ip)


def verdict_matcher(operator: VerdictOperator, values: Sequence[str]) -> Callable[[str], bool]:
    """EQUALS: the verdict is any of the values; NOT_EQUALS: it is none of them."""
    wanted = frozenset(v.upper() for v in values)
    if VerdictOperator(operator) is VerdictOperator.EQUALS:
        return lambda verdict: verdict.upper() in wanted
    return lambda verdict: verdict.upper() not in wanted


def dmarc_matcher(
    operator: VerdictOperator, values: Sequence[str]
) -> Callable[[DmarcPolicy | None], bool]:
    """The policy exists only when DMARC failed: without one, EQUALS never matches and
    NOT_EQUALS always matches."""
    wanted = frozenset(v.upper() for v in values)
    if VerdictOperator(operator) is VerdictOperator.EQUALS:
        return lambda policy: policy is not None and policy.value in wanted
    return lambda policy: policy is None or policy.value not in wanted
