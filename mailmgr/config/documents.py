"""Reading config documents (YAML or JSON by extension) and address-list import files.

Every read or parse failure becomes a problem (with line and column when known), never an
exception; it does not interpret the content. Reads and parses are bounded (size, aliases,
expanded nodes, nesting) so a hostile or mistyped file fails fast in bounded memory.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from mailmgr.config.fields import Ctx

YAML_SUFFIXES = (".yaml", ".yml")
# A config (or rule-set file) is hand-written: 16 MiB is far beyond any real one.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
# Address-list import files hold up to 100,000 members (AWS's limit) of up to 320 characters.
MAX_MEMBER_FILE_BYTES = 64 * 1024 * 1024
# YAML aliases (`*name`) per document; anchors are for sharing a few blocks, not for thousands.
MAX_ALIASES = 1_000
# Nodes a document expands to once every alias is followed: an alias bomb has few aliases
# but expands exponentially (9 levels x 10 = 10^9). 100,000 inline members fit easily.
MAX_EXPANDED_NODES = 2_000_000
# Nesting of collections (counting through aliases); the deepest real config is ~12.
MAX_DEPTH = 100


class _Refused(yaml.composer.ComposerError):
    """A document over one of the limits above (not a syntax error)."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that reports duplicate mapping keys instead of silently keeping the last, and
    refuses alias bombs, merge-key bombs, recursive aliases and deep nesting while composing,
    before anything is constructed."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        mark: yaml.Mark | None = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(
                    None, None, f"more than {MAX_ALIASES:,} aliases (*name)", mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(
                None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        node: yaml.Node | None = super().compose_document()  # type: ignore[no-untyped-call]
        if node is not None:
            _check_expansion(node)
        return node


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Raise ComposerError when the node graph, with aliases followed, has more than
    MAX_EXPANDED_NODES nodes, nests deeper than MAX_DEPTH or contains a cycle. Iterative and
    memoized per node, so it is linear in the composed (not the expanded) size."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            size[key] = min(1 + sum(size[id(k)] for k in kids), MAX_EXPANDED_NODES + 1)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            active.discard(key)
            if size[key] > MAX_EXPANDED_NODES:
                raise _Refused(
                    None, None, f"expands to more than {MAX_EXPANDED_NODES:,} values through "
                                "aliases (an alias bomb?)", node.start_mark)
            if depth[key] > MAX_DEPTH:
                raise _Refused(
                    None, None, f"nested more than {MAX_DEPTH} levels deep through aliases",
                    node.start_mark)
            continue
        if key in size:
            continue
        if key in active:
            raise _Refused(
                None, None, "an alias refers to the collection that contains it",
                node.start_mark)
        active.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)


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


_BoundedLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def read_text(
    ctx: Ctx, path: Path, where: str, limit: int = MAX_DOCUMENT_BYTES
) -> str | None:
    """Read a UTF-8 file of at most `limit` bytes; a failure (missing, not a regular file,
    too large, unreadable, not UTF-8) is reported at `where` in `ctx` (the referring file)."""
    try:
        # O_NONBLOCK: opening a FIFO must not hang the loader; it is refused below.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        ctx.problem(where, f"file not found: {path}")
        return None
    except OSError as exc:
        ctx.problem(where, f"cannot read {path}: {exc.strerror or exc}")
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            ctx.problem(where, f"cannot read {path}: {what}")
            return None
        if info.st_size > limit:
            ctx.problem(where, f"{path} is {info.st_size:,} bytes; the limit is {limit:,} bytes")
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)  # the file may grow between fstat and read
    except OSError as exc:
        ctx.problem(where, f"cannot read {path}: {exc.strerror or exc}")
        return None
    finally:
        os.close(fd)
    if len(data) > limit:
        ctx.problem(where, f"{path} is more than {limit:,} bytes")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        ctx.problem(where, f"cannot read {path}: not UTF-8 text (byte 0x{data[exc.start]:02x} "
                           f"at offset {exc.start})")
        return None


def _json_depth(data: Any) -> int:
    """Deepest nesting of lists and mappings in parsed JSON (iterative)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                stack.extend((v, level + 1) for v in value)
    return deepest


def parse_document(ctx: Ctx, text: str, suffix: str) -> tuple[bool, Any]:
    """(ok, data). Problems go to `ctx` (the document's own file) at path `$`."""
    if suffix.lower() in YAML_SUFFIXES:
        try:
            return True, yaml.load(text, Loader=_BoundedLoader)
        except _Refused as exc:
            mark = exc.problem_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            ctx.problem("$", f"YAML document refused{where}: {exc.problem}")
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            what = exc.problem or exc.context or "invalid YAML"
            ctx.problem("$", f"YAML syntax error{where}: {what}")
        except yaml.YAMLError as exc:
            ctx.problem("$", f"YAML syntax error: {exc}")
        except (ValueError, OverflowError) as exc:
            # e.g. an integer of more than 4,300 digits (Python's int conversion limit).
            ctx.problem("$", f"YAML value cannot be read: {exc}")
        except RecursionError:
            ctx.problem("$", f"YAML nested more than {MAX_DEPTH} levels deep")
        return False, None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        ctx.problem("$", f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}")
        return False, None
    except (ValueError, OverflowError) as exc:
        ctx.problem("$", f"JSON value cannot be read: {exc}")
        return False, None
    except RecursionError:
        ctx.problem("$", f"JSON nested more than {MAX_DEPTH} levels deep")
        return False, None
    if _json_depth(data) > MAX_DEPTH:
        ctx.problem("$", f"JSON nested more than {MAX_DEPTH} levels deep")
        return False, None
    return True, data


def load_document(ctx: Ctx, path: Path, where: str) -> tuple[bool, Any]:
    """Read and parse `path` (YAML for .yaml/.yml, JSON otherwise)."""
    text = read_text(ctx, path, where)
    if text is None:
        return False, None
    return parse_document(ctx.for_file(path), text, path.suffix)


def address_file_members(ctx: Ctx, path: Path, where: str) -> list[tuple[object, str]]:
    """(member, location) pairs from an AWS import file: CSV with an `address` header, or JSON
    `{"items": [{"address": ...}]}`. Locations are `line N` or `$.items[i].address`; problems
    in the file are reported against it. Files over MAX_MEMBER_FILE_BYTES are refused."""
    text = read_text(ctx, path, where, MAX_MEMBER_FILE_BYTES)
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
