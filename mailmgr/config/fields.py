"""Problem collection and typed readers for mailmgr's own (non-AWS) config keys.

Every reader reports a problem at the value's JSON path and returns None instead of raising;
it never decides what a key means.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailmgr.config.models import ListenAddress
from mailmgr.errors import ConfigProblem

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


# A problem line quotes values; bound it so no value (a PEM blob, a huge list) floods the output.
MAX_SHOWN_CHARS = 120
MAX_MESSAGE_CHARS = 1_000


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def key_path(path: str, key: object) -> str:
    text = key if isinstance(key, str) else bounded_repr(key)
    if _IDENT.fullmatch(text):
        return f"{path}.{text}"
    return f"{path}[{_clip(repr(text), MAX_SHOWN_CHARS)}]"


def bounded_repr(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """`repr(value)` cut to `limit` characters (+ "..."), computed without rendering a huge
    container in full: lists, tuples and mappings are rendered item by item until the limit."""
    if isinstance(value, list | tuple | dict):
        items = value.items() if isinstance(value, dict) else value
        opening, closing = ("{", "}") if isinstance(value, dict) else (
            ("[", "]") if isinstance(value, list) else ("(", ")"))
        parts: list[str] = []
        used = 1
        for item in items:
            text = (f"{bounded_repr(item[0], limit)}: {bounded_repr(item[1], limit)}"
                    if isinstance(value, dict) else bounded_repr(item, limit))
            parts.append(text)
            used += len(text) + 2
            if used > limit:
                break
        return _clip(opening + ", ".join(parts) + closing, limit)
    if isinstance(value, str):
        return repr(_clip(value, limit))
    return _clip(repr(value), limit)


def index_path(path: str, index: int) -> str:
    return f"{path}[{index}]"


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def show(value: object, limit: int = 60) -> str:
    """Quote a value for a message, shortened so huge PEM blobs do not flood the output."""
    text = value if isinstance(value, str) else bounded_repr(value, limit)
    return f"'{_clip(text, limit)}'"


@dataclass
class Sink:
    problems: list[ConfigProblem] = field(default_factory=list)


@dataclass(frozen=True)
class Ctx:
    """Where values come from: one file (as given/resolved) and its folder for relative paths."""

    file: str
    base: Path
    sink: Sink

    def problem(self, path: str, message: str) -> None:
        """Record one problem; path and message are clipped (MAX_MESSAGE_CHARS) as a last
        guard -- callers embed values through `show`/`bounded_repr`, never a bare repr."""
        self.sink.problems.append(ConfigProblem(
            self.file, _clip(path, MAX_MESSAGE_CHARS), _clip(message, MAX_MESSAGE_CHARS)))

    def resolve(self, text: str) -> Path:
        return self.base / Path(text).expanduser()

    def for_file(self, path: Path) -> Ctx:
        return Ctx(str(path), path.parent, self.sink)


def check_keys(ctx: Ctx, value: dict[Any, Any], allowed: Iterable[str], path: str) -> None:
    names = list(allowed)
    for key in value:
        if key not in names:
            ctx.problem(path, f"unknown key '{key}' (allowed: {', '.join(names)})")


def mapping(ctx: Ctx, value: object, path: str, what: str = "a mapping") -> dict[Any, Any] | None:
    if isinstance(value, dict):
        return value
    ctx.problem(path, f"expected {what}, got {type_name(value)}")
    return None


def opt_str(ctx: Ctx, parent: dict[Any, Any], key: str, path: str) -> str | None:
    value = parent.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value:
        return value
    ctx.problem(key_path(path, key), f"expected a non-empty string, got {type_name(value)}")
    return None


def opt_bool(ctx: Ctx, parent: dict[Any, Any], key: str, path: str) -> bool | None:
    value = parent.get(key)
    if value is None or isinstance(value, bool):
        return value
    ctx.problem(key_path(path, key), f"expected true or false, got {type_name(value)}")
    return None


def opt_number(
    ctx: Ctx, parent: dict[Any, Any], key: str, path: str, *, minimum: float = 0.0,
    integer: bool = False, maximum: float | None = None,
) -> float | None:
    value = parent.get(key)
    if value is None:
        return None
    where = key_path(path, key)
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        wanted = "an integer" if integer else "a number"
        ctx.problem(where, f"expected {wanted}, got {type_name(value)}")
        return None
    if value < minimum:
        ctx.problem(where, f"value {value} is less than the minimum {minimum:g}")
        return None
    if maximum is not None and value > maximum:
        ctx.problem(where, f"value {value} is greater than the maximum {maximum:g}")
        return None
    return float(value)


def str_list(ctx: Ctx, parent: dict[Any, Any], key: str, path: str) -> list[tuple[str, str]]:
    """The strings of an optional list with each one's path; bad items are reported."""
    value = parent.get(key)
    if value is None:
        return []
    where = key_path(path, key)
    if not isinstance(value, list):
        ctx.problem(where, f"expected a list, got {type_name(value)}")
        return []
    out: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            out.append((item, index_path(where, i)))
        else:
            ctx.problem(index_path(where, i), f"expected a string, got {type_name(item)}")
    return out


def parse_host_port(text: str, *, default_port: int | None = None) -> ListenAddress:
    """`host:port`, `[v6]:port`, or (with a default port) `host`, `[v6]` or a bare IPv6 address.
    Raises ValueError with the reason."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host:
            raise ValueError(f"'{text}' has an unterminated or empty '[IPv6]' host")
        if not rest and default_port is not None:
            return ListenAddress(host, default_port)
        if not rest.startswith(":"):
            raise ValueError(f"'{text}' needs ':port' after the ']'")
        port_text = rest[1:]
    elif text.count(":") > 1 and default_port is not None:
        return ListenAddress(text, default_port)
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            if default_port is None:
                raise ValueError(f"'{text}' is not host:port")
            host, port_text = text, str(default_port)
        if not host:
            raise ValueError(f"'{text}' has no host")
        if ":" in host:
            raise ValueError(f"'{text}': write IPv6 addresses as [address]:port")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"'{text}' has an invalid port (0-65535)")
    if any(c.isspace() for c in host):
        raise ValueError(f"'{text}' has whitespace in the host")
    return ListenAddress(host, int(port_text))
