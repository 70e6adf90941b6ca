"""AddressListIndex: address-list membership by hash lookups, never a scan of the members.

Member syntax is parsed by mailmgr.config.addresses (the config owns validation); this module
only arranges the parsed patterns so a lookup costs O(length of the address). Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mailmgr.config.addresses import MemberKind, parse_member
from mailmgr.config.models import AddressList


class AddressListIndex:
    """Case-insensitive membership test for one address list.

    Lookups: the exact address; the domain (domain members and `*@d`); every parent domain of
    the address's domain (`*.d`, subdomains only); every (prefix of the local part, domain)
    pair (`user*@d`); every (local part, parent domain) pair (`l@*.d`).
    """

    __slots__ = ("_addresses", "_domains", "_local_at_subdomain", "_local_prefix", "_subdomains")

    def __init__(self, members: Iterable[str]) -> None:
        self._addresses: set[str] = set()
        self._domains: set[str] = set()
        self._subdomains: set[str] = set()
        self._local_prefix: set[tuple[str, str]] = set()
        self._local_at_subdomain: set[tuple[str, str]] = set()
        for text in members:
            self._add(text)

    def _add(self, text: str) -> None:
        pattern = parse_member(text)
        kind = pattern.kind
        local, domain = pattern.local, pattern.domain  # already lower-case, no wildcard
        if kind is MemberKind.ADDRESS:
            self._addresses.add(f"{local}@{domain}")
        elif kind in (MemberKind.DOMAIN, MemberKind.ANY_LOCAL):
            self._domains.add(domain)
        elif kind is MemberKind.SUBDOMAIN:
            self._subdomains.add(domain)
        elif kind is MemberKind.LOCAL_PREFIX:
            self._local_prefix.add((local, domain))
        elif kind is MemberKind.LOCAL_AT_SUBDOMAIN:
            self._local_at_subdomain.add((local, domain))
        else:  # pragma: no cover - a new member kind must be indexed explicitly
            raise ValueError(f"unsupported address-list member kind {kind!r}")

    def __len__(self) -> int:
        return (
            len(self._addresses)
            + len(self._domains)
            + len(self._subdomains)
            + len(self._local_prefix)
            + len(self._local_at_subdomain)
        )

    def contains(self, address: str) -> bool:
        address = address.strip().lower()
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain:
            return False
        if address in self._addresses or domain in self._domains:
            return True
        if self._local_prefix:
            for end in range(len(local) + 1):
                if (local[:end], domain) in self._local_prefix:
                    return True
        if self._subdomains or self._local_at_subdomain:
            labels = domain.split(".")
            # parents only: `*.d` and `l@*.d` never match d itself
            for start in range(1, len(labels)):
                parent = ".".join(labels[start:])
                if parent in self._subdomains or (local, parent) in self._local_at_subdomain:
                    return True
        return False

    def contains_any(self, addresses: Iterable[str]) -> bool:
        return any(self.contains(a) for a in addresses)


def build_indexes(address_lists: Iterable[AddressList]) -> Mapping[str, AddressListIndex]:
    """One index per address list, keyed by the list's ID (what conditions refer to)."""
    return {al.id: AddressListIndex(al.members) for al in address_lists}
