"""The shared (pushed) configuration document: what `config push` stores from a file, and how a
replica combines it with its local file (interface.md, "Shared configuration").

Pure data work on raw documents; loading and validation stay in loader.py.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from mailmgr.config.documents import address_file_members, load_document
from mailmgr.config.fields import Ctx, Sink, index_path
from mailmgr.config.rulesets import load_rule_set_file
from mailmgr.errors import ConfigError

# The sections a pushed document holds; `Server` always comes from each replica's local file.
RESOURCE_KEYS = (
    "IngressPoints", "TrafficPolicies", "RuleSets", "Relays", "AddressLists", "Archives",
    "Analyzers", "Mailboxes",
)
# Keys of an ingress point that name this host's sockets and files: taken from the local file's
# point of the same name when it has one, so two replicas can share a host and keep their keys.
HOST_BOUND_KEYS = ("Listen", "TlsWrappedListen", "TlsCertificate", "ProxyProtocol")
# get-rule-set output keys that describe a stored copy, not the rule set: dropped when inlined.
_RULE_SET_COPY_KEYS = ("RuleSetArn", "CreatedDate", "LastModificationDate")


def merge_resources(local: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """The resource sections of `document`, each ingress point with the HOST_BOUND_KEYS of the
    `local` point of the same IngressPointName when there is one (a key absent locally is then
    absent). `local`'s own resources are otherwise ignored. Neither input is modified."""
    points = local.get("IngressPoints")
    local_points = {
        p["IngressPointName"]: p for p in (points if isinstance(points, list) else ())
        if isinstance(p, dict) and isinstance(p.get("IngressPointName"), str)
    }
    merged = {k: v for k, v in document.items() if k in RESOURCE_KEYS}
    shared_points = merged.get("IngressPoints")
    if isinstance(shared_points, list):
        combined: list[Any] = []
        for point in shared_points:
            mine = local_points.get(point.get("IngressPointName")) if isinstance(
                point, dict) else None
            if mine is not None:
                point = {k: v for k, v in point.items() if k not in HOST_BOUND_KEYS}
                point.update({k: mine[k] for k in HOST_BOUND_KEYS if k in mine})
            combined.append(point)
        merged["IngressPoints"] = combined
    return merged


def shareable_document(path: Path) -> dict[str, Any]:
    """The resource sections of the config file `path` as they are stored by `config push`:
    without its `Server` section, with every address list's `File:` import added to its
    `Members` and every `File:` rule set replaced by the file's rule set, so replicas need not
    have those files. Call it on a file `load` accepted; raises ConfigError otherwise."""
    sink = Sink()
    ctx = Ctx(str(path), path.parent, sink)
    ok, data = load_document(ctx, path, "$")
    if not ok or not isinstance(data, dict):
        raise ConfigError(sink.report())
    document = {k: copy.deepcopy(data[k]) for k in RESOURCE_KEYS if data.get(k) is not None}
    for i, entry in enumerate(document.get("AddressLists") or ()):
        if isinstance(entry, dict) and isinstance(entry.get("File"), str):
            where = index_path("$.AddressLists", i)
            members = list(entry.get("Members") or ())
            seen = set(members)
            for text, _ in address_file_members(ctx, ctx.resolve(entry["File"]), where):
                if isinstance(text, str) and text not in seen:
                    seen.add(text)
                    members.append(text)
            entry.pop("File")
            entry["Members"] = members
    rule_sets = document.get("RuleSets") or []
    for i, entry in enumerate(rule_sets):
        if isinstance(entry, dict) and "File" in entry:
            loaded = load_rule_set_file(ctx, entry, index_path("$.RuleSets", i))
            if loaded is not None:
                rule_sets[i] = {k: v for k, v in loaded[1].items()
                                if k not in _RULE_SET_COPY_KEYS}
    if sink.problems:
        raise ConfigError(sink.report())
    return document


def document_hash(document: dict[str, Any]) -> str:
    """SHA-256 (hex) of the document as canonical JSON (keys sorted, no spaces): the same for
    the same resources however the file was written."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()
