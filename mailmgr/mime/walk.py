"""A bounded, linear MIME structure walker over a message's raw bytes (RFC 2045, RFC 2046, RFC
2231): the part tree, the has-attachments rule and the text body, without the email package.

Bounds (constants, per message): at most MAX_PARTS parts (1,000; the top-level message and every
container count) and MAX_DEPTH nesting levels (20; the top-level message is depth 0); a boundary
longer than MAX_BOUNDARY (200 bytes; RFC 2046 allows 70) makes its multipart a leaf; a header
section's fields past MAX_HEADER_BYTES (256 KiB) are not read. Past a bound the walk keeps what
it walked and sets `MimeTree.truncated`. Cost: O(size x depth) <= O(20 x size).
"""

from __future__ import annotations

import base64
import binascii
import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from mailmgr.mime.headers import read_at

MAX_PARTS = 1_000
MAX_DEPTH = 20
MAX_BOUNDARY = 200
MAX_HEADER_BYTES = 256 * 1024
# Deliberate differences from the email package (tests/mime/test_walk.py checks the rest):
# - past MAX_PARTS / MAX_DEPTH / MAX_HEADER_BYTES the rest is not walked (`truncated`), so an
#   attachment after part 1,000 or below depth 20 is not seen;
# - an unknown or non-linear charset (punycode, idna) is read as UTF-8 with replacement; the
#   email package raises LookupError there (and Q Business used to get an empty body);
# - parameters honour RFC 5322 comments, and an RFC 2231 `name*` wins over a plain `name`;
# - part header lines are read by mailmgr.mime.headers (bare CR ends a header line there);
#   boundary lines end at CRLF or LF (a bare CR does not end one); uuencode is not decoded;
# - message/delivery-status is a leaf (the email package splits it into header blocks).
# Codecs that are not linear in their input (punycode is quadratic) or not for bodies.
_SLOW_CODECS = frozenset({"punycode", "idna"})


# --- RFC 2045 5.1 / RFC 2231 parameters ----------------------------------------------------------


@dataclass(frozen=True)
class HeaderValue:
    """A Content-Type or Content-Disposition value: the lower-cased value before the first ';'
    and the parameters (lower-cased names, RFC 2231 continuations and charsets applied)."""

    value: str
    params: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> str | None:
        key = name.lower()
        return next((v for n, v in self.params if n == key), None)


def parse_header_value(text: str) -> HeaderValue:
    """RFC 2045 5.1 `value *(";" parameter)` with quoted-strings, quoted-pairs and comments
    (RFC 5322 3.2.2), plus RFC 2231 `name*=charset'lang'%xx` and `name*0`, `name*1*` ... Never
    raises; one pass over the text."""
    n = len(text)
    i = _skip_cfws(text, 0)
    j = i
    while j < n and text[j] != ";" and text[j] not in " \t(":
        j += 1
    value = text[i:j].lower()
    raw: list[tuple[str, str, bool]] = []  # (name, value, extended)
    i = j
    while i < n:
        semi = text.find(";", i)
        if semi < 0:
            break
        i = _skip_cfws(text, semi + 1)
        j = i
        while j < n and text[j] not in "=;":
            j += 1
        if j >= n or text[j] != "=":
            i = j
            continue
        pname = text[i:j].strip(" \t").lower()
        i = _skip_cfws(text, j + 1)
        if i < n and text[i] == '"':
            pvalue, i = _quoted(text, i)
        else:
            j = i
            while j < n and text[j] not in "; \t(":
                j += 1
            pvalue, i = text[i:j], j
        if pname:
            raw.append((pname.rstrip("*") if pname.endswith("*") else pname, pvalue,
                        pname.endswith("*")))
    return HeaderValue(value, _rfc2231(raw))


def _skip_cfws(text: str, i: int) -> int:
    n, depth = len(text), 0
    while i < n:
        c = text[i]
        if c == "(":
            depth += 1
        elif c == ")" and depth:
            depth -= 1
        elif c == "\\" and depth:
            i += 1
        elif depth == 0 and c not in " \t":
            return i
        i += 1
    return i


def _quoted(text: str, i: int) -> tuple[str, int]:
    """The quoted-string starting at text[i] == '"' (an unclosed one runs to the end)."""
    out: list[str] = []
    i += 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), i


