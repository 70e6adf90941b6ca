"""The one header reader: a message's header section per RFC 5322 (§2.2, §3.6, obsolete syntax
of §4.5), bounded and parsed once per message version; and AddHeader insertion on that view.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from mailmgr.mime.render import render_field

# Decisions (every consumer sees exactly these, because they all read through `read`):
# - A line ends at CRLF, a bare LF (LF-only messages come from local tools) or a bare CR. A bare
#   CR must count as a line end because that is what it becomes downstream: the Relay action's
#   wire encoding (RFC 5321 §2.3.8) turns it into CRLF and the email package splits lines on it;
#   were it data here, a client could hide a field (a forged Authentication-Results, a second
#   From) from every consumer that then appears at the next hop.
# - A field is `field-name *(WSP / fold) ":" value` (obs-optional, §4.5.4, extended to a fold
#   before the colon) followed by its continuation lines (lines starting with SP or HTAB, obs-fold).
#   field-name is printable US-ASCII except ":" (§3.6.8); so a NUL or 8-bit byte in a name makes
#   the line a non-field. NUL and 8-bit bytes in a value are data (decoded as UTF-8, replacement).
# - The section ends at the first blank line (`separator`), else at the first line that is neither
#   a field nor a continuation (that line is the first body line; `separator` is False), else at
#   the end of the content. Two kinds of lines are skipped instead, as the email package does, so
#   that they cannot hide the fields after them: a line starting with "From " that is not a field
#   (an mbox separator, or a misplaced one), and a continuation line that has no field to continue
#   (e.g. the first line).
# - Bounds: at most MAX_SECTION_BYTES (1 MiB) of header section, MAX_FIELDS (10,000) fields and
#   MAX_LINE_BYTES (256 KiB) per physical line. Postfix's own header_size_limit is 100 KiB, so real
#   mail never reaches them. Past a bound the reader stops after the last complete field, sets
#   `truncated`, and `end`/`body_start` are that field's end (a field inserted there still lands
#   inside the header section). Consumers that must not be fooled by hidden fields (DMARC) treat a
#   truncated section accordingly.
MAX_SECTION_BYTES = 1024 * 1024
MAX_FIELDS = 10_000
MAX_LINE_BYTES = 256 * 1024
CACHE_ENTRIES = 64  # sections kept for re-reads of the same message version
CACHE_MAX_HEAD = 64 * 1024  # a section whose verified prefix is larger is not cached

# field-name, obs white space (and folds) before the colon, then the value: the rest of the first
# line and every continuation line. Disjoint alternatives: linear time.
_FIELD = re.compile(
    rb"([\x21-\x39\x3b-\x7e]+)(?:[ \t]|(?:\r\n|\r|\n)[ \t])*:[ \t]*"
    rb"([^\r\n]*(?:(?:\r\n|\r|\n)[ \t][^\r\n]*)*)(?:\r\n|\r|\n)?"
)
_BREAKS = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Field:
    """One header field. `name` is as written minus obs white space before the colon; `value` is
    unfolded, leading WSP stripped, without the line ending, UTF-8 decoded with replacement.
    `start`/`end` are byte offsets in the content: the first line's start, and just past the
    last line's line ending (continuation lines included)."""

    name: str
    value: str
    start: int
    end: int
    key: str  # name.lower(), for case-insensitive look-ups


@dataclass(frozen=True)
class HeaderSection:
    """The header section of one message. `end` is where a new field is inserted (just past the
    last field's line ending), `body_start` the first body byte (past the blank line when
    `separator`). `eol` is the line ending the section uses (CRLF unless it is LF-only)."""

    fields: tuple[Field, ...]
    end: int
    body_start: int
    separator: bool
    eol: bytes
    truncated: bool
    _index: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)

    def get_all(self, name: str) -> tuple[str, ...]:
        """Values of every field called `name` (case-insensitive), in order; () if none."""
        return self._index.get(name.lower(), ())

    def first(self, name: str) -> str | None:
        values = self._index.get(name.lower())
        return values[0] if values else None

    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


def _section(fields: list[Field], end: int, body_start: int, separator: bool, eol: bytes,
             truncated: bool) -> HeaderSection:
    index: dict[str, list[str]] = {}
    for f in fields:
        index.setdefault(f.key, []).append(f.value)
    return HeaderSection(tuple(fields), end, body_start, separator, eol, truncated,
                         {k: tuple(v) for k, v in index.items()})


def _skip_line(content: bytes, pos: int, limit: int) -> int:
    found = _BREAKS.search(content, pos, limit)
    return limit if found is None else found.end()


_NAMES: dict[bytes, tuple[str, str]] = {}  # field-name bytes -> (name, lower-case name)


def _name(name_bytes: bytes) -> tuple[str, str]:
    name = name_bytes.decode("ascii")
    if len(_NAMES) >= 4096:  # bounded: hostile mail can make up any number of names
        _NAMES.clear()
    names = _NAMES[name_bytes] = (name, name.lower())
    return names


def _long_line(content: bytes, pos: int, stop: int) -> bool:
    """Whether a physical line in content[pos:stop] is longer than MAX_LINE_BYTES (one pass)."""
    if stop - pos <= MAX_LINE_BYTES:
        return False
    while pos < stop:
        found = _BREAKS.search(content, pos, stop)
        nl, after = (stop, stop) if found is None else found.span()
        if nl - pos > MAX_LINE_BYTES:
            return True
        pos = after
    return False


