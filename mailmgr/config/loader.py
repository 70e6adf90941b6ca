"""Loading a config file: parse, validate every resource, resolve references, build Config.

All problems are collected and raised together as one ConfigError; no other exception (and no
traceback) escapes. An empty `IngressPointConfiguration: {}` counts as absent, as interface.md
shows it for OPEN ingress points.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mailmgr.config.analyzers import build_analyzers
from mailmgr.config.documents import load_document
from mailmgr.config.extension_tags import apply_tags, unknown_tags
from mailmgr.config.fields import Ctx, Sink, brief, check_keys, index_path, key_path, type_name
from mailmgr.config.ids import ID_PATTERN, KINDS, ResourceKind, derive_id, make_arn
from mailmgr.config.listen_check import check_listen_conflicts
from mailmgr.config.models import Config, ServerConfig
from mailmgr.config.refs import Declared, Resolver
from mailmgr.config.resources import (
    Pending,
    build_address_list,
    build_archive,
    build_ingress_point,
    build_mailboxes,
    build_relay,
    build_traffic_policy,
)
from mailmgr.config.rulesets import READ_ONLY_KEYS, build_rule_set, load_rule_set_file
from mailmgr.config.schema import Validator
from mailmgr.config.server import parse_server
from mailmgr.config.shared import RESOURCE_KEYS, merge_resources
from mailmgr.errors import ConfigError

TOP_LEVEL_KEYS = (
    "Server", "IngressPoints", "TrafficPolicies", "RuleSets", "Relays", "AddressLists",
    "Archives", "Mailboxes", "Analyzers",
)
EXTENSION_KEYS: dict[ResourceKind, tuple[str, ...]] = {
    ResourceKind.INGRESS_POINT: (
        "IngressPointId", "Listen", "TlsWrappedListen", "TlsCertificate", "Status",
        "ProxyProtocol",
    ),
    ResourceKind.TRAFFIC_POLICY: ("TrafficPolicyId",),
    ResourceKind.RULE_SET: ("RuleSetId",),
    ResourceKind.RELAY: ("RelayId", "MailFromReplacement", "Tls"),
    ResourceKind.ADDRESS_LIST: ("AddressListId", "Members", "File"),
    ResourceKind.ARCHIVE: ("ArchiveId", "Storage"),
}
# Build order: what others refer to first, so problems read in a natural order.
ORDER = (
    ResourceKind.ADDRESS_LIST, ResourceKind.ARCHIVE, ResourceKind.RELAY,
    ResourceKind.TRAFFIC_POLICY, ResourceKind.RULE_SET, ResourceKind.INGRESS_POINT,
)
T = TypeVar("T")


def _guard(ctx: Ctx, path: str, work: Callable[..., T], *args: Any) -> T | None:
    """Turn an unexpected exception while checking one resource into a problem for its path."""
    try:
        return work(*args)
    except Exception as exc:
        ctx.problem(path, f"internal error while checking this entry ({type(exc).__name__}: "
                          f"{exc}); please report this as a mailmgr bug")
        return None


def _entries(ctx: Ctx, data: dict[str, Any], section: str) -> list[tuple[str, Any]]:
    value = data.get(section)
    if value is None:
        return []
    if not isinstance(value, list):
        ctx.problem(f"$.{section}", f"expected a list, got {type_name(value)}")
        return []
    return [(index_path(f"$.{section}", i), item) for i, item in enumerate(value)]


def _explicit_id(ctx: Ctx, raw: dict[str, Any], key: str, path: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        ctx.problem(key_path(path, key),
                    f"value {brief(value)} does not match pattern {ID_PATTERN.pattern} ({key})")
        return None
    return value


def _declare(
    ctx: Ctx, kind: ResourceKind, entry: Any, path: str, server: ServerConfig,
    resolver: Resolver,
) -> Pending | None:
    info = KINDS[kind]
    if not isinstance(entry, dict):
        ctx.problem(path, f"expected a mapping, got {type_name(entry)}")
        return None
    extra = EXTENSION_KEYS[kind]
    if kind is ResourceKind.RULE_SET and "File" in entry:
        loaded = load_rule_set_file(ctx, entry, path)
        if loaded is None:
            return None
        ctx, entry = loaded
        path = "$"
        extra = READ_ONLY_KEYS
    if kind is ResourceKind.INGRESS_POINT and entry.get("IngressPointConfiguration") == {}:
        entry = {k: v for k, v in entry.items() if k != "IngressPointConfiguration"}
    for tag in unknown_tags(kind, entry):
        ctx.problem(key_path(path, "Tags"), f"tag {brief(tag, 60)}: no mailmgr: tag of that "
                    f"name applies to a {kind} (see the README: extension tags)")
    entry = apply_tags(kind, entry)
    valid = bool(_guard(ctx, path, lambda: Validator(ctx, extra).validate(
        entry, info.shape, path)))
    name = entry.get(info.name_key)
    explicit = _explicit_id(ctx, entry, info.id_key, path)
    if not isinstance(name, str):
        return None
    resource_id = explicit or derive_id(kind, name)
    resolver.add(Declared(kind, name, resource_id, ctx, path))
    arn = make_arn(kind, server.region, server.account_id, resource_id)
    return Pending(kind, ctx, path, entry, name, resource_id, arn, valid)


def _build(p: Pending, resolver: Resolver) -> object:
    match p.kind:
        case ResourceKind.INGRESS_POINT:
            return build_ingress_point(p, resolver)
        case ResourceKind.TRAFFIC_POLICY:
            return build_traffic_policy(p, resolver)
        case ResourceKind.RULE_SET:
            if not p.valid:
                return None
            return build_rule_set(p.ctx, resolver, p.raw, p.path, (p.id, p.name, p.arn))
        case ResourceKind.RELAY:
            return build_relay(p, resolver)
        case ResourceKind.ADDRESS_LIST:
            return build_address_list(p, resolver)
        case ResourceKind.ARCHIVE:
            return build_archive(p, resolver)
    return None  # pragma: no cover


def _read_root(ctx: Ctx, path: Path) -> dict[str, Any]:
    """The file's top-level mapping (an empty file is an empty mapping). Raises ConfigError."""
    ok, data = load_document(ctx, path, "$")
    if not ok:
        raise ConfigError(ctx.sink.report())
    data = {} if data is None else data
    if not isinstance(data, dict):
        ctx.problem("$", f"expected a mapping with {', '.join(TOP_LEVEL_KEYS)}, "
                         f"got {type_name(data)}")
        raise ConfigError(ctx.sink.report())
    check_keys(ctx, data, TOP_LEVEL_KEYS, "$")
    return data