def _rfc2231(raw: list[tuple[str, str, bool]]) -> tuple[tuple[str, str], ...]:
    """Join `name*N[*]` sections in order and decode `charset'lang'%xx` (RFC 2231 3-4); the first
    occurrence of each name wins, and an RFC 2231 form wins over a plain one."""
    sections: dict[str, dict[int, tuple[str, bool]]] = {}
    plain: dict[str, str] = {}
    order: list[str] = []
    for name, value, extended in raw:
        base, star, number = name.partition("*")
        if star and number.isdigit() and len(number) <= 4:
            sections.setdefault(base, {}).setdefault(int(number), (value, extended))
        elif extended and not star:
            sections.setdefault(name, {}).setdefault(0, (value, True))
            base = name
        else:
            plain.setdefault(name, value)
            base = name
        if base not in order:
            order.append(base)
    out: list[tuple[str, str]] = []
    for name in order:
        found = sections.get(name)
        if not found:
            out.append((name, plain[name]))
            continue
        charset = ""
        data = bytearray()
        for k in range(len(found)):  # RFC 2231 3: sections are numbered from 0 without gaps
            if k not in found:
                break
            value, extended = found[k]
            if extended:
                if k == 0 and value.count("'") >= 2:
                    charset, _, value = value.split("'", 2)
                data += unquote_to_bytes(value)
            else:
                data += value.encode("utf-8", "replace")
        out.append((name, _decode(bytes(data), charset or "us-ascii")))
    return tuple(out)


def _decode(data: bytes, charset: str) -> str:
    """`data` in `charset`, bad bytes replaced; an unknown or non-linear codec: UTF-8."""
    try:
        if codecs.lookup(charset).name in _SLOW_CODECS:
            raise LookupError(charset)
        return data.decode(charset, "replace")
    except (LookupError, ValueError):
        return data.decode("utf-8", "replace")


