"""A parser of Authentication-Results field values (RFC 8601 §2.2, with RFC 5322 §3.2.2 CFWS).

Reads what a field claims (authserv-id, version, results); decides nothing. One linear pass,
bounded in length and comment depth; never raises for bad input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailmgr.mime.render import quoted_string

MAX_LENGTH = 65_536  # characters of one (folded or unfolded) field value
MAX_DEPTH = 32  # nesting of comments; RFC 5322 sets none, real fields use one or two
_MAX_DIGITS = 9  # an authres-version or method-version (RFC 8601 §2.2: 1*DIGIT)

_WSP = frozenset(" \t\r\n")  # FWS, CRLF included: a folded value unfolds as it is read
# RFC 2045 §5.1 token (non-ASCII allowed, as RFC 6532 does): the authserv-id, reason.
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~\x80-\U0010ffff]+")
_KEYWORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?")  # RFC 5321 Ldh-str
_DIGITS = re.compile(r"[0-9]+")
# A pvalue's unquoted text before any "@": RFC 5322 atext and ".", which also takes the base64
# of header.b that senders leave unquoted although "/" and "=" are tspecials.
_ATEXT = re.compile(r"[!#$%&'*+\-./0-9=?A-Z^_`a-z{|}~\x80-\U0010ffff]+")
_DOMAIN = re.compile(r"[0-9A-Za-z\x80-\U0010ffff][0-9A-Za-z\-.\x80-\U0010ffff]*")


@dataclass(frozen=True)
class Property:
    """One propspec, `ptype.property=pvalue` (e.g. smtp.mailfrom); ptype and property in
    lower case, `value` unquoted."""

    ptype: str
    name: str
    value: str


@dataclass(frozen=True)
class Result:
    """One resinfo: `method[/version]=result [reason=…] props…`; keywords in lower case."""

    method: str
    result: str
    version: int | None = None
    reason: str | None = None
    properties: tuple[Property, ...] = ()


@dataclass(frozen=True)
class AuthenticationResults:
    """A parsed field value. `authserv_id` is unquoted, as written (compare it with
    `same_authserv_id`); `results` is () for `none` (RFC 8601 §2.2 no-result)."""

    authserv_id: str
    version: int | None
    results: tuple[Result, ...]


class _Syntax(Exception):
    """The value does not follow the grammar (or exceeds a bound)."""


class _Scanner:
    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        if len(text) > MAX_LENGTH:
            raise _Syntax("too long")
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def cfws(self) -> None:
        """Skip white space (folding included) and comments, nested and with quoted-pairs."""
        text, end = self.text, len(self.text)
        while self.pos < end:
            char = text[self.pos]
            if char in _WSP:
                self.pos += 1
            elif char == "(":
                self._comment()
            else:
                return

    def _comment(self) -> None:
        text, end = self.text, len(self.text)
        depth = 0
        pos = self.pos
        while pos < end:
            char = text[pos]
            if char == "\\":
                pos += 1  # quoted-pair: the next character is literal, parenthesis or not
                if pos >= end:
                    break
            elif char == "(":
                depth += 1
                if depth > MAX_DEPTH:
                    raise _Syntax("comments nested too deeply")
            elif char == ")":
                depth -= 1
                if depth == 0:
                    self.pos = pos + 1
                    return
            pos += 1
        raise _Syntax("unterminated comment")

    def match(self, pattern: re.Pattern[str]) -> str:
        found = pattern.match(self.text, self.pos)
        if found is None:
            raise _Syntax(f"expected {pattern.pattern!r} at {self.pos}")
        self.pos = found.end()
        return found.group()

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise _Syntax(f"expected {char!r} at {self.pos}")
        self.pos += 1

    def quoted(self) -> str:
        """An RFC 5322 §3.2.4 quoted-string's content; folding inside it is unfolded."""
        self.expect('"')
        text, end = self.text, len(self.text)
        out: list[str] = []
        pos = self.pos
        while pos < end:
            char = text[pos]
            if char == '"':
                self.pos = pos + 1
                return "".join(out)
            if char == "\\":
                pos += 1
                if pos >= end:
                    break
                out.append(text[pos])
            elif char not in "\r\n":
                out.append(char)
            pos += 1
        raise _Syntax("unterminated quoted-string")

    def value(self) -> str:
        """An RFC 2045 value: token / quoted-string."""
        return self.quoted() if self.peek() == '"' else self.match(_TOKEN)

    def number(self) -> int:
        digits = self.match(_DIGITS)
        if len(digits) > _MAX_DIGITS:
            raise _Syntax("version number too long")
        return int(digits)

    def pvalue(self) -> str:
        """RFC 8601 pvalue: [CFWS] ( value / [ [ local-part ] "@" ] domain-name ) [CFWS]."""
        self.cfws()
        if self.peek() == '"':
            local = self.quoted()
            if self.peek() != "@":
                return local
            local = quoted_string(local)
        else:
            found = _ATEXT.match(self.text, self.pos)
            local = found.group() if found else ""
            self.pos += len(local)
            if self.peek() != "@":
                if not local:
                    raise _Syntax(f"expected a pvalue at {self.pos}")
                return local
        self.pos += 1  # "@"
        return f"{local}@{self.match(_DOMAIN)}"


