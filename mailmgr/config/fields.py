"""Problem collection and typed readers for mailmgr's own (non-AWS) config keys.

Every reader reports a problem at the value's JSON path and returns None instead of raising;
it never decides what a key means. Every problem is one bounded line, whatever the input.
"""

from __future__ import annotations

import ipaddress
import math
import re
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailmgr.config.models import ListenAddress
from mailmgr.errors import ConfigProblem

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# Bounds of one problem line: a value quoted in a message, a JSON path, the whole message.
# A config value can be huge (a 16 MiB string, an aliased list of a million items); its
# rendering must cost and print a bounded amount, never the value's own size.
VALUE_CHARS = 120
PATH_CHARS = 300
MESSAGE_CHARS = 1000
MAX_PROBLEMS = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxdict = 6
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = VALUE_CHARS


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def brief(value: object, limit: int = VALUE_CHARS) -> str:
    """A repr of `value` of at most `limit` characters, built in bounded time and memory (only
    the first items, levels and characters of the value are looked at)."""
    if isinstance(value, str):
        return repr(clip(value, limit))
    return clip(_REPR.repr(value), limit)


def one_line(text: str, limit: int) -> str:
    """`text` clipped, with control characters and line separators escaped (\\n, \\x07)."""
    text = clip(text, limit)
    if _CONTROL.search(text):
        text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    return clip(text, limit)


def key_path(path: str, key: object) -> str:
    text = str(key) if isinstance(key, str | int) else _REPR.repr(key)
    return f"{path}.{text}" if _IDENT.fullmatch(text) else f"{path}[{brief(text, 60)}]"


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
    text = clip(value, limit) if isinstance(value, str) else brief(value, limit)
    return f"'{text}'"


@dataclass
class Sink:
    """One load's state: the problems found so far (the first MAX_PROBLEMS are kept, the rest
    only counted, so a file that is wrong a million times prints a bounded report) and the
    bytes of files read so far."""

    problems: list[ConfigProblem] = field(default_factory=list)
    dropped: int = 0
    bytes_read: int = 0  # by all documents of one load (documents.MAX_TOTAL_BYTES)

    def add(self, problem: ConfigProblem) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.dropped += 1

    def report(self) -> list[ConfigProblem]:
        """The kept problems, and one line counting the others."""
        if not self.dropped:
            return list(self.problems)
        last = self.problems[-1]
        return [*self.problems, ConfigProblem(
            last.file, "$", f"{self.dropped:,} more problems not shown (only the first "
                            f"{MAX_PROBLEMS:,} are listed)")]


@dataclass(frozen=True)
class Ctx:
    """Where values come from: one file (as given/resolved) and its folder for relative paths."""

    file: str
    base: Path
    sink: Sink

    def problem(self, path: str, message: str) -> None:
        """Record one problem; path and message are clipped to one bounded line (a backstop:
        callers quote values with `brief` or `show`)."""
        self.sink.add(ConfigProblem(
            one_line(self.file, PATH_CHARS), one_line(path, PATH_CHARS),
            one_line(message, MESSAGE_CHARS)))

    def resolve(self, text: str) -> Path:
        return self.base / Path(text).expanduser()

    def for_file(self, path: Path) -> Ctx:
        return Ctx(str(path), path.parent, self.sink)


def check_keys(ctx: Ctx, value: dict[Any, Any], allowed: Iterable[str], path: str) -> None:
    names = list(allowed)
    for key in value:
        if key not in names:
            ctx.problem(path, f"unknown key {brief(key, 60)} (allowed: {', '.join(names)})")


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


def non_finite(value: int | float) -> str | None:
    """Why a parsed number cannot be used, or None: NaN and infinities (`.nan`, `.inf`,
    JSON `NaN` or `1e400`) compare false or unbounded against every limit, and an integer too
    large for a float (400 digits) would raise OverflowError wherever it is converted."""
    try:
        finite = math.isfinite(value)  # converts an int to float
    except OverflowError:
        return f"value {brief(value)} is too large"
    return None if finite else f"expected a finite number, got {value}"


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
    problem = non_finite(value)
    if problem is not None:
        ctx.problem(where, problem)
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
        if ":" not in host:
            raise ValueError(f"'{text}': only an IPv6 address goes in [brackets]")
        if not rest and default_port is not None:
            _check_literal(text, host)
            return ListenAddress(host, default_port)
        if not rest.startswith(":"):
            raise ValueError(f"'{text}' needs ':port' after the ']'")
        port_text = rest[1:]
    elif text.count(":") > 1 and default_port is not None:
        _check_literal(text, text)
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
    _check_literal(text, host)
    return ListenAddress(host, int(port_text))


def _check_literal(text: str, host: str) -> None:
    """A host that can only be an address literal must be a valid one (`999.1.1.1`, `[::g]`):
    refused here rather than when binding."""
    try:
        if ":" in host:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        elif host.replace(".", "").isdigit():
            ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"'{text}' has an invalid IP address") from None