# --- the walk ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One MIME entity. Offsets index the walked content: the header section starts at
    `header_start`, the body is content[body_start:body_end] (the CRLF before a delimiter
    belongs to the delimiter, RFC 2046 5.1.1). `children`: the parts of a multipart, or the one
    embedded message of a message/* part."""

    content_type: HeaderValue
    disposition: HeaderValue | None
    transfer_encoding: str
    content_id: str | None
    header_start: int
    body_start: int
    body_end: int
    depth: int
    children: tuple[Part, ...] = ()

    @property
    def maintype(self) -> str:
        return self.content_type.value.partition("/")[0]

    @property
    def subtype(self) -> str:
        return self.content_type.value.partition("/")[2]

    @property
    def filename(self) -> str | None:
        """Content-Disposition `filename`, else Content-Type `name` (as the email package)."""
        name = self.disposition.param("filename") if self.disposition else None
        if name is None:
            name = self.content_type.param("name")
        return None if name is None else name.strip()

    @property
    def is_attachment(self) -> bool:
        return self.disposition is not None and self.disposition.value == "attachment"


@dataclass(frozen=True)
class MimeTree:
    root: Part
    parts: int  # parts walked, the root included
    truncated: bool  # a bound stopped the walk: `root` holds what was walked


@dataclass
class _Walk:
    content: bytes
    max_parts: int
    max_depth: int
    parts: int = 0
    truncated: bool = False


def walk(content: bytes, *, max_parts: int = MAX_PARTS, max_depth: int = MAX_DEPTH) -> MimeTree:
    """The MIME tree of `content`, walked up to `max_parts` parts and `max_depth` levels. Never
    raises for malformed mail: what cannot be read is a text/plain leaf (RFC 2045 5.2)."""
    state = _Walk(content, max(1, max_parts), max(0, max_depth))
    root = _entity(state, 0, len(content), 0, "text/plain")
    assert root is not None  # the first part is always within the bounds
    return MimeTree(root, state.parts, state.truncated)


def _entity(state: _Walk, start: int, end: int, depth: int, default_type: str) -> Part | None:
    if state.parts >= state.max_parts:
        state.truncated = True
        return None
    state.parts += 1
    # A part's own header lines, read by the one header reader exactly as a message's are.
    headers = read_at(state.content, start, end, MAX_HEADER_BYTES)
    if headers.truncated:
        state.truncated = True
    ctype_text = headers.first("Content-Type")
    ctype = parse_header_value(ctype_text) if ctype_text is not None else None
    if ctype is None:
        ctype = HeaderValue(default_type)
    elif ctype.value.count("/") != 1:  # as the email package: an invalid type is text/plain
        ctype = HeaderValue("text/plain", ctype.params)
    disp_text = headers.first("Content-Disposition")
    cte = (headers.first("Content-Transfer-Encoding") or "").strip().lower()
    content_id = headers.first("Content-ID")
    part = Part(ctype, parse_header_value(disp_text) if disp_text is not None else None, cte,
                content_id.strip() if content_id is not None else None,
                start, headers.body_start, end, depth)
    maintype = part.maintype
    if maintype not in ("multipart", "message") or part.content_type.value == (
        "message/delivery-status"
    ):
        return part
    if depth >= state.max_depth:
        state.truncated = True
        return part
    if maintype == "message":
        child = _entity(state, headers.body_start, end, depth + 1, "text/plain")
        return part if child is None else _with_children(part, (child,))
    boundary = ctype.param("boundary")
    if not boundary or len(boundary) > MAX_BOUNDARY:
        return part  # the email package keeps such a multipart as one opaque part, too
    inner = "message/rfc822" if part.subtype == "digest" else "text/plain"
    children: list[Part] = []
    for pstart, pend in _sections(state.content, boundary.rstrip().encode("utf-8", "replace"),
                                  headers.body_start, end):
        child = _entity(state, pstart, pend, depth + 1, inner)
        if child is None:
            break
        children.append(child)
    return _with_children(part, tuple(children))


def _with_children(part: Part, children: tuple[Part, ...]) -> Part:
    return Part(part.content_type, part.disposition, part.transfer_encoding, part.content_id,
                part.header_start, part.body_start, part.body_end, part.depth, children)


def _sections(content: bytes, boundary: bytes, start: int, end: int
              ) -> Iterator[tuple[int, int]]:
    """(start, end) of each body part between `--boundary` delimiter lines in content[start:end]
    (RFC 2046 5.1.1: a delimiter is a whole line, optionally `--` closed, then LWSP). No
    delimiter: no parts. An unclosed last part runs to `end`. One lazy pass over the range (the
    walk stops reading at its part bound)."""
    delim = b"--" + boundary
    open_at = -1  # where the current part's content starts; -1: still in the preamble
    pos = start
    while pos < end:
        if pos == start and content.startswith(delim, start, end):
            line = start
        else:
            hit = content.find(b"\n" + delim, pos, end)
            if hit < 0:
                break
            line = hit + 1
        after = line + len(delim)
        closing = content.startswith(b"--", after, end)
        p = after + 2 if closing else after
        while p < end and content[p] in b" \t":
            p += 1
        if p < end and not content.startswith(b"\n", p, end) and not content.startswith(
            b"\r\n", p, end
        ):
            pos = line + 1  # `--boundaryX` or text after the delimiter: not a delimiter line
            continue
        if open_at >= 0:
            stop = line
            if stop > open_at and content[stop - 1] == 0x0A:
                stop -= 2 if stop - 2 >= open_at and content[stop - 2] == 0x0D else 1
            yield open_at, stop
        next_line = content.find(b"\n", p, end)
        pos = end if next_line < 0 else next_line + 1
        if closing:
            return
        open_at = pos
    if open_at >= 0:
        yield open_at, end


# --- consumers -----------------------------------------------------------------------------------


def has_attachments(tree: MimeTree) -> bool:
    """Today's rule, on the walked parts: some non-multipart part is `Content-Disposition:
    attachment`, or is non-text and has a file name (inline named images count)."""
    stack = [tree.root]
    while stack:
        part = stack.pop()
        if part.maintype != "multipart":
            if part.is_attachment or (part.maintype != "text" and part.filename):
                return True
        stack.extend(part.children)
    return False


def body_part(tree: MimeTree, preference: tuple[str, ...] = ("plain", "html")) -> Part | None:
    """The best text body as the email package's `get_body(preference)` chooses it: the first
    non-attachment text part of a preferred subtype, searching multiparts depth first but not
    embedded messages, and only the `start` (or first) part of a multipart/related."""
    best: Part | None = None
    best_rank = len(preference)
    stack = [tree.root]
    while stack:
        part = stack.pop()
        if part.is_attachment:
            continue
        if part.maintype == "text":
            rank = preference.index(part.subtype) if part.subtype in preference else best_rank
            if rank < best_rank:
                best, best_rank = part, rank
                if rank == 0:
                    break
            continue
        if part.maintype != "multipart" or not part.children:
            continue
        candidates = part.children
        if part.subtype == "related":
            start = part.content_type.param("start")
            chosen = next((c for c in candidates if start and c.content_id == start), None)
            candidates = (chosen or candidates[0],)
        stack.extend(reversed(candidates))
    return best


def decoded_body(content: bytes, part: Part) -> bytes:
    """The part's body with its Content-Transfer-Encoding undone (RFC 2045 6); unknown
    encodings are returned as they are. Linear."""
    data = content[part.body_start:part.body_end]
    cte = part.transfer_encoding
    if cte == "quoted-printable":
        return binascii.a2b_qp(data)
    if cte == "base64":
        return _b64(b"".join(data.split()))
    return data


def _b64(data: bytes) -> bytes:
    """Lenient base64 as the email package decodes it (missing padding added, stray characters
    skipped); undecodable input is returned unchanged."""
    for candidate, validate in ((data + b"=" * (-len(data) % 4), True), (data, False),
                                (data + b"==", False)):
        try:
            return base64.b64decode(candidate, validate=validate)
        except binascii.Error:
            continue
    return data


def text_body(content: bytes, tree: MimeTree) -> tuple[str, str]:
    """(subtype, text) of the best body (`("plain", "")` when there is none), decoded per
    Content-Transfer-Encoding and charset (default us-ascii, bad bytes replaced)."""
    part = body_part(tree)
    if part is None:
        return "plain", ""
    charset = part.content_type.param("charset") or "us-ascii"
    return part.subtype, _decode(decoded_body(content, part), charset.strip())
