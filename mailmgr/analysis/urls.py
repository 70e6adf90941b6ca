"""The domains a DNSBL domain list is asked about: name normalisation (IDNA A-labels, no address
literals), the HELO, envelope-sender and From domains, and http(s) URL hosts in text parts.

Bounds, per message: MAX_SCAN_BYTES (256 KiB) of text-part bodies scanned (counted before the
transfer encoding is undone), the MIME walk over at most the header section plus MAX_WALK_BYTES
(1 MiB) of body, MAX_FROM_DOMAINS From domains, and the caller's limit of distinct URL domains.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import unquote

from mailmgr.mime.addresses import addr_specs
from mailmgr.mime.headers import read
from mailmgr.mime.walk import Part, decoded_body, walk
from mailmgr.verdicts.dmarc import organizational_domain

MAX_SCAN_BYTES = 256 * 1024
MAX_WALK_BYTES = 1024 * 1024
MAX_FROM_DOMAINS = 10  # DMARC evaluates at most 5; more From domains is already abuse
MAX_NAME = 253  # RFC 1035 2.3.4, without the root's trailing dot

# An LDH label; "_" too, as resolvers answer for such names and spam uses them.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# The authority of an http(s) URL: up to the path, query, fragment, white space or a character
# that ends a URL in text and HTML. One character class, so the scan is linear.
_URL = re.compile(r"https?://([^\s/?#<>\"'\\`{}|^]+)", re.IGNORECASE)
_TRAILING = ".,;:!?)]}*'"  # sentence punctuation after a bare host ("see http://a.test.")
_SLOW_CODECS = frozenset({"punycode", "idna"})  # not linear in their input (mime/walk.py)


def normalise_domain(text: str) -> str | None:
    """`text` as a DNS name to query: lower case, no trailing dot, IDNA A-labels, at least two
    labels of at most 63 characters, at most 253 in all. None for an address (literal or bare),
    an invalid or a single-label name."""
    name = text.strip().rstrip(".").lower()
    if not name or len(name) > MAX_NAME or name.startswith("["):
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii").lower()
        except (UnicodeError, ValueError):
            return None
        if len(name) > MAX_NAME:
            return None
    labels = name.split(".")
    if len(labels) < 2 or labels[-1].isdigit():
        return None  # a single label, or an address written without brackets
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return name


def with_organizational(domain: str) -> tuple[str, ...]:
    """The domain and, when it differs, its organizational (registered) domain by the public
    suffix list (the DMARC helper's, offline): lists often hold the registered domain only."""
    org = organizational_domain(domain)
    if org != domain and normalise_domain(org) == org:
        return domain, org
    return (domain,)


def helo_domain(helo: str) -> str | None:
    """The HELO/EHLO argument as a domain; None for an address literal or an invalid name."""
    return normalise_domain(helo)


def address_domain(address: str) -> str | None:
    """The domain of an addr-spec (the envelope sender: "" for `<>`); None without one."""
    if "@" not in address:
        return None
    return normalise_domain(address.rpartition("@")[2])


def from_domains(content: bytes) -> tuple[str, ...]:
    """The distinct domains of the From field addresses (the one header reader's strict
    address lists, as rule facts read them; a malformed list adds none), at most
    MAX_FROM_DOMAINS, in order."""
    found: dict[str, None] = {}
    for address in addr_specs(read(content).get_all("From")):
        domain = address_domain(address)
        if domain is not None:
            found.setdefault(domain, None)
            if len(found) >= MAX_FROM_DOMAINS:
                break
    return tuple(found)


def url_host(authority: str) -> str | None:
    """The host of a URL authority (userinfo and port removed, %-escapes undone) as a domain."""
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return None  # an IPv6 literal
    host = unquote(host.partition(":")[0]).rstrip(_TRAILING)
    return normalise_domain(host)


def body_domains(content: bytes, limit: int, max_bytes: int = MAX_SCAN_BYTES
                 ) -> tuple[str, ...]:
    """Distinct domains of http(s) URLs in the text parts (text/*, any subtype, embedded
    messages included), in order of appearance, at most `limit`; each host counts with its
    organizational domain. Transfer encodings are undone (quoted-printable, base64)."""
    if limit <= 0:
        return ()
    head = read(content).body_start
    tree = walk(content[:head + MAX_WALK_BYTES] if len(content) > head + MAX_WALK_BYTES
                else content)
    found: dict[str, None] = {}
    seen: set[str] = set()  # authorities already looked at: spam repeats one link many times
    left = max_bytes
    for part in _text_parts(tree.root):
        if left <= 0:
            break
        end = min(part.body_end, part.body_start + left)
        left -= end - part.body_start
        for match in _URL.finditer(_text(decoded_body(content, replace(part, body_end=end)),
                                         part.content_type.param("charset") or "utf-8")):
            authority = match.group(1)
            if authority in seen:
                continue
            seen.add(authority)
            host = url_host(authority)
            if host is None:
                continue
            for name in with_organizational(host):
                found.setdefault(name, None)
                if len(found) >= limit:
                    return tuple(found)
    return tuple(found)


def _text_parts(root: Part) -> Iterator[Part]:
    """The text/* leaves, depth first in document order."""
    stack = [root]
    while stack:
        part = stack.pop()
        if part.children:
            stack.extend(reversed(part.children))
        elif part.maintype == "text":
            yield part


def _text(data: bytes, charset: str) -> str:
    """`data` in `charset` (bad bytes replaced); an unknown or non-linear codec: UTF-8."""
    try:
        if codecs.lookup(charset.strip()).name in _SLOW_CODECS:
            raise LookupError(charset)
        return data.decode(charset.strip(), "replace")
    except (LookupError, ValueError):
        return data.decode("utf-8", "replace")
