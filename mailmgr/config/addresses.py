"""Address-list member patterns: parsing and matching of one member string.

Pure functions over strings; it knows nothing about files, config paths or problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache


class MemberKind(StrEnum):
    ADDRESS = "ADDRESS"  # user@example.com
    DOMAIN = "DOMAIN"  # example.com: any address at exactly that domain
    ANY_LOCAL = "ANY_LOCAL"  # *@example.com
    LOCAL_PREFIX = "LOCAL_PREFIX"  # user*@example.com: local part starts with "user"
    SUBDOMAIN = "SUBDOMAIN"  # *.example.com: any address at a subdomain, not example.com
    LOCAL_AT_SUBDOMAIN = "LOCAL_AT_SUBDOMAIN"  # user@*.example.com


@dataclass(frozen=True)
class MemberPattern:
    """A parsed member. `local` and `domain` are lower-cased; `domain` never starts with `*.`;
    `local` is "" when the kind has no fixed local part (DOMAIN, ANY_LOCAL, SUBDOMAIN) and the
    prefix (without `*`) for LOCAL_PREFIX."""

    kind: MemberKind
    local: str
    domain: str

    def matches(self, address: str) -> bool:
        """True when `address` (an addr-spec, any case) is covered by this member."""
        local, at, domain = address.lower().rpartition("@")
        if not at or not local or not domain:
            return False
        in_subdomain = domain.endswith("." + self.domain)
        match self.kind:
            case MemberKind.ADDRESS:
                return local == self.local and domain == self.domain
            case MemberKind.DOMAIN | MemberKind.ANY_LOCAL:
                return domain == self.domain
            case MemberKind.LOCAL_PREFIX:
                return domain == self.domain and local.startswith(self.local)
            case MemberKind.SUBDOMAIN:
                return in_subdomain
            case MemberKind.LOCAL_AT_SUBDOMAIN:
                return in_subdomain and local == self.local
        return False  # pragma: no cover - the match above is exhaustive


_WILDCARD_HELP = (
    "'*' is allowed only as the whole local part (*@example.com), at the end of the local part "
    "(user*@example.com) or as a leading '*.' of the domain (*.example.com, user@*.example.com)"
)


def _check_domain(domain: str) -> None:
    if not domain:
        raise ValueError("the domain is empty")
    labels = domain.split(".")
    if any(not label for label in labels):
        raise ValueError(f"domain '{domain}' has an empty label")
    if any(label.startswith("-") or label.endswith("-") for label in labels):
        raise ValueError(f"domain '{domain}' has a label starting or ending with '-'")
    bad = sorted({c for c in domain if not (c.isalnum() or c in "-._")})
    if bad:
        raise ValueError(f"domain '{domain}' contains invalid character(s) {' '.join(bad)}")


def _check_local(local: str) -> None:
    if not local:
        raise ValueError("the local part is empty")
    bad = sorted({c for c in local if c in '"(),:;<>[\\]' or ord(c) < 0x20})
    if bad:
        raise ValueError(f"local part '{local}' contains invalid character(s) {' '.join(bad)}")


def parse_member(text: str) -> MemberPattern:
    """Parse one address-list member; raise ValueError with a reason for anything invalid."""
    if not isinstance(text, str):
        raise ValueError(f"expected a string, got {type(text).__name__}")
    return _parse_member(text)


# Every change through the API re-validates and re-indexes every member of every list: the
# same strings again (a register into a 10,000-member list parsed 20,000 of them: 233 -> 99 ms
# a call). The result is immutable; errors are not cached. ~250 bytes an entry: <= ~50 MB.
@lru_cache(maxsize=200_000)
def _parse_member(text: str) -> MemberPattern:
    if not text:
        raise ValueError("empty member")
    if any(c.isspace() for c in text):
        raise ValueError("whitespace is not allowed in a member")
    value = text.lower()
    if value == "*":
        raise ValueError("a bare '*' would match every address; list domains instead")
    if value.count("*") > 1:
        raise ValueError("at most one '*' wildcard is allowed")
    if value.count("@") > 1:
        raise ValueError("more than one '@'")
    if "@" not in value:
        if value.startswith("*."):
            _check_domain(value[2:])
            return MemberPattern(MemberKind.SUBDOMAIN, "", value[2:])
        if "*" in value:
            raise ValueError(_WILDCARD_HELP)
        _check_domain(value)
        return MemberPattern(MemberKind.DOMAIN, "", value)
    local, _, domain = value.partition("@")
    if not local:
        raise ValueError("the local part is empty")
    if not domain:
        raise ValueError("the domain is empty")
    if domain.startswith("*."):
        _check_domain(domain[2:])
        if "*" in local:  # pragma: no cover - excluded by the single-'*' check
            raise ValueError("at most one '*' wildcard is allowed")
        _check_local(local)
        return MemberPattern(MemberKind.LOCAL_AT_SUBDOMAIN, local, domain[2:])
    if "*" in domain:
        raise ValueError(_WILDCARD_HELP)
    _check_domain(domain)
    if local == "*":
        return MemberPattern(MemberKind.ANY_LOCAL, "", domain)
    if local.endswith("*") and "*" not in local[:-1]:
        _check_local(local[:-1])
        return MemberPattern(MemberKind.LOCAL_PREFIX, local[:-1], domain)
    if "*" in local:
        raise ValueError(_WILDCARD_HELP)
    _check_local(local)
    return MemberPattern(MemberKind.ADDRESS, local, domain)