def _head(scanner: _Scanner) -> str:
    """[CFWS] authserv-id, which must then end: at CFWS, ";" or the end of the value."""
    scanner.cfws()
    found = scanner.value()
    if not found or scanner.peek() not in ("", ";", "(", " ", "\t", "\r", "\n"):
        raise _Syntax("no authserv-id")
    return found


def authserv_id(value: str) -> str | None:
    """The authserv-id a field value claims (unquoted, as written), read from its start as
    RFC 8601 §2.2 has it: [CFWS] value, ended by CFWS, ";" or the end. None when there is none,
    when a comment or quoted-string before or in it is unterminated, or when the value is over
    MAX_LENGTH characters or nests comments deeper than MAX_DEPTH. What follows the
    authserv-id is not checked: a field claiming an id claims it even with bad results."""
    try:
        return _head(_Scanner(value))
    except _Syntax:
        return None


def _resinfo(scanner: _Scanner) -> Result:
    """methodspec [CFWS reasonspec] [CFWS 1*propspec], after the ";" and its CFWS."""
    method = scanner.match(_KEYWORD).lower()
    scanner.cfws()
    version = None
    if scanner.peek() == "/":
        scanner.pos += 1
        scanner.cfws()
        version = scanner.number()
        scanner.cfws()
    scanner.expect("=")
    scanner.cfws()
    result = scanner.match(_KEYWORD).lower()
    scanner.cfws()
    reason: str | None = None
    properties: list[Property] = []
    while scanner.peek() not in ("", ";"):
        keyword = scanner.match(_KEYWORD).lower()
        scanner.cfws()
        if keyword == "reason" and reason is None and not properties and scanner.peek() == "=":
            scanner.pos += 1
            scanner.cfws()
            reason = scanner.value()
        else:
            scanner.expect(".")
            scanner.cfws()
            name = scanner.match(_KEYWORD).lower()
            scanner.cfws()
            scanner.expect("=")
            properties.append(Property(keyword, name, scanner.pvalue()))
        scanner.cfws()
    return Result(method, result, version, reason, tuple(properties))


def parse(value: str) -> AuthenticationResults | None:
    """The whole value per RFC 8601 §2.2, or None when it does not follow the grammar (or
    exceeds MAX_LENGTH / MAX_DEPTH). Lenient in two ways seen in real fields: a `;` after the
    last result, and an unquoted pvalue of atext (e.g. base64 with "/" and "=")."""
    try:
        scanner = _Scanner(value)
        server = _head(scanner)
        scanner.cfws()
        version = None
        if scanner.peek().isdigit():
            version = scanner.number()
            scanner.cfws()
        results: list[Result] = []
        scanner.expect(";")
        scanner.cfws()
        keyword = _KEYWORD.match(scanner.text, scanner.pos)
        if keyword is not None and keyword.group().lower() == "none":
            start, scanner.pos = scanner.pos, keyword.end()
            scanner.cfws()
            if scanner.at_end():  # no-result
                return AuthenticationResults(server, version, ())
            scanner.pos = start
        while True:
            results.append(_resinfo(scanner))
            if scanner.at_end():
                break
            scanner.expect(";")
            scanner.cfws()
            if scanner.at_end():
                break  # a trailing ";"
        return AuthenticationResults(server, version, tuple(results))
    except _Syntax:
        return None


def same_authserv_id(claimed: str, ours: str) -> bool:
    """RFC 8601 §2.5: authserv-ids compare case-insensitively; a final "." (a DNS root label)
    is ignored too, so `MX.Example.` claims `mx.example`."""
    return claimed.casefold().removesuffix(".") == ours.casefold().removesuffix(".")