def load(path: Path) -> Config:
    """Load and validate `path` (.yaml/.yml/.json). Raises ConfigError with every problem."""
    path = Path(path)
    ctx = Ctx(str(path), path.parent, Sink())
    data = _read_root(ctx, path)
    return _build_config(ctx, data.get("Server"), ctx, data, path)


def load_shared(path: Path, document: dict[str, Any], label: str) -> Config:
    """The replica's config: the local file `path` (its `Server` section always applies) with
    the resources of the shared `document` (a pushed config: resource sections only), the
    host-bound keys of each ingress point taken from the local point of the same name
    (mailmgr.config.shared.merge_resources). Problems in the document are reported against
    `label` (e.g. `shared config v3`); relative paths resolve against the local file's folder.
    Raises ConfigError with every problem."""
    path = Path(path)
    sink = Sink()
    local = Ctx(str(path), path.parent, sink)
    data = _read_root(local, path)
    shared = Ctx(label, path.parent, sink)
    if not isinstance(document, dict):
        shared.problem("$", f"expected a mapping, got {type_name(document)}")
        raise ConfigError(sink.report())
    check_keys(shared, document, RESOURCE_KEYS, "$")
    return _build_config(local, data.get("Server"), shared, merge_resources(data, document),
                         path)


def load_resources(path: Path, document: dict[str, Any], label: str) -> Config:
    """The local file `path`'s `Server` section with the resource sections of `document` in
    place of the file's own (no host-bound merge: `document` already is this host's, e.g. the
    file's resources with the Mail Manager API's changes on top). Problems in the document are
    reported against `label`. Raises ConfigError with every problem."""
    path = Path(path)
    sink = Sink()
    local = Ctx(str(path), path.parent, sink)
    data = _read_root(local, path)
    resources = Ctx(label, path.parent, sink)
    check_keys(resources, document, RESOURCE_KEYS, "$")
    return _build_config(local, data.get("Server"), resources,
                         {k: v for k, v in document.items() if k in RESOURCE_KEYS}, path)


def _build_config(server_ctx: Ctx, server_raw: Any, ctx: Ctx, data: dict[str, Any],
                  path: Path) -> Config:
    """Parse `server_raw` (in `server_ctx`) and every resource section of `data` (in `ctx`);
    both contexts share one Sink. Raises ConfigError with every problem."""
    sink = ctx.sink
    server = _guard(server_ctx, "$.Server", lambda: parse_server(server_ctx, server_raw)) or (
        parse_server(Ctx(str(path), path.parent, Sink()), None)
    )
    resolver = Resolver()
    # Before every rule set and traffic policy: their `Analysis` conditions name analyzers.
    resolver.analyzers = _guard(ctx, "$.Analyzers", build_analyzers, ctx, data) or ()
    mailboxes = _guard(ctx, "$.Mailboxes", lambda: build_mailboxes(
        ctx, [e for _, e in _entries(ctx, data, "Mailboxes")], "$.Mailboxes", resolver)) or ()

    pending: dict[ResourceKind, list[Pending]] = {kind: [] for kind in ResourceKind}
    for kind in ResourceKind:
        for where, entry in _entries(ctx, data, KINDS[kind].section):
            declared = _guard(ctx, where, _declare, ctx, kind, entry, where, server, resolver)
            if declared is not None:
                pending[kind].append(declared)

    _guard(ctx, "$.IngressPoints", check_listen_conflicts, server_ctx, server_raw,
           pending[ResourceKind.INGRESS_POINT])
    built: dict[ResourceKind, list[Any]] = {kind: [] for kind in ResourceKind}
    for kind in ORDER:
        for p in pending[kind]:
            model = _guard(p.ctx, p.path, _build, p, resolver)
            if model is not None:
                built[kind].append(model)
    if sink.problems:
        raise ConfigError(sink.report())
    return Config(
        source=path,
        server=server,
        ingress_points=tuple(built[ResourceKind.INGRESS_POINT]),
        traffic_policies=tuple(built[ResourceKind.TRAFFIC_POLICY]),
        rule_sets=tuple(built[ResourceKind.RULE_SET]),
        relays=tuple(built[ResourceKind.RELAY]),
        address_lists=tuple(built[ResourceKind.ADDRESS_LIST]),
        archives=tuple(built[ResourceKind.ARCHIVE]),
        mailboxes=mailboxes,
        analyzers=resolver.analyzers,
    )
