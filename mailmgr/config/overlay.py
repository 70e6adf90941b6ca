"""The Mail Manager API's changes on top of a config file, as data (interface.md: without
`Server.SharedState` the API's state file is loaded on top of the config file).

A change is kept per resource, keyed by its ID: an upserted entry replaces the file's entry of the
same ID (or is added), a deleted ID removes it. So the operator's later edits to resources the API
never touched still apply. Pure: no I/O, no validation (the loader validates the result).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from mailmgr.config.ids import KINDS, ResourceKind, derive_id

SECTION_KINDS: dict[str, ResourceKind] = {info.section: kind for kind, info in KINDS.items()}


def entry_id(kind: ResourceKind, entry: object) -> str | None:
    """The resource ID an entry has: its explicit ID key, else the one derived from its name;
    None for an entry without either (the loader reports it)."""
    if not isinstance(entry, dict):
        return None
    info = KINDS[kind]
    explicit = entry.get(info.id_key)
    if isinstance(explicit, str):
        return explicit
    name = entry.get(info.name_key)
    return derive_id(kind, name) if isinstance(name, str) else None


@dataclass(frozen=True)
class Overlay:
    """`upserts`: section -> full entries (each with its explicit ID key); `deleted`: section ->
    IDs. The JSON form (`to_json`/`from_json`) is the state file's `Resources` member."""

    upserts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    deleted: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"Upserts": self.upserts, "Deleted": self.deleted}

    @classmethod
    def from_json(cls, data: object) -> Overlay:
        """Raises ValueError when `data` is not an overlay's JSON form."""
        if not isinstance(data, dict):
            raise ValueError("Resources must be a mapping")
        upserts, deleted = data.get("Upserts") or {}, data.get("Deleted") or {}
        if not isinstance(upserts, dict) or not isinstance(deleted, dict):
            raise ValueError("Resources.Upserts and Resources.Deleted must be mappings")
        for section, items in [*upserts.items(), *deleted.items()]:
            if section not in SECTION_KINDS or not isinstance(items, list):
                raise ValueError(f"Resources: unknown section {section!r:.60} or not a list")
        for section, items in upserts.items():
            kind = SECTION_KINDS[section]
            if not all(isinstance(e, dict) and entry_id(kind, e) is not None for e in items):
                raise ValueError(f"Resources.Upserts.{section}: every entry must be a mapping "
                                 "with its ID or name")
        for section, items in deleted.items():
            if not all(isinstance(i, str) for i in items):
                raise ValueError(f"Resources.Deleted.{section}: every entry must be an ID")
        return cls(upserts, deleted)

    @property
    def empty(self) -> bool:
        return not any(self.upserts.values()) and not any(self.deleted.values())


def apply(base: dict[str, Any], change: Overlay) -> dict[str, Any]:
    """`base` (a resource document) with `change` on top; neither input is modified. An
    upserted entry keeps the position of the file entry it replaces; new ones go last."""
    result = copy.deepcopy(base)
    for section, kind in SECTION_KINDS.items():
        gone = set(change.deleted.get(section, ()))
        upserts = {entry_id(kind, e): e for e in change.upserts.get(section, ())}
        if not gone and not upserts:
            continue
        entries: list[Any] = []
        for entry in result.get(section) or []:
            rid = entry_id(kind, entry)
            if rid in gone:
                continue
            if rid in upserts:
                entries.append(copy.deepcopy(upserts.pop(rid)))
            else:
                entries.append(entry)
        entries.extend(copy.deepcopy(e) for e in upserts.values())
        result[section] = entries
    return result


def difference(base: dict[str, Any], wanted: dict[str, Any]) -> Overlay:
    """The overlay that turns `base` into `wanted` (`apply(base, difference(base, wanted))`
    has `wanted`'s resources of the six API-managed kinds). Entries of `wanted` are stored
    with their explicit ID key so that a rename keeps the ID."""
    upserts: dict[str, list[dict[str, Any]]] = {}
    deleted: dict[str, list[str]] = {}
    for section, kind in SECTION_KINDS.items():
        before = {entry_id(kind, e): e for e in base.get(section) or []}
        after = {entry_id(kind, e): e for e in wanted.get(section) or []}
        changed = []
        for rid, entry in after.items():
            if rid is not None and before.get(rid) != entry:
                changed.append({**entry, KINDS[kind].id_key: rid})
        removed = [rid for rid in before if rid is not None and rid not in after]
        if changed:
            upserts[section] = changed
        if removed:
            deleted[section] = removed
    return Overlay(upserts, deleted)
