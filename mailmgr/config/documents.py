"""Reading config documents (YAML or JSON by extension) and address-list import files.

Every read or parse failure becomes a problem (with line and column when known), never an
exception; it does not interpret the content.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import yaml

from mailmgr.config.fields import Ctx

YAML_SUFFIXES = (".yaml", ".yml")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that reports duplicate mapping keys instead of silently keeping the last."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        if isinstance(key, str):
            seen.add(key)
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node))


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def read_text(ctx: Ctx, path: Path, where: str) -> str | None:
    """Read a file; a failure is reported at `where` in `ctx` (the referring file)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        ctx.problem(where, f"file not found: {path}")
    except (OSError, UnicodeDecodeError) as exc:
        ctx.problem(where, f"cannot read {path}: {exc}")
    return None


def parse_document(ctx: Ctx, text: str, suffix: str) -> tuple[bool, Any]:
    """(ok, data). Problems go to `ctx` (the document's own file) at path `$`."""
    if suffix.lower() in YAML_SUFFIXES:
        try:
            return True, yaml.load(text, Loader=_UniqueKeyLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            what = exc.problem or exc.context or "invalid YAML"
            ctx.problem("$", f"YAML syntax error{where}: {what}")
        except yaml.YAMLError as exc:
            ctx.problem("$", f"YAML syntax error: {exc}")
        return False, None
    try:
        return True, json.loads(text)
    except json.JSONDecodeError as exc:
        ctx.problem("$", f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}")
        return False, None


def load_document(ctx: Ctx, path: Path, where: str) -> tuple[bool, Any]:
    """Read and parse `path` (YAML for .yaml/.yml, JSON otherwise)."""
    text = read_text(ctx, path, where)
    if text is None:
        return False, None
    return parse_document(ctx.for_file(path), text, path.suffix)


def address_file_members(ctx: Ctx, path: Path, where: str) -> list[tuple[object, str]]:
    """(member, location) pairs from an AWS import file: CSV with an `address` header, or JSON
    `{"items": [{"address": ...}]}`. Locations are `line N` or `$.items[i].address`; problems
    in the file are reported against it."""
    text = read_text(ctx, path, where)
    if text is None:
        return []
    own = ctx.for_file(path)
    if path.suffix.lower() == ".json":
        ok, data = parse_document(own, text, ".json")
        if not ok:
            return []
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            own.problem("$", 'expected {"items": [{"address": ...}, ...]}')
            return []
        out: list[tuple[object, str]] = []
        for i, item in enumerate(items):
            if isinstance(item, dict) and "address" in item:
                out.append((item["address"], f"$.items[{i}].address"))
            else:
                own.problem(f"$.items[{i}]", 'expected {"address": ...}')
        return out
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip().lower() for c in rows[0]] != ["address"]:
        own.problem("line 1", "expected a CSV header line 'address'")
        return []
    return [
        (row[0] if len(row) == 1 else ",".join(row), f"line {n}")
        for n, row in enumerate(rows[1:], start=2)
        if row and any(cell.strip() for cell in row)
    ]
