"""Reading config documents (YAML or JSON by extension) and address-list import files.

Every read or parse failure, and every document beyond the size, node and depth bounds below,
becomes one problem (with line and column when known), never an exception or unbounded work.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from mailmgr.config.fields import Ctx, index_path, key_path

YAML_SUFFIXES = (".yaml", ".yml")
MIB = 1024 * 1024
# A large real config (100,000 inline address-list members) is a few MiB.
MAX_DOCUMENT_BYTES = 16 * MIB
# An AWS import file of 100,000 members (the comment in build_address_list) of up to 320
# characters each, in the JSON form, is about 35 MiB.
MAX_MEMBER_FILE_BYTES = 64 * MIB
# Every document and address-list file one load reads, together: per-file limits alone let
# a config name the same 64 MiB member file in a thousand address lists (~18 bytes of memory
# per byte of CSV: a 60 MiB file is ~1.1 GB, ~17 s). Room for the largest config plus the
# largest member file and then some.
MAX_TOTAL_BYTES = 128 * MIB
# Nodes of a YAML document counted with every alias expanded, as every later walk (validation,
# repr) sees it: an alias bomb (9 levels of 10 aliases = 10^9 nodes) is refused while
# composing, after at most this much work. Composed nodes cost ~0.8 KB and ~30 us each
# (500,000: ~400 MB, ~15 s on one core), so this also bounds a flat 16 MiB document.
MAX_NODES = 500_000
# The deepest real path (a rule condition's address list) is about 10 levels.
MAX_DEPTH = 64


# libyaml's scanner and parser, when PyYAML was built with it (its wheels are).
_CParser: Any = getattr(importlib.import_module("yaml.cyaml"), "CParser", None) if (
    yaml.__with_libyaml__) else None


class LimitExceeded(yaml.composer.ComposerError):
    """A document over MAX_NODES or MAX_DEPTH, or with a recursive alias."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that reports duplicate mapping keys instead of silently keeping the last,
    counts nodes with aliases expanded (MAX_NODES), bounds nesting (MAX_DEPTH), refuses
    recursive aliases, and turns value errors of scalars (a 5,000-digit integer, a 13th month)
    into located errors."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)  # the Python reader still refuses non-printable characters
        # Events come from libyaml when PyYAML has it: scanning and parsing in C make a large
        # document ~5x faster (a 499,999-node list: 12.7 s -> 2.4 s); composing (the bounds
        # below) and constructing stay in Python.
        self._events: Any = _CParser(stream) if _CParser is not None else None
        self._nodes = 0
        self._depth = 0
        self._weights: dict[str, int] = {}  # anchor -> nodes of its value, aliases expanded

    def check_event(self, *choices: Any) -> bool:
        if self._events is None:
            return super().check_event(*choices)  # type: ignore[no-untyped-call,no-any-return]
        return self._events.check_event(*choices)  # type: ignore[no-any-return]

    def peek_event(self) -> Any:
        if self._events is None:
            return super().peek_event()  # type: ignore[no-untyped-call]
        return self._events.peek_event()

    def get_event(self) -> Any:
        if self._events is None:
            return super().get_event()  # type: ignore[no-untyped-call]
        return self._events.get_event()

    def _spend(self, count: int, mark: Any, what: str) -> None:
        self._nodes += count
        if self._nodes > MAX_NODES:
            raise LimitExceeded(None, None, f"{what} more than {MAX_NODES:,} nodes", mark)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            if event.anchor in self.anchors:
                weight = self._weights.get(event.anchor)
                if weight is None:
                    raise LimitExceeded(None, None, f"alias *{event.anchor} refers to a node "
                                        "that contains it (recursive)", event.start_mark)
                self._spend(weight, event.start_mark,
                            "aliases expand the document to")
            return super().compose_node(parent, index)
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if self._depth >= MAX_DEPTH:
            raise LimitExceeded(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                event.start_mark)
        anchor, before = event.anchor, self._nodes
        self._depth += 1
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._spend(1, event.start_mark, "the document has")
        if anchor is not None:
            self._weights[anchor] = self._nodes - before
        return node

    def compose_document(self) -> Any:
        node = super().compose_document()
        self._weights = {}
        return node

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"invalid {node.tag.rsplit(':', 1)[-1]} value: {exc}",
                node.start_mark) from None


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """Duplicate keys are refused among the mapping's own keys; merged keys (`<<: *defaults`,
    YAML 1.1 merge) may be overridden by them, as the merge key type specifies."""
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        if isinstance(key, list | dict | set):
            raise yaml.constructor.ConstructorError(
                None, None, "a list or mapping cannot be a key", key_node.start_mark)
        if isinstance(key, str) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        if isinstance(key, str):
            seen.add(key)
    loader.flatten_mapping(node)
    try:
        return dict(loader.construct_pairs(node))
    except TypeError:  # `? [a, b] : 1` -- a list or mapping as a key (also via `<<`)
        raise yaml.constructor.ConstructorError(
            None, None, "a list or mapping cannot be a key", node.start_mark) from None


_BoundedLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


class UnreadableFile(Exception):
    """A file that exists but cannot be used; the message is the reason, without the path."""


def read_limited(path: Path, limit: int) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them. The size is checked
    before reading and never more than `limit` + 1 bytes are read. Raises FileNotFoundError,
    or UnreadableFile (a directory, FIFO or device, permission denied, larger than `limit`)."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise UnreadableFile("it is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block, /dev/zero never ends
            raise UnreadableFile("not a regular file")
        if info.st_size > limit:
            raise UnreadableFile(_too_large(info.st_size, limit))
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnreadableFile(exc.strerror or type(exc).__name__) from None
    except ValueError:  # the OS cannot even name it
        raise UnreadableFile("the path contains a NUL character") from None
    if len(data) > limit:  # it grew since stat()
        raise UnreadableFile(_too_large(len(data), limit))
    return data


def _too_large(size: int, limit: int) -> str:
    return f"{size:,} bytes is more than the limit of {limit // MIB} MiB for this file"


def _over_budget() -> str:
    return (f"the files this config reads (config, rule-set and address-list files) total "
            f"more than {MAX_TOTAL_BYTES // MIB} MiB")


def read_text(
    ctx: Ctx, path: Path, where: str, limit: int = MAX_DOCUMENT_BYTES
) -> str | None:
    """Read a UTF-8 file of at most `limit` bytes (see read_limited); a failure is reported
    at `where` in `ctx` (the referring file)."""
    if ctx.sink.bytes_read >= MAX_TOTAL_BYTES:
        ctx.problem(where, f"cannot read {path}: {_over_budget()}")
        return None
    try:
        data = read_limited(path, limit)
    except FileNotFoundError:
        ctx.problem(where, f"file not found: {path}")
        return None
    except UnreadableFile as exc:
        ctx.problem(where, f"cannot read {path}: {exc}")
        return None
    ctx.sink.bytes_read += len(data)
    if ctx.sink.bytes_read > MAX_TOTAL_BYTES:
        ctx.problem(where, f"cannot read {path}: {_over_budget()}")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        ctx.problem(where, f"cannot read {path}: not UTF-8 text (byte "
                           f"0x{data[exc.start]:02x} at offset {exc.start})")
        return None


