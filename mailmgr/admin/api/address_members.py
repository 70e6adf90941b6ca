"""Address-list members through the Mail Manager API: RegisterMemberToAddressList,
DeregisterMemberFromAddressList, GetMemberOfAddressList, ListMembersOfAddressList; and the
import-job operations and upload route of mailmgr.admin.api.import_jobs (one registry entry)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from mailmgr.admin.api import import_jobs
from mailmgr.admin.api.errors import not_found, quota, validation
from mailmgr.admin.api.member_state import (
    MAX_MEMBERS,
    created_at,
    member_address,
    prune,
    raw_members,
    record,
    stamps,
    view_of,
)
from mailmgr.admin.api.registry import Handler
from mailmgr.admin.api.resources import find, times, touch
from mailmgr.admin.api.service import ApiService, Focus
from mailmgr.config.ids import ResourceKind
from mailmgr.state.api_store import ApiState

_KIND = ResourceKind.ADDRESS_LIST
_PAGE_SIZE = 100  # ListMembersOfAddressList's default page (the model allows 1-1000)
_VIEWS = "address_members.views"  # service.extra: {list ID: (Members object, MemberView)}


def _views(service: ApiService) -> dict[str, Any]:
    views: dict[str, Any] = service.extra.setdefault(_VIEWS, {})
    return views


async def register(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    """Adds `Address` to the list. Registering a member that is already there (in any case)
    succeeds without changing anything, its CreatedTimestamp kept (AWS documents no conflict
    for it). Raises ResourceNotFoundException (list), ValidationException (address),
    ServiceQuotaExceededException (MAX_MEMBERS)."""
    list_id = params["AddressListId"]
    address = member_address(params["Address"])
    state = await service.state()
    if address in view_of(_views(service), list_id, find(state, _KIND, list_id)).present:
        return {}

    def change(state: ApiState) -> tuple[ApiState, dict[str, Any]]:
        entry = find(state, _KIND, list_id)
        members = raw_members(entry)
        present = {m.lower() for m in members if isinstance(m, str)}
        if address in present:
            return state, {}
        if len(present) >= MAX_MEMBERS:
            raise quota(f"address list {list_id!r} already has {MAX_MEMBERS} members")
        members.append(address)
        record(state, list_id, (address,))
        prune(state, list_id)
        touch(state, list_id)
        return state, {}

    return await service.mutate("RegisterMemberToAddressList", params, change,
                                focus=Focus(_KIND, list_id))


async def deregister(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    """Removes `Address` (matched case-insensitively, as written; a wildcard member is removed
    by its own text). Raises ResourceNotFoundException (list or member)."""
    list_id = params["AddressListId"]
    address = member_address(params["Address"])

    def change(state: ApiState) -> tuple[ApiState, dict[str, Any]]:
        entry = find(state, _KIND, list_id)
        members = raw_members(entry)
        kept = [m for m in members if not (isinstance(m, str) and m.lower() == address)]
        if len(kept) == len(members):
            raise not_found(f"the address is not a member of address list {list_id!r}")
        entry["Members"] = kept
        stamps(state, list_id).pop(address, None)
        prune(state, list_id)
        touch(state, list_id)
        return state, {}

    return await service.mutate("DeregisterMemberFromAddressList", params, change,
                                focus=Focus(_KIND, list_id))


async def get_member(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    """{Address (as stored, lower-case), CreatedTimestamp}. Raises ResourceNotFoundException."""
    list_id = params["AddressListId"]
    address = member_address(params["Address"])
    state = await service.state()
    view = view_of(_views(service), list_id, find(state, _KIND, list_id))
    if address not in view.present:
        raise not_found(f"the address is not a member of address list {list_id!r}")
    default = times(service, state, list_id)[0]
    return {"Address": address,
            "CreatedTimestamp": created_at(state, list_id, address, default)}


def _cursor(token: str, scope: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        if not isinstance(data, dict) or data.get("s") != scope or not isinstance(
                data.get("a"), str):
            raise ValueError(scope)
        return str(data["a"])
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise validation("NextToken is not valid for this request") from None


def _token(last: str, scope: str) -> str:
    text = json.dumps({"a": last, "s": scope}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode("ascii")


async def list_members(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    """One page of members in address order, optionally only those starting with
    `Filter.AddressPrefix` (case-insensitive). NextToken is a cursor (the last address
    returned), so members added or removed between pages neither repeat nor shift others out.
    Raises ResourceNotFoundException (list), ValidationException (a foreign NextToken)."""
    list_id = params["AddressListId"]
    prefix = str((params.get("Filter") or {}).get("AddressPrefix") or "").lower()
    scope = f"ListMembersOfAddressList:{list_id}:{prefix}"
    after = None if params.get("NextToken") is None else _cursor(params["NextToken"], scope)
    state = await service.state()
    view = view_of(_views(service), list_id, find(state, _KIND, list_id))
    found, more = view.page(prefix, after, int(params.get("PageSize") or _PAGE_SIZE))
    default = times(service, state, list_id)[0]
    return {"Addresses": [{"Address": a, "CreatedTimestamp": created_at(state, list_id, a,
                                                                          default)}
                          for a in found],
            "NextToken": _token(found[-1], scope) if more and found else None}


OPERATIONS: dict[str, Handler] = {
    "RegisterMemberToAddressList": register,
    "DeregisterMemberFromAddressList": deregister,
    "GetMemberOfAddressList": get_member,
    "ListMembersOfAddressList": list_members,
    **import_jobs.OPERATIONS,
}


def register_routes(router: Any, service: ApiService) -> None:
    """The import jobs' pre-signed upload URL (`PUT /api/address-list-import/{job}`)."""
    import_jobs.register_routes(router, service)