def _parse(content: bytes, start: int = 0, until: int | None = None,
           max_bytes: int = MAX_SECTION_BYTES) -> tuple[HeaderSection, int]:
    """The section that begins at `start` (within content[start:until]) and how many leading
    bytes of `content` it depends on (-1: all of them)."""
    size = len(content) if until is None else until
    limit = min(size, start + max_bytes)
    fields: list[Field] = []
    pos = start
    separator = truncated = False
    match = _FIELD.match
    count = 0
    while True:
        m = match(content, pos, limit)
        if m is not None:
            stop = m.end()
            if (stop == limit < size  # the field may go on past the bound: not read
                    or count == MAX_FIELDS
                    or (stop - pos > MAX_LINE_BYTES and _long_line(content, pos, stop))):
                truncated = True
                break
            name_bytes, raw = m.group(1, 2)
            if b"\n" in raw or b"\r" in raw:  # unfold: every line break in a value precedes WSP
                raw = _BREAKS.sub(b"", raw).lstrip(b" \t")
            names = _NAMES.get(name_bytes)
            if names is None:
                names = _name(name_bytes)
            fields.append(Field(names[0], raw.decode("utf-8", "replace"), pos, stop, names[1]))
            count += 1
            pos = stop
            continue
        if pos >= limit:
            truncated = limit < size
            break
        first = content[pos]
        if first == 0x0A or first == 0x0D:  # an empty line: CRLF, LF or a bare CR
            separator = True
            break
        # A line starting with WSP here has no field to continue (a field's continuation lines
        # are part of its match): an orphan, skipped like a "From " line.
        if first in (0x20, 0x09) or content.startswith(b"From ", pos):
            stop = _skip_line(content, pos, limit)
            if stop == limit < size or stop - pos > MAX_LINE_BYTES:
                truncated = True
                break
            pos = stop
            continue
        break  # the first line that is neither a field nor a continuation: the body's first
    end = pos
    body_start = pos
    if separator:
        body_start = pos + (2 if content.startswith(b"\r\n", pos) else 1)
    head = content[start:body_start]
    eol = b"\n" if b"\n" in head and b"\r\n" not in head else b"\r\n"
    section = _section(fields, end, body_start, separator, eol, truncated)
    # What the parse looked at: up to the blank line; otherwise (a non-field line may have been
    # scanned past its end, or the content ended) everything read.
    depends = body_start if separator else -1
    return section, depends


_cache: OrderedDict[int, tuple[bytes, bool, HeaderSection]] = OrderedDict()
_lock = threading.Lock()


def read(content: bytes) -> HeaderSection:
    """The header section of `content` (RFC 5322 §2.2/§3.6/§4.5, the module's decisions and
    bounds). Never raises. Re-reading the same message version is a cache hit: entries are keyed
    by the content object and verified against the bytes the parse depended on (at most
    CACHE_MAX_HEAD bytes are kept per entry, never the message)."""
    key = id(content)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            head, whole, section = hit
            if content.startswith(head) and (not whole or len(content) == len(head)):
                _cache.move_to_end(key)
                return section
    section, depends = _parse(content)
    whole = depends < 0
    size = len(content) if whole else depends
    if size <= CACHE_MAX_HEAD:
        entry = (content[:size], whole, section)
        with _lock:
            _cache[key] = entry
            _cache.move_to_end(key)
            while len(_cache) > CACHE_ENTRIES:
                _cache.popitem(last=False)
    return section


def read_at(content: bytes, start: int, stop: int, max_bytes: int = MAX_SECTION_BYTES
            ) -> HeaderSection:
    """The header section of the MIME entity at content[start:stop] (a body part's own header
    lines, RFC 2045 §3), read exactly as `read` reads a message's, with offsets in `content` and
    at most `max_bytes` of section; not cached (each part is read once per walk)."""
    return _parse(content, start, stop, max_bytes)[0]


def header_end(content: bytes) -> int:
    """Where the header section ends: just past its last field's line ending (before the blank
    line when there is one). A new field goes here."""
    return read(content).end


def render(headers: tuple[tuple[str, str], ...], eol: bytes) -> bytes:
    """`Name: value` fields for `headers` through the one renderer (mailmgr.mime.render: folded,
    no control character), each ended by `eol`."""
    return b"".join(render_field(name, value, eol) for name, value in headers)


def with_headers(content: bytes, headers: tuple[tuple[str, str], ...]) -> bytes:
    """The message as actions see it: `headers` inserted at the end of the header section, in
    order, with the section's line ending, BEFORE the body; when the blank line separating the
    body was missing, it is added (so the new fields are headers for everyone downstream)."""
    if not headers:
        return content
    section = read(content)
    end = section.end
    eol = section.eol
    before = b"" if end == 0 or content[end - 1:end] in (b"\n", b"\r") else eol
    after = b"" if section.separator or section.truncated else eol
    return content[:end] + before + render(headers, eol) + after + content[end:]


def with_fields(section: HeaderSection, headers: tuple[tuple[str, str], ...]) -> HeaderSection:
    """`section` as `with_headers` would make it read: the added fields after the others (their
    offsets are relative to the insertion point, `section.end`)."""
    if not headers:
        return section
    added, _ = _parse(render(headers, section.eol) + section.eol)
    moved = [Field(f.name, f.value, f.start + section.end, f.end + section.end, f.key)
             for f in added.fields]
    return _section([*section.fields, *moved], section.end, section.body_start,
                    section.separator, section.eol, section.truncated)