def _json_depth_exceeds(data: Any, limit: int) -> bool:
    """True when `data` nests lists/mappings more than `limit` deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        if depth > limit:
            return True
        stack.extend((item, depth + 1) for item in value if isinstance(item, dict | list))
    return False


# A `\ud800`-`\udfff` escape (JSON `\uXXXX`, YAML `\uXXXX` / `\UXXXXXXXX`): valid UTF-8 text
# holds no surrogates, so only an escape can make one. Paired escapes decode to one character.
_SURROGATE_ESCAPE = re.compile(r"\\(?:u|U0000)[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate_at(data: Any) -> str | None:
    """The JSON path of the first string (value or key) holding a lone surrogate, or None.
    Iterative; only called when the text has a surrogate escape."""
    stack: list[tuple[Any, str]] = [(data, "$")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and _SURROGATE.search(key):
                    return path
                stack.append((item, key_path(path, key)))
        elif isinstance(value, list):
            stack.extend((item, index_path(path, i)) for i, item in enumerate(value))
    return None


def parse_document(ctx: Ctx, text: str, suffix: str) -> tuple[bool, Any]:
    """(ok, data). Problems go to `ctx` (the document's own file) at path `$`, or at the
    string's path for a lone surrogate escape (it cannot be written to a log, a file or a
    hash, and would fail far from here)."""
    ok, data = _parse(ctx, text, suffix)
    if ok and _SURROGATE_ESCAPE.search(text):
        where = _surrogate_at(data)
        if where is not None:
            ctx.problem(where, "a string holds an escaped UTF-16 surrogate (\\ud800-\\udfff) "
                               "that is not part of a pair: it is not a character")
            return False, None
    return ok, data


def _parse(ctx: Ctx, text: str, suffix: str) -> tuple[bool, Any]:
    if suffix.lower() in YAML_SUFFIXES:
        try:
            return True, yaml.load(text, Loader=_BoundedLoader)
        except LimitExceeded as exc:
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
        except RecursionError:  # pragma: no cover - MAX_DEPTH stops nesting long before
            ctx.problem("$", f"YAML document refused: nested more than {MAX_DEPTH} levels deep")
        return False, None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        ctx.problem("$", f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}")
        return False, None
    except RecursionError:
        ctx.problem("$", f"JSON document refused: nested more than {MAX_DEPTH} levels deep")
        return False, None
    except ValueError as exc:  # a number of more than 4,300 digits
        ctx.problem("$", f"JSON value refused: {exc}")
        return False, None
    if _json_depth_exceeds(data, MAX_DEPTH):
        ctx.problem("$", f"JSON document refused: nested more than {MAX_DEPTH} levels deep")
        return False, None
    return True, data


def load_document(ctx: Ctx, path: Path, where: str) -> tuple[bool, Any]:
    """Read and parse `path` (YAML for .yaml/.yml, JSON otherwise)."""
    text = read_text(ctx, path, where)
    if text is None:
        return False, None
    return parse_document(ctx.for_file(path), text, path.suffix)


def address_file_members(ctx: Ctx, path: Path, where: str) -> Iterator[tuple[object, str]]:
    """(member, location) pairs from an AWS import file of at most MAX_MEMBER_FILE_BYTES: CSV
    with an `address` header, or JSON `{"items": [{"address": ...}]}`. Locations are `line N`
    or `$.items[i].address`; problems in the file are reported against it. Lazy: a CSV of
    millions of rows is never held as rows and location strings all at once (a 60 MiB file
    peaked at 1.1 GB that way)."""
    text = read_text(ctx, path, where, MAX_MEMBER_FILE_BYTES)
    if text is None:
        return
    own = ctx.for_file(path)
    if path.suffix.lower() == ".json":
        ok, data = parse_document(own, text, ".json")
        if not ok:
            return
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            own.problem("$", 'expected {"items": [{"address": ...}, ...]}')
            return
        for i, item in enumerate(items):
            if isinstance(item, dict) and "address" in item:
                yield item["address"], f"$.items[{i}].address"
            else:
                own.problem(f"$.items[{i}]", 'expected {"address": ...}')
        return
    reader = csv.reader(io.StringIO(text))
    del text  # the StringIO holds its own copy
    try:
        header = next(reader, None)
        if header is None or [c.strip().lower() for c in header] != ["address"]:
            own.problem("line 1", "expected a CSV header line 'address'")
            return
        for row in reader:
            if row and any(cell.strip() for cell in row):
                yield (row[0] if len(row) == 1 else ",".join(row)), f"line {reader.line_num}"
    except csv.Error as exc:  # a field over csv's 128 KiB limit
        own.problem(f"line {reader.line_num}", f"CSV error: {exc}")
