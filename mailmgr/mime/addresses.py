"""RFC 5322 §3.4 address lists parsed strictly by our own code, so every Python gives the same
answer (never email.utils / email.headerregistry); a malformed list yields no address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from mailmgr.mime import rfc2047

# Accepted: display names (atoms, quoted strings, obs-phrase dots), angle-addr, groups (also in
# From, RFC 6854), quoted local parts, comments (nested) and folding white space anywhere between
# tokens (the §4.4 obs forms: `<ceo@bank.test >`, `john . doe @ x`), domain literals, obs-route
# (`<@relay:user@x>`, the route is dropped), empty list elements (`a@x,,b@y`, obs-addr-list), and
# UTF-8 in atoms (RFC 6532). Anything else makes the WHOLE list malformed: `parse` returns None,
# never a partial guess. Linear time; at most MAX_ADDRESSES mailboxes per list (more: malformed).
MAX_ADDRESSES = 10_000

_TOKEN = re.compile(
    r"(?P<ws>[ \t\r\n]+)"
    r"|(?P<atom>[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\ufffc\ufffe-\U0010ffff]+)"
    r'|(?P<qs>"(?:[^"\\]|\\.)*")'
    r"|(?P<dl>\[(?:[^\[\]\\]|\\.)*\])"
    r"|(?P<sp>[.,:;<>@])"
    r"|(?P<cm>\()",
    re.S,
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
                       r"(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+)*")
_SPECIALS = frozenset('()<>@,:;."[]\\')

# token kinds
_ATOM, _QS, _DL, _SP = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One mailbox. `local_part` is unquoted; `domain` as written (a domain literal keeps its
    brackets); `display_name` is unquoted and RFC 2047-decoded ("" when absent); `group` is the
    name of the group it was listed in, or None."""

    display_name: str
    local_part: str
    domain: str
    group: str | None = None

    @property
    def addr_spec(self) -> str:
        """local-part@domain, the local part quoted when it is not a dot-atom."""
        local = self.local_part
        if not _DOT_ATOM.fullmatch(local):
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{local}@{self.domain}"

    def __str__(self) -> str:
        """`Display Name <addr-spec>`, the name quoted when it holds specials; else addr-spec."""
        if not self.display_name:
            return self.addr_spec
        name = self.display_name
        if not _SPECIALS.isdisjoint(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{self.addr_spec}>"


class _Malformed(Exception):
    pass


def _comment_end(text: str, pos: int) -> int:
    """Index just past the (possibly nested) comment starting at `pos`."""
    depth = 0
    n = len(text)
    while pos < n:
        c = text[pos]
        if c == "\\":
            pos += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return pos + 1
        pos += 1
    raise _Malformed("unclosed comment")


def _tokens(text: str) -> list[tuple[int, str, bool]]:
    """(kind, text, white space or comment before it) for every token; CFWS is dropped."""
    tokens: list[tuple[int, str, bool]] = []
    pos = 0
    n = len(text)
    space = False
    match = _TOKEN.match
    while pos < n:
        m = match(text, pos)
        if m is None:
            raise _Malformed(f"unexpected {text[pos]!r}")
        kind = m.lastgroup
        if kind == "ws":
            space = True
            pos = m.end()
            continue
        if kind == "cm":
            pos = _comment_end(text, pos)
            space = True
            continue
        value = m.group()
        if kind == "atom":
            tokens.append((_ATOM, value, space))
        elif kind == "qs":
            tokens.append((_QS, _QUOTED_PAIR.sub(r"\1", value[1:-1]), space))
        elif kind == "dl":
            tokens.append((_DL, value, space))
        else:
            tokens.append((_SP, value, space))
        space = False
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[int, str, bool]]) -> None:
        self.tokens = tokens
        self.i = 0
        self.found: list[Mailbox] = []

    def peek(self) -> tuple[int, str, bool] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def special(self, char: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == _SP and token[1] == char:
            self.i += 1
            return True
        return False

    def expect(self, char: str) -> None:
        if not self.special(char):
            raise _Malformed(f"expected {char!r}")

    def phrase(self) -> list[tuple[int, str, bool]]:
        """word *(word / "." ) (obs-phrase); may be empty."""
        words: list[tuple[int, str, bool]] = []
        while (token := self.peek()) is not None and (
            token[0] in (_ATOM, _QS) or (words and token[0] == _SP and token[1] == ".")
        ):
            words.append(token)
            self.i += 1
        return words

    def domain(self) -> str:
        token = self.peek()
        if token is not None and token[0] == _DL:
            self.i += 1
            return token[1]
        parts = [self.atom()]
        while self.special("."):
            parts.append(self.atom())
        return ".".join(parts)

    def atom(self) -> str:
        token = self.peek()
        if token is None or token[0] != _ATOM:
            raise _Malformed("expected an atom")
        self.i += 1
        return token[1]

    def add(self, display: str, local: str, domain: str, group: str | None) -> None:
        if len(self.found) >= MAX_ADDRESSES:
            raise _Malformed("too many addresses")
        self.found.append(Mailbox(display, local, domain, group))

    def angle_addr(self, display: str, group: str | None) -> None:
        if self.special("@"):  # obs-route: @domain *("," ["@" domain]) ":"
            self.domain()
            while self.special(","):
                if self.special("@"):
                    self.domain()
            self.expect(":")
        local = _local_part(self.phrase())
        self.expect("@")
        domain = self.domain()
        self.expect(">")
        self.add(display, local, domain, group)

    def mailbox(self, group: str | None) -> None:
        words = self.phrase()
        if self.special("<"):
            self.angle_addr(_display(words), group)
        elif self.special("@"):
            self.add("", _local_part(words), self.domain(), group)
        else:
            raise _Malformed("not a mailbox")

    def address(self) -> None:
        start = self.i
        words = self.phrase()
        if words and self.special(":"):
            name = _display(words)
            token = self.peek()
            if token is not None and not (token[0] == _SP and token[1] == ";"):
                self.element_list(name, ";")
            self.expect(";")
            return
        self.i = start
        self.mailbox(None)

    def element_list(self, group: str | None, stop: str) -> None:
        """Elements separated by ",", empty ones allowed (obs-addr-list / obs-group-list)."""
        while True:
            token = self.peek()
            if token is None or (token[0] == _SP and token[1] == stop):
                return
            if token[0] == _SP and token[1] == ",":
                self.i += 1
                continue
            if group is None:
                self.address()
            else:
                self.mailbox(group)
            token = self.peek()
            if token is None or (token[0] == _SP and token[1] == stop):
                return
            self.expect(",")


def _local_part(words: list[tuple[int, str, bool]]) -> str:
    """word *("." word): words and dots must alternate (obs-local-part allows CFWS around)."""
    if not words or len(words) % 2 == 0:
        raise _Malformed("bad local part")
    for n, (kind, _text, _space) in enumerate(words):
        if (n % 2 == 1) != (kind == _SP):
            raise _Malformed("bad local part")
    return "".join(text for _kind, text, _space in words)


def _display(words: list[tuple[int, str, bool]]) -> str:
    parts: list[str] = []
    for kind, text, space in words:
        if parts and space and kind != _SP:
            parts.append(" ")
        parts.append(text)
    return rfc2047.decode("".join(parts))


def parse(value: str) -> tuple[Mailbox, ...] | None:
    """Every mailbox of an address-list (RFC 5322 §3.4, with the obs forms above), groups
    flattened, in order; () for an empty value; None when the list is malformed."""
    if len(value) <= _CACHED_LENGTH:  # rule facts re-read the same fields after each action
        return _parse_cached(value)
    return _parse(value)


def _parse(value: str) -> tuple[Mailbox, ...] | None:
    try:
        parser = _Parser(_tokens(value))
        parser.element_list(None, "")
        if parser.i != len(parser.tokens):
            return None
    except _Malformed:
        return None
    return tuple(parser.found)


_CACHED_LENGTH = 1024
_parse_cached = lru_cache(maxsize=1024)(_parse)  # bounded: at most 1024 values of 1 KiB


def addr_specs(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The distinct addr-specs of every list in `values`, in order; a malformed list adds none."""
    seen: dict[str, None] = {}
    for value in values:
        for mailbox in parse(value) or ():
            seen.setdefault(mailbox.addr_spec, None)
    return tuple(seen)
