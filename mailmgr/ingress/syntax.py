"""The RFC 5321 §4.1 grammar of SMTP command arguments: HELO/EHLO domains, reverse- and
forward-paths (with RFC 6531 UTF-8), and the MAIL/RCPT parameters of advertised extensions.

Pure functions: each returns the clean value or the `Reply` refusing it; nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import NamedTuple

from mailmgr.ingress import replies
from mailmgr.ingress.replies import Reply

# RFC 5321 §4.5.3.1.1-3, in octets of the UTF-8 form.
LOCAL_PART_LIMIT = 64
DOMAIN_LIMIT = 255
PATH_LIMIT = 256  # including "<", ">" and a source route
LABEL_LIMIT = 63  # RFC 1035 §2.3.4
HELO_LIMIT = 255  # a Domain or address literal (§4.1.1.1, §4.5.3.1.2)

# The fast path: `<dot-atom@ldh-domain>` in ASCII, then the end or SP. Everything it accepts the
# full grammar accepts too (checked by tests/hostile/test_hostile_session_fuzz.py); the length
# limits are checked on the match.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN_PATH = re.compile(
    rf"<([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@({_LABEL}(?:\.{_LABEL})*)>(?: |\Z)"
)
_ATEXT_SET = frozenset(_ATEXT.replace("A-Za-z0-9", "") + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                       "abcdefghijklmnopqrstuvwxyz0123456789")
_HELO_ASCII = re.compile(r"[!-~]{1,255}\Z")
_LDH_LABEL = re.compile(rf"{_LABEL}\Z")
_SNUM = re.compile(r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z")
_STANDARDIZED_TAG = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\Z")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
# esmtp-value (§4.1.2): %d33-60 / %d62-126; RFC 6531 §3.3 adds UTF8-non-ascii (checked apart).
_VALUE = re.compile(r"[!-<>-~]+\Z")
# A whole ASCII parameter list that is well-formed (each parameter after one or more SP).
_ASCII_PARAMS = re.compile(r"(?: +[A-Za-z0-9][A-Za-z0-9-]*(?:=[!-<>-~]+)?)* *\Z")
# xtext (RFC 3461 §4): xchar = %d33-42 / %d44-60 / %d62-126, hexchar = "+" 2 upper HEXDIG.
_XTEXT = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})+\Z")
# Unicode categories refused everywhere: controls (C0 and C1), surrogates, private use,
# unassigned, line/paragraph separators, and format characters (bidi overrides, BOM, zero
# width space) except ZWNJ/ZWJ, which IDNA allows in context (RFC 5892 Appendix A.1/A.2).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cn", "Zl", "Zp", "Cf"})
_JOINERS = frozenset("\u200c\u200d")


class MailCommand(NamedTuple):
    """A MAIL command that passed §4.1.2: `mail_from` is "" for the null reverse-path; `size`
    is the SIZE= octets (RFC 1870) or None. AUTH= (RFC 4954 §5) is checked and then ignored:
    mailmgr never relays it, so the identity is not kept (treated as AUTH=<>).

    A NamedTuple, not a frozen dataclass: it is built once per MAIL command and a frozen
    dataclass costs ~0.9 µs to construct against ~0.2 µs; it is just as immutable."""

    mail_from: str
    smtputf8: bool
    body_8bit: bool
    size: int | None


# ---------------------------------------------------------------- characters


def _unicode_ok(char: str) -> bool:
    """A non-ASCII character RFC 6531 may carry and that cannot break a line or hide text."""
    return char in _JOINERS or unicodedata.category(char) not in _REFUSED_CATEGORIES


# ---------------------------------------------------------------- domains and literals


def _address_literal(text: str) -> bool:
    """`[...]` per §4.1.3: IPv4, `IPv6:` (RFC 4291 forms, no zone) or General-address-literal."""
    if len(text) < 3 or text[0] != "[" or text[-1] != "]":
        return False
    inner = text[1:-1]
    if inner[:5].upper() == "IPV6:":
        value = inner[5:]
        if not value or "%" in value or not value.isascii():
            return False
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return False
        return True
    parts = inner.split(".")
    if len(parts) == 4 and all(_SNUM.match(p) for p in parts):
        return True
    tag, colon, content = inner.partition(":")
    # General-address-literal: Standardized-tag ":" 1*dcontent (%d33-90 / %d94-126).
    return bool(
        colon and content and _STANDARDIZED_TAG.match(tag) and not tag[:1].isdigit()
        and all("!" <= c <= "~" and c not in "[\\]" for c in content)
    )


def _domain(text: str, utf8: bool) -> bool:
    """Domain (sub-domain *("." sub-domain)); U-labels only when `utf8` (RFC 6531 §3.3)."""
    if not text or len(text.encode()) > DOMAIN_LIMIT:
        return False
    for label in text.split("."):
        if _LDH_LABEL.match(label):
            continue
        # A U-label: UTF-8 with at least one non-ASCII character, LDH otherwise.
        if (
            not utf8 or not label or label.isascii() or len(label.encode()) > LABEL_LIMIT
            or label[0] == "-" or label[-1] == "-"
            or not all(c.isalnum() or c == "-" if c < "\x80" else _unicode_ok(c) for c in label)
        ):
            return False
    return True


def helo_domain(arg: str | None) -> str | Reply:
    """The HELO/EHLO argument (§4.1.1.1), or its refusal.

    Lenient on purpose, as Postfix is by default: real clients send bare words, underscores and
    other non-LDH names, so any one word of visible characters (UTF-8 allowed) is kept. Refused:
    an empty value (501 5.5.4), more than one word, any control or line-breaking character,
    more than 255 octets, or a `[` that does not open a valid address literal (501 5.5.2).
    """
    if not arg:
        return replies.HELO_SYNTAX
    if _HELO_ASCII.match(arg) and arg[0] != "[":
        return arg  # the common case: one word of visible ASCII
    if len(arg.encode()) > HELO_LIMIT:
        return replies.BAD_HELO
    for char in arg:
        if char < "!" or char == "\x7f" or (char >= "\x80" and not _unicode_ok(char)):
            return replies.BAD_HELO
    if arg[0] == "[" and not _address_literal(arg):
        return replies.BAD_HELO
    return arg


# ---------------------------------------------------------------- paths


def _local_part(text: str, utf8: bool) -> bool:
    """Dot-string or Quoted-string (§4.1.2), UTF-8 only when `utf8` (RFC 6531 §3.3).

    Empty atoms (`a..b`, `.a`) are accepted: addresses like these exist (some Japanese mobile
    carriers issued them) and carry no control character; Postfix accepts them too.
    """
    if not text or len(text.encode()) > LOCAL_PART_LIMIT:
        return False
    if text[0] == '"':
        if len(text) < 2 or text[-1] != '"':
            return False
        escaped = False
        for char in text[1:-1]:
            if escaped:
                escaped = False  # quoted-pairSMTP: "\" %d32-126
                if not " " <= char <= "~":
                    return False
            elif char == "\\":
                escaped = True
            elif char == '"' or (char < "\x80" and not " " <= char <= "~"):
                return False  # qtextSMTP: %d32-33 / %d35-91 / %d93-126
            elif char >= "\x80" and not (utf8 and _unicode_ok(char)):
                return False
        return not escaped
    for char in text:
        if char == "." or char in _ATEXT_SET:
            continue
        if char < "\x80" or not (utf8 and _unicode_ok(char)):
            return False
    return True


def _mailbox(text: str, utf8: bool) -> bool:
    """Local-part "@" ( Domain / address-literal )."""
    at = text.rfind("@")
    if at < 1:
        return False
    local, domain = text[:at], text[at + 1 :]
    if not _local_part(local, utf8):
        return False
    if domain[:1] == "[":
        return _address_literal(domain)
    return _domain(domain, utf8)


def _path_end(text: str) -> int:
    """The index of the ">" closing the path that starts `text`, skipping quoted strings and
    address literals; -1 when there is none."""
    quoted = escaped = literal = False
    for index in range(1, len(text)):
        char = text[index]
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif literal:
            literal = char != "]"
        elif char == '"':
            quoted = True
        elif char == "[":
            literal = True
        elif char == ">":
            return index
    return -1


def _path(rest: str, utf8: bool) -> tuple[str, str] | None:
    """(mailbox, parameter text) from `<...> params`; `<>` gives ("<>", ...). None: a syntax
    error (missing brackets, trailing garbage, a bad mailbox or an over-long path)."""
    plain = _PLAIN_PATH.match(rest)
    if plain is not None:
        at = plain.end(1)
        end = plain.end(2)
        # ASCII, so characters are octets: local part <= 64, path ("<" .. ">") <= 256.
        if at > LOCAL_PART_LIMIT + 1 or end >= PATH_LIMIT:
            return None
        if end + 1 == len(rest):
            return rest[1:end], ""
        after = rest[end + 1 :]
        if after.lstrip(" ")[:1] == "<":
            return None  # a second path, not parameters
        return rest[1:end], after
    if rest[:1] != "<":
        return None
    if rest[:2] == "<>":
        end = 1
    else:
        end = _path_end(rest)
        if end < 0:
            return None
    after = rest[end + 1 :]
    if after and (after[0] != " " or after.lstrip(" ")[:1] == "<"):
        return None
    inner = rest[1:end]
    if len(rest[: end + 1].encode()) > PATH_LIMIT:
        return None
    if not inner:
        return "<>", after
    if inner[0] == "@":
        # Obsolete source route `@a,@b:mailbox` (§4.1.2, Appendix C): checked, then dropped.
        route, colon, inner = inner.partition(":")
        if not colon or not all(
            hop[:1] == "@" and _domain(hop[1:], utf8) for hop in route.split(",")
        ):
            return None
    if not _mailbox(inner, utf8):
        return None
    return inner, after


# ---------------------------------------------------------------- parameters


def parse_params(text: str) -> dict[str, str | None] | Reply:
    """ESMTP parameters (§4.1.2 esmtp-param, SP-separated) keyed by upper-case keyword.

    Refusals: a malformed keyword or value (controls, "=", empty value) 501 5.5.4; the same
    keyword twice 501 5.5.4 (DUPLICATE_PARAMETER)."""
    params: dict[str, str | None] = {}
    if _ASCII_PARAMS.match(text):  # the common case: only the duplicate check is left
        for token in text.split():
            key, eq, value = token.partition("=")
            key = key.upper()
            if key in params:
                return replies.DUPLICATE_PARAMETER
            params[key] = value if eq else None
        return params
    for token in text.split(" "):
        if not token:
            continue
        key, eq, value = token.partition("=")
        if not _KEYWORD.match(key):
            return replies.BAD_PARAMETER
        if eq and not (
            _VALUE.match(value) or (value and not value.isascii() and _esmtp_utf8_value(value))
        ):
            return replies.BAD_PARAMETER
        key = key.upper()
        if key in params:
            return replies.DUPLICATE_PARAMETER
        params[key] = value if eq else None
    return params


def _esmtp_utf8_value(value: str) -> bool:
    return all(
        ("!" <= c <= "~" and c != "=") if c < "\x80" else _unicode_ok(c) for c in value
    )


def _auth_value(value: str | None) -> bool:
    """AUTH= (RFC 4954 §5): `<>` or xtext whose decoded form has no control character."""
    if value == "<>":
        return True
    if value is None or not _XTEXT.match(value):
        return False
    decoded = re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), value)
    return all(" " < c < "\x7f" for c in decoded)


# ---------------------------------------------------------------- commands


def mail_command(
    arg: str | None, *, extended: bool, auth_offered: bool, max_size: int
) -> MailCommand | Reply:
    """`MAIL FROM:<reverse-path> [SP mail-parameters]` (§4.1.1.2), with whitespace tolerated
    between the colon and "<" (widely sent). Parameters: SIZE, BODY (7BIT/8BITMIME), SMTPUTF8
    on EHLO sessions, AUTH= only when `auth_offered`; DSN's and any other 555 5.5.4.
    A non-ASCII path needs SMTPUTF8 on the same command (RFC 6531 §3.4): 553 5.6.7 otherwise."""
    if arg is None or arg[:5].upper() != "FROM:":
        return replies.MAIL_SYNTAX
    rest = arg[5:].lstrip(" ")
    plain = _PLAIN_PATH.match(rest)
    if plain is not None:
        # The hot path, ASCII `<local@domain>`: only the lengths are left to check.
        end = plain.end(2)
        if plain.end(1) > LOCAL_PART_LIMIT + 1 or end >= PATH_LIMIT:
            return replies.BAD_SENDER
        if plain.end() == len(rest):
            return MailCommand(rest[1:end], False, False, None)
        address, param_text = rest[1:end], rest[end + 1 :]
        if param_text.lstrip(" ")[:1] == "<":
            return replies.BAD_SENDER  # a second path, not parameters
    else:
        path = _path(rest, True)
        if path is None:
            return replies.BAD_SENDER
        address, param_text = path
    if not param_text:
        if address.isascii():
            return MailCommand("" if address == "<>" else address, False, False, None)
        return replies.UTF8_NEEDS_SMTPUTF8
    params = parse_params(param_text)
    if isinstance(params, Reply):
        return params
    if params and not extended:
        return replies.MAIL_SYNTAX  # HELO session: no extension was advertised (RFC 1869)
    body = params.pop("BODY", "7BIT")
    if body is None or body.upper() not in ("7BIT", "8BITMIME"):
        return replies.BAD_BODY
    smtputf8 = "SMTPUTF8" in params
    if params.pop("SMTPUTF8", None) is not None:
        return replies.BAD_SMTPUTF8
    size: int | None = None
    if "SIZE" in params:
        value = params.pop("SIZE")
        if value is None or not (value.isascii() and value.isdigit()) or len(value) > 20:
            return replies.BAD_SIZE
        size = int(value)
        if size > max_size:
            return replies.TOO_BIG
    if "AUTH" in params and auth_offered:
        if not _auth_value(params.pop("AUTH")):
            return replies.BAD_AUTH_PARAMETER
    if params:
        return replies.UNKNOWN_PARAMETER
    if not smtputf8 and not address.isascii():
        return replies.UTF8_NEEDS_SMTPUTF8
    return MailCommand("" if address == "<>" else address, smtputf8, body.upper() == "8BITMIME",
                       size)


def rcpt_command(arg: str | None, *, extended: bool, smtputf8: bool) -> str | Reply:
    """`RCPT TO:<forward-path> [SP rcpt-parameters]` (§4.1.1.3): the recipient, or its refusal.
    `<Postmaster>` (any case) is the one path without a domain. No RCPT parameter is
    advertised, so a well-formed one is 555 5.5.4 (DSN's NOTIFY/ORCPT included)."""
    if arg is None or arg[:3].upper() != "TO:":
        return replies.RCPT_SYNTAX
    rest = arg[3:].lstrip(" ")
    if rest[:12].lower() == "<postmaster>" and rest[12:13] in ("", " "):
        address, param_text = rest[1:11], rest[12:]
    else:
        path = _path(rest, True)
        if path is None or path[0] == "<>":
            return replies.BAD_RECIPIENT
        address, param_text = path
    if not param_text:
        return address if smtputf8 or address.isascii() else replies.UTF8_NEEDS_SMTPUTF8
    params = parse_params(param_text)
    if isinstance(params, Reply):
        return params
    if params:
        return replies.UNKNOWN_PARAMETER if extended else replies.RCPT_SYNTAX
    if not smtputf8 and not address.isascii():
        return replies.UTF8_NEEDS_SMTPUTF8
    return address
