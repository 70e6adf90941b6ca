"""Generic validation of a value against a botocore `mailmanager` input shape.

It walks structures, unions, lists, maps and scalars and reports each broken rule with the JSON
path and the shape name; it knows nothing about what a resource means. One extension reaches it:
a `mailmgr:` tag's value is not held to AWS's TagValue pattern (mailmgr.config.extension_tags).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import botocore.session

from mailmgr.config.extension_tags import PREFIX as TAG_PREFIX
from mailmgr.config.fields import (
    Ctx,
    brief,
    index_path,
    key_path,
    non_finite,
    show,
    type_name,
)

# botocore patterns are Java regexes. Python's `re` lacks Unicode property classes, so the
# known ones are translated; any other pattern that Python cannot compile is skipped.
# `\P{C}` (not a control/format/unassigned character) inside `[...\s]` is approximated by
# "no C0/C1 control character other than whitespace".
_TRANSLATIONS: tuple[tuple[str, str], ...] = (
    (r"[\P{C}\s]", r"[^\x00-\x08\x0e-\x1f\x7f-\x9f]"),
    (r"\P{C}", r"[^\x00-\x1f\x7f-\x9f]"),
    (r"\p{L}", r"[^\W\d_]"),
    (r"\p{N}", r"\d"),
    (r"\p{Alnum}", r"[a-zA-Z0-9]"),
    (r"\p{Alpha}", r"[a-zA-Z]"),
    (r"\p{Print}", r"[\x20-\x7e]"),
)


@cache
def compile_pattern(pattern: str) -> re.Pattern[str] | None:
    for java, python in _TRANSLATIONS:
        pattern = pattern.replace(java, python)
    if r"\p{" in pattern or r"\P{" in pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return None


@cache
def service_model() -> Any:
    return botocore.session.get_session().get_service_model("mailmanager")


def shape(name: str) -> Any:
    return service_model().shape_for(name)


def union_members(shape_name: str) -> tuple[str, ...]:
    return tuple(shape(shape_name).members)


def _items(count: int) -> str:
    return "1 item" if count == 1 else f"{count} items"


class Validator:
    """Validates one value; `extra_keys` are mailmgr extension keys allowed (and skipped) at the
    top level only, so that unknown-key messages list them too."""

    def __init__(self, ctx: Ctx, extra_keys: Iterable[str] = ()) -> None:
        self.ctx = ctx
        self.extra_keys = tuple(extra_keys)
        self.count = 0

    def problem(self, path: str, message: str) -> None:
        self.count += 1
        self.ctx.problem(path, message)

    def validate(self, value: object, shape_name: str, path: str) -> bool:
        """True when no problem was found."""
        before = self.count
        self._walk(value, shape(shape_name), path, top=True)
        return self.count == before

    def _walk(self, value: object, sh: Any, path: str, top: bool = False) -> None:
        check: Callable[[object, Any, str], None] = {
            "structure": self._structure,
            "list": self._list,
            "map": self._map,
            "string": self._string,
            "integer": self._number,
            "long": self._number,
            "double": self._number,
            "float": self._number,
            "boolean": self._boolean,
            "timestamp": self._timestamp,
            "blob": self._blob,
        }.get(sh.type_name, self._ignore)
        if top and sh.type_name == "structure":
            self._structure(value, sh, path, self.extra_keys)
        else:
            check(value, sh, path)

    def _ignore(self, value: object, sh: Any, path: str) -> None:
        """Unknown botocore types (documents) are not checked."""

    def _structure(self, value: object, sh: Any, path: str, extra: tuple[str, ...] = ()) -> None:
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {type_name(value)} ({sh.name})")
            return
        members = sh.members
        allowed = [*members, *extra]
        for key in value:
            if key not in members and key not in extra:
                self.problem(path, f"unknown key {brief(key, 60)} (allowed: {', '.join(allowed)})")
        for name in sh.required_members:
            if name not in value:
                self.problem(path, f"missing required key '{name}' ({sh.name})")
        if getattr(sh, "is_tagged_union", False):
            present = [k for k in members if k in value]
            if len(present) != 1:
                found = f" (found {', '.join(present)})" if present else ""
                self.problem(path, f"exactly one of {', '.join(members)} must be set{found}")
        extension_tag = sh.name == "Tag" and str(value.get("Key", "")).startswith(TAG_PREFIX)
        for key, member in members.items():
            if key in value:
                if extension_tag and key == "Value":
                    self._extension_tag_value(value[key], member, key_path(path, key))
                else:
                    self._walk(value[key], member, key_path(path, key))

    def _extension_tag_value(self, value: object, sh: Any, path: str) -> None:
        """A `mailmgr:` tag's value: AWS's TagValue pattern has no comma, space or brackets, but
        these tags carry comma-separated lists and `[IPv6]:port` (interface.md), so only the
        type, the length and printable characters are checked here; the loader checks what the
        value means."""
        if not isinstance(value, str):
            self.problem(path, f"expected a string, got {type_name(value)} ({sh.name})")
            return
        high = sh.metadata.get("max")
        if high is not None and len(value) > high:
            self.problem(path, f"value {show(value)} is longer than {high} characters ({sh.name})")
        elif not value.isprintable():
            self.problem(path, f"value {show(value)} holds control characters ({sh.name})")

    def _list(self, value: object, sh: Any, path: str) -> None:
        if not isinstance(value, list):
            self.problem(path, f"expected a list, got {type_name(value)} ({sh.name})")
            return
        low, high = sh.metadata.get("min"), sh.metadata.get("max")
        if low is not None and len(value) < low:
            self.problem(path, f"at least {_items(low)} required, got {len(value)} ({sh.name})")
        if high is not None and len(value) > high:
            self.problem(path, f"at most {_items(high)} ({sh.name}), got {len(value)}")
        for i, item in enumerate(value):
            self._walk(item, sh.member, index_path(path, i))

    def _map(self, value: object, sh: Any, path: str) -> None:
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {type_name(value)} ({sh.name})")
            return
        for key, item in value.items():
            where = key_path(path, key)
            self._walk(key, sh.key, where)
            self._walk(item, sh.value, where)

    def _string(self, value: object, sh: Any, path: str) -> None:
        if not isinstance(value, str):
            self.problem(path, f"expected a string, got {type_name(value)} ({sh.name})")
            return
        secret = bool(sh.metadata.get("sensitive"))
        shown = "(hidden)" if secret else show(value)
        if sh.enum:
            if value not in sh.enum:
                self.problem(path, f"{shown} is not one of {', '.join(sh.enum)} ({sh.name})")
            return
        low, high = sh.metadata.get("min"), sh.metadata.get("max")
        if low is not None and len(value) < low:
            self.problem(
                path, f"value {shown} is shorter than {low} characters ({sh.name})"
            )
            return
        if high is not None and len(value) > high:
            self.problem(path, f"value {shown} is longer than {high} characters ({sh.name})")
            return
        pattern = sh.metadata.get("pattern")
        compiled = compile_pattern(pattern) if pattern else None
        if compiled is not None and not compiled.fullmatch(value):
            self.problem(path, f"value {shown} does not match pattern {pattern} ({sh.name})")

    def _number(self, value: object, sh: Any, path: str) -> None:
        integral = sh.type_name in ("integer", "long")
        ok = isinstance(value, int) if integral else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            wanted = "an integer" if integral else "a number"
            self.problem(path, f"expected {wanted}, got {type_name(value)} ({sh.name})")
            return
        assert isinstance(value, int | float)
        problem = non_finite(value)
        if problem is not None:
            self.problem(path, f"{problem} ({sh.name})")
            return
        low, high = sh.metadata.get("min"), sh.metadata.get("max")
        if low is not None and value < low:
            self.problem(path, f"value {value} is less than the minimum {low} ({sh.name})")
        if high is not None and value > high:
            self.problem(path, f"value {value} is greater than the maximum {high} ({sh.name})")

    def _boolean(self, value: object, sh: Any, path: str) -> None:
        if not isinstance(value, bool):
            self.problem(path, f"expected true or false, got {type_name(value)} ({sh.name})")

    def _timestamp(self, value: object, sh: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(
            value, str | int | float | dt.datetime | dt.date
        ):
            self.problem(path, f"expected a timestamp, got {type_name(value)} ({sh.name})")

    def _blob(self, value: object, sh: Any, path: str) -> None:
        if not isinstance(value, str | bytes):
            self.problem(path, f"expected a string, got {type_name(value)} ({sh.name})")
