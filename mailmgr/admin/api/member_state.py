"""Address-list members in the API state: the address form the API stores, a sorted view for
cheap lookups and pages, and the per-member creation times kept in `meta["AddressListMembers"]`.

Members live inline in the address list's `Members` (as a config file holds them); the loader
lower-cases them when it builds the list, and the API stores them lower-cased from the start.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mailmgr.admin.api.errors import validation
from mailmgr.config.addresses import parse_member
from mailmgr.config.ids import ResourceKind
from mailmgr.config.overlay import entry_id
from mailmgr.state.api_store import ApiState

# meta namespace: {address list ID: {lower-cased member: created, epoch seconds}}
STAMPS = "AddressListMembers"
# Members one address list may hold through the API (Register answers
# ServiceQuotaExceededException, an import counts the rest as failed items). Every change
# re-validates the whole configuration, so this also bounds the cost of one change.
MAX_MEMBERS = 100_000
# Sorted views kept (one per address list recently read).
MAX_VIEWS = 64
# The model's Address length limits (min 3, max 320), applied to imported rows too.
MIN_ADDRESS, MAX_ADDRESS = 3, 320


def member_address(text: object, field: str = "Address") -> str:
    """`text` as a member the API stores (lower-cased). Raises ApiError (ValidationException
    naming `field`) for anything the config loader would refuse."""
    reason = member_problem(text)
    if reason is not None:
        raise validation(f"1 validation error detected: {field}: {reason}")
    assert isinstance(text, str)
    return text.lower()


def member_problem(text: object) -> str | None:
    """Why `text` cannot be an address-list member, or None."""
    if not isinstance(text, str):
        return "expected a string"
    if not MIN_ADDRESS <= len(text) <= MAX_ADDRESS:
        return f"must be {MIN_ADDRESS} to {MAX_ADDRESS} characters long"
    try:
        parse_member(text)
    except ValueError as exc:
        return f"not a valid address list member: {exc}"
    return None


@dataclass(frozen=True)
class MemberView:
    """The members of one list, lower-cased, without duplicates, sorted (for prefix searches
    and cursor pages by bisection) and as a set (for membership)."""

    ordered: tuple[str, ...]
    present: frozenset[str]

    def page(self, prefix: str, after: str | None, size: int) -> tuple[list[str], bool]:
        """Up to `size` members starting with `prefix` that sort after `after`, and whether
        more follow. O(log n + size)."""
        start = bisect.bisect_left(self.ordered, prefix)
        if after is not None:
            start = max(start, bisect.bisect_right(self.ordered, after))
        found: list[str] = []
        i = start
        while i < len(self.ordered) and self.ordered[i].startswith(prefix):
            if len(found) == size:
                return found, True
            found.append(self.ordered[i])
            i += 1
        return found, False


def raw_members(entry: dict[str, Any]) -> list[Any]:
    """The entry's `Members` list (created when absent). Raises ApiError when the entry holds
    something else (a config file the loader would have refused)."""
    members = entry.setdefault("Members", [])
    if not isinstance(members, list):
        raise validation("the address list's Members is not a list")
    return members


def view_of(cache: dict[str, Any], list_id: str, entry: dict[str, Any]) -> MemberView:
    """The view of `entry`'s members, rebuilt only when the members list object changed (every
    change through `mutate` works on a copy, so identity tells a change)."""
    members = entry.get("Members")
    cached = cache.get(list_id)
    if cached is not None and cached[0] is members:
        view: MemberView = cached[1]
        return view
    lowered = {m.lower() for m in members if isinstance(m, str)} if isinstance(
        members, list) else set()
    view = MemberView(tuple(sorted(lowered)), frozenset(lowered))
    if len(cache) >= MAX_VIEWS:  # lists deleted long ago must not keep their members alive
        cache.clear()
    cache[list_id] = (members, view)
    return view


def stamps(state: ApiState, list_id: str) -> dict[str, float]:
    table = state.meta.setdefault(STAMPS, {})
    own = table.setdefault(list_id, {})
    assert isinstance(own, dict)
    return own


def created_at(state: ApiState, list_id: str, address: str, default: float) -> float:
    """When `address` was registered; members the API did not add (config file) count as
    created with the list."""
    found = state.meta.get(STAMPS, {}).get(list_id, {}).get(address)
    return float(found) if isinstance(found, int | float) else default


def record(state: ApiState, list_id: str, addresses: Iterable[str]) -> None:
    now = time.time()
    own = stamps(state, list_id)
    for address in addresses:
        own[address] = now


def prune(state: ApiState, list_id: str, present: Iterable[str] | None = None) -> None:
    """Keep `meta[STAMPS]` bounded by the members that exist: drop lists that are gone, and
    (when `present` is given) the stamps of `list_id` for members no longer in it."""
    table = state.meta.get(STAMPS)
    if not isinstance(table, dict):
        return
    lists = {entry_id(ResourceKind.ADDRESS_LIST, e)
             for e in state.resources.get("AddressLists") or ()}
    for gone in [k for k in table if k not in lists]:
        del table[gone]
    own = table.get(list_id)
    if present is not None and isinstance(own, dict):
        keep = set(present)
        for old in [a for a in own if a not in keep]:
            del own[old]
