"""Create/Get/Update/Delete/List of the six configuration resources (ingress points, traffic
policies, rule sets, relays, address lists, archives) on the resource document.

Entries are stored as the config file holds them (the Create request's shape, the explicit ID, the
`Tags`), so `mailmgr config export` prints them as a config file would. What only a built resource
knows (a reference resolved to an ID, an ingress point's status) comes from the validated Config.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from mailmgr.admin.api.errors import conflict, not_found
from mailmgr.admin.api.registry import Handler
from mailmgr.admin.api.service import ApiService, Focus
from mailmgr.admin.api.shapes import page_size_limits, paginate
from mailmgr.config.ids import KINDS, ResourceKind, make_arn
from mailmgr.config.loader import EXTENSION_KEYS
from mailmgr.config.models import Config
from mailmgr.config.overlay import entry_id
from mailmgr.state.api_store import ApiState

_CREATE = {
    ResourceKind.INGRESS_POINT: "CreateIngressPoint",
    ResourceKind.TRAFFIC_POLICY: "CreateTrafficPolicy",
    ResourceKind.RULE_SET: "CreateRuleSet",
    ResourceKind.RELAY: "CreateRelay",
    ResourceKind.ADDRESS_LIST: "CreateAddressList",
    ResourceKind.ARCHIVE: "CreateArchive",
}
# A raw JSON request may carry mailmgr's extension keys directly (interface.md).
EXTRA_INPUT_KEYS: dict[str, tuple[str, ...]] = {
    **{op: tuple(k for k in EXTENSION_KEYS[kind] if k != KINDS[kind].id_key)
       for kind, op in _CREATE.items()},
    "UpdateIngressPoint": ("Listen", "TlsWrappedListen", "TlsCertificate", "ProxyProtocol"),
    "UpdateRelay": ("MailFromReplacement", "Tls"),
    "UpdateArchive": ("Storage",),
}
# Update members that are not entry keys as they are.
_UPDATE_RENAMES = {"StatusToUpdate": "Status"}
_REQUEST_ONLY = ("ClientToken",)
_LIST_SIZE = 100  # default page size of List*, or the model's maximum when lower


def new_id(kind: ResourceKind) -> str:
    """An AWS-style ID: the kind's prefix and 26 random base32 characters."""
    token = base64.b32encode(secrets.token_bytes(20)).decode("ascii").lower()[:26]
    return KINDS[kind].prefix + token


def entries(state: ApiState, kind: ResourceKind) -> list[dict[str, Any]]:
    section = state.resources.setdefault(KINDS[kind].section, [])
    assert isinstance(section, list)
    return section


def find(state: ApiState, kind: ResourceKind, resource_id: str) -> dict[str, Any]:
    """The entry with this ID. Raises ApiError (ResourceNotFoundException)."""
    for entry in entries(state, kind):
        if entry_id(kind, entry) == resource_id:
            return entry
    raise not_found(f"{kind} {resource_id!r} not found")


def times(service: ApiService, state: ApiState, resource_id: str) -> tuple[float, float]:
    """(created, last modified) in epoch seconds. Resources from the config file that the API
    never changed count as created and modified when the file was last written."""
    stamp = state.meta.get("Resources", {}).get(resource_id)
    if stamp is not None:
        return float(stamp["Created"]), float(stamp["Modified"])
    try:
        mtime = service.config_path.stat().st_mtime
    except OSError:
        mtime = time.time()
    return mtime, mtime


def touch(state: ApiState, resource_id: str, *, created: bool = False) -> None:
    now = time.time()
    stamps = state.meta.setdefault("Resources", {})
    old = stamps.get(resource_id)
    first = now if created or old is None else old["Created"]
    stamps[resource_id] = {"Created": first, "Modified": now}


def _check_name(state: ApiState, kind: ResourceKind, name: object, own_id: str | None) -> None:
    key = KINDS[kind].name_key
    for entry in entries(state, kind):
        if entry.get(key) == name and entry_id(kind, entry) != own_id:
            raise conflict(f"a {kind} named {name!r} already exists")


# Where other resources name one of this kind (the loader accepts its name, ID or ARN there).
_REFERENCE_KEYS: dict[ResourceKind, str] = {
    ResourceKind.RULE_SET: "RuleSetId",
    ResourceKind.TRAFFIC_POLICY: "TrafficPolicyId",
    ResourceKind.ARCHIVE: "TargetArchive",
    ResourceKind.RELAY: "Relay",
    ResourceKind.ADDRESS_LIST: "AddressLists",
}


def _references(value: Any, key: str) -> Iterator[tuple[dict[str, Any] | list[Any], Any, str]]:
    """Every string under `key` anywhere in `value` (alone, or an item of a list there), as
    (container, index or key in it, the string): what one resource names of another."""
    if isinstance(value, dict):
        for k, item in value.items():
            if k == key and isinstance(item, str):
                yield value, k, item
            elif k == key and isinstance(item, list):
                yield from ((item, i, v) for i, v in enumerate(item) if isinstance(v, str))
            else:
                yield from _references(item, key)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item, key)


