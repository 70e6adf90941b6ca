"""mailmgr's extension settings carried as `mailmgr:` tags (interface.md: boto3 validates requests
against AWS's model, so a resource created through the Mail Manager API cannot carry the extension
keys themselves). Pure: turns an entry's tags into the keys the loader reads; reports nothing.
"""

from __future__ import annotations

from typing import Any

from mailmgr.config.ids import ResourceKind

PREFIX = "mailmgr:"
# The tags an ingress point takes (names without the prefix); apply_tags says what each sets.
_INGRESS_TAGS = ("Listen", "TlsWrappedListen", "CertificateFile", "PrivateKeyFile",
                 "ProxyTrustedSources")
TAG_NAMES: dict[ResourceKind, tuple[str, ...]] = {ResourceKind.INGRESS_POINT: _INGRESS_TAGS}


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def extension_tags(entry: dict[str, Any]) -> dict[str, str]:
    """The entry's `mailmgr:` tags as {name without the prefix: value}; malformed tags (not
    {Key, Value} strings) are skipped here, the schema walker reports them."""
    tags = entry.get("Tags")
    found: dict[str, str] = {}
    if not isinstance(tags, list):
        return found
    for tag in tags:
        if isinstance(tag, dict):
            key, value = tag.get("Key"), tag.get("Value")
            if isinstance(key, str) and key.startswith(PREFIX) and isinstance(value, str):
                found[key[len(PREFIX):]] = value
    return found


def unknown_tags(kind: ResourceKind, entry: dict[str, Any]) -> list[str]:
    """`mailmgr:` tag names that mean nothing on this kind of resource."""
    known = TAG_NAMES.get(kind, ())
    return [PREFIX + name for name in extension_tags(entry) if name not in known]


def apply_tags(kind: ResourceKind, entry: dict[str, Any]) -> dict[str, Any]:
    """`entry` with the extension keys its `mailmgr:` tags set, for keys the entry does not set
    itself (an explicit key wins over a tag). `entry` is not modified.

    Ingress points: `mailmgr:Listen` / `mailmgr:TlsWrappedListen` (comma-separated host:port)
    -> `Listen` / `TlsWrappedListen`; `mailmgr:CertificateFile` + `mailmgr:PrivateKeyFile` ->
    `TlsCertificate`; `mailmgr:ProxyTrustedSources` (comma-separated CIDRs) ->
    `ProxyProtocol.TrustedSources`."""
    if kind is not ResourceKind.INGRESS_POINT:
        return entry
    tags = extension_tags(entry)
    if not tags:
        return entry
    out = dict(entry)
    for key in ("Listen", "TlsWrappedListen"):
        if key in tags and key not in out:
            out[key] = _split(tags[key])
    if "TlsCertificate" not in out and ("CertificateFile" in tags or "PrivateKeyFile" in tags):
        out["TlsCertificate"] = {
            k: tags[k] for k in ("CertificateFile", "PrivateKeyFile") if k in tags}
    if "ProxyTrustedSources" in tags and "ProxyProtocol" not in out:
        out["ProxyProtocol"] = {"TrustedSources": _split(tags["ProxyTrustedSources"])}
    return out