def _rename_references(value: Any, key: str, old: str, rid: str) -> None:
    """References to `old` (a name) under `key` anywhere in `value` become `rid`, so a rename
    through the API never breaks a config-file reference by name (AWS references by ID)."""
    for container, where, name in list(_references(value, key)):
        if name == old:
            container[where] = rid


def _users(state: ApiState, kind: ResourceKind, entry: dict[str, Any], arn: str) -> list[str]:
    """`kind name` of every resource that refers to `entry` (by ID, name or ARN)."""
    key = _REFERENCE_KEYS.get(kind)
    if key is None:
        return []
    rid = entry_id(kind, entry)
    names = {n for n in (rid, entry.get(KINDS[kind].name_key), arn) if isinstance(n, str)}
    users = []
    for other, info in KINDS.items():
        for item in entries(state, other):
            if item is not entry and any(n in names for _, _, n in _references(item, key)):
                users.append(f"{other} {item.get(info.name_key)!r}")
    return users


def _arn(config: Config, kind: ResourceKind, resource_id: str) -> str:
    return make_arn(kind, config.server.region, config.server.account_id, resource_id)


# --- describing entries ---------------------------------------------------------------------


def _password_version(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()[:16]


def _ingress(service: ApiService, state: ApiState, entry: dict[str, Any], rid: str,
             include_trust: bool = False) -> dict[str, Any]:
    config = service.config()
    built = next((p for p in config.ingress_points if p.id == rid), None)
    created, modified = times(service, state, rid)
    out: dict[str, Any] = {
        **entry, "IngressPointId": rid, "IngressPointArn": _arn(config, ResourceKind.INGRESS_POINT,
                                                               rid),
        "CreatedTimestamp": created, "LastUpdatedTimestamp": modified,
        "Status": entry.get("Status", "ACTIVE"), "TlsPolicy": entry.get("TlsPolicy", "OPTIONAL"),
    }
    if built is not None:
        out["RuleSetId"] = built.rule_set_id
        out["TrafficPolicyId"] = built.traffic_policy_id
        out["Status"] = str(built.status)
        addresses = service.listeners(rid) or [
            str(a) for a in (*built.listen, *built.tls_wrapped_listen)]
        if addresses:
            out["ARecord"] = addresses[0]  # where to connect: host:port, not a DNS name
    configuration = entry.get("IngressPointConfiguration") or {}
    auth: dict[str, Any] = {}
    if isinstance(configuration.get("SmtpPassword"), str):
        auth["IngressPointPasswordConfiguration"] = {
            "SmtpPasswordVersion": _password_version(configuration["SmtpPassword"])}
    if "SecretArn" in configuration:
        auth["SecretArn"] = configuration["SecretArn"]
    trust = (configuration.get("TlsAuthConfiguration") or {}).get("TrustStore")
    if isinstance(trust, dict):
        # AWS leaves the CA and CRL out unless IncludeTrustStoreContents asks for them.
        shown = trust if include_trust else {
            k: v for k, v in trust.items() if k not in ("CAContent", "CrlContent")}
        auth["TlsAuthConfiguration"] = {"TrustStore": shown}
    if auth:
        out["IngressPointAuthConfiguration"] = auth
    return out


def _generic(kind: ResourceKind, created_key: str, modified_key: str
             ) -> Callable[[ApiService, ApiState, dict[str, Any], str], dict[str, Any]]:
    def describe(service: ApiService, state: ApiState, entry: dict[str, Any], rid: str
                 ) -> dict[str, Any]:
        info = KINDS[kind]
        created, modified = times(service, state, rid)
        arn_key = info.id_key[:-2] + "Arn"
        return {**entry, info.id_key: rid, arn_key: _arn(service.config(), kind, rid),
                created_key: created, modified_key: modified}
    return describe


def _archive(service: ApiService, state: ApiState, entry: dict[str, Any], rid: str
             ) -> dict[str, Any]:
    out = _generic(ResourceKind.ARCHIVE, "CreatedTimestamp", "LastUpdatedTimestamp")(
        service, state, entry, rid)
    out.setdefault("Retention", {"RetentionPeriod": "THREE_MONTHS"})
    out["ArchiveState"] = "ACTIVE"
    return out


DESCRIBE: dict[ResourceKind, Callable[[ApiService, ApiState, dict[str, Any], str],
                                      dict[str, Any]]] = {
    ResourceKind.INGRESS_POINT: _ingress,
    ResourceKind.TRAFFIC_POLICY: _generic(ResourceKind.TRAFFIC_POLICY, "CreatedTimestamp",
                                          "LastUpdatedTimestamp"),
    ResourceKind.RULE_SET: _generic(ResourceKind.RULE_SET, "CreatedDate", "LastModificationDate"),
    ResourceKind.RELAY: _generic(ResourceKind.RELAY, "CreatedTimestamp", "LastModifiedTimestamp"),
    ResourceKind.ADDRESS_LIST: _generic(ResourceKind.ADDRESS_LIST, "CreatedTimestamp",
                                        "LastUpdatedTimestamp"),
    ResourceKind.ARCHIVE: _archive,
}


# --- operations -----------------------------------------------------------------------------


async def create(kind: ResourceKind, service: ApiService, params: dict[str, Any]
                 ) -> dict[str, Any]:
    info = KINDS[kind]
    rid = new_id(kind)

    def change(state: ApiState) -> tuple[ApiState, dict[str, Any]]:
        _check_name(state, kind, params.get(info.name_key), None)
        entry = {k: v for k, v in params.items() if k not in _REQUEST_ONLY}
        entries(state, kind).append({info.id_key: rid, **entry})
        touch(state, rid, created=True)
        return state, {info.id_key: rid}

    return await service.mutate(_CREATE[kind], params, change, focus=Focus(kind, rid))


async def get(kind: ResourceKind, service: ApiService, params: dict[str, Any]
              ) -> dict[str, Any]:
    rid = params[KINDS[kind].id_key]
    state = await service.state()
    entry = find(state, kind, rid)
    if kind is ResourceKind.INGRESS_POINT:
        return _ingress(service, state, entry, rid,
                        params.get("IncludeTrustStoreContents") == "INCLUDE")
    return DESCRIBE[kind](service, state, entry, rid)


async def update(kind: ResourceKind, service: ApiService, params: dict[str, Any]
                 ) -> dict[str, Any]:
    info = KINDS[kind]
    rid = params[info.id_key]

    def change(state: ApiState) -> tuple[ApiState, dict[str, Any]]:
        entry = find(state, kind, rid)
        old = entry.get(info.name_key)
        if info.name_key in params and params[info.name_key] != old:
            _check_name(state, kind, params[info.name_key], rid)
            if kind in _REFERENCE_KEYS and isinstance(old, str):
                _rename_references(state.resources, _REFERENCE_KEYS[kind], old, rid)
        for key, value in params.items():
            if key != info.id_key and key not in _REQUEST_ONLY:
                entry[_UPDATE_RENAMES.get(key, key)] = value
        entry[info.id_key] = rid  # a rename keeps the ID
        touch(state, rid)
        return state, {}

    return await service.mutate(f"Update{info.id_key[:-2]}", params, change,
                                focus=Focus(kind, rid))


async def delete(kind: ResourceKind, service: ApiService, params: dict[str, Any]
                 ) -> dict[str, Any]:
    info = KINDS[kind]
    rid = params[info.id_key]

    def change(state: ApiState) -> tuple[ApiState, dict[str, Any]]:
        entry = find(state, kind, rid)
        users = _users(state, kind, entry, _arn(service.config(), kind, rid))
        if users:
            raise conflict(f"{kind} {rid!r} is in use by {', '.join(users[:5])}"
                           + (f" and {len(users) - 5} more" if len(users) > 5 else ""))
        entries(state, kind).remove(entry)
        state.meta.get("Resources", {}).pop(rid, None)
        if kind is ResourceKind.ADDRESS_LIST:
            from mailmgr.admin.api.member_state import prune

            prune(state, rid)  # its members' creation times go with it
        return state, {}

    return await service.mutate(f"Delete{info.id_key[:-2]}", params, change, deleting=True)


_LIST_KEYS = {
    ResourceKind.INGRESS_POINT: ("ListIngressPoints", "IngressPoints"),
    ResourceKind.TRAFFIC_POLICY: ("ListTrafficPolicies", "TrafficPolicies"),
    ResourceKind.RULE_SET: ("ListRuleSets", "RuleSets"),
    ResourceKind.RELAY: ("ListRelays", "Relays"),
    ResourceKind.ADDRESS_LIST: ("ListAddressLists", "AddressLists"),
    ResourceKind.ARCHIVE: ("ListArchives", "Archives"),
}


async def list_all(kind: ResourceKind, service: ApiService, params: dict[str, Any]
                   ) -> dict[str, Any]:
    """One page, in the document's order; members beyond the list shape's are dropped by the
    output projection."""
    operation, member = _LIST_KEYS[kind]
    state = await service.state()
    found = [(entry, entry_id(kind, entry)) for entry in entries(state, kind)]
    page, token = paginate([f for f in found if f[1] is not None], params, scope=operation,
                           default=min(_LIST_SIZE, page_size_limits(operation)[1]))
    described = []
    for entry, rid in page:
        assert rid is not None
        described.append(DESCRIBE[kind](service, state, entry, rid))
    return {member: described, "NextToken": token}


def _table() -> dict[str, Handler]:
    table: dict[str, Handler] = {}
    for kind, create_op in _CREATE.items():
        noun = create_op[len("Create"):]
        table[create_op] = partial(create, kind)
        table[f"Get{noun}"] = partial(get, kind)
        table[f"Delete{noun}"] = partial(delete, kind)
        table[_LIST_KEYS[kind][0]] = partial(list_all, kind)
        if kind is not ResourceKind.ADDRESS_LIST:  # AWS has no UpdateAddressList
            table[f"Update{noun}"] = partial(update, kind)
    return table


OPERATIONS: dict[str, Handler] = _table()
