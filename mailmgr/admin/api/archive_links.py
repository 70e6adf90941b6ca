"""GetArchiveMessage's `MessageDownloadLink`: a pre-signed URL on the admin listener,
`GET /api/archive-messages/<token>`, answering the archived RFC 5322 bytes (message/rfc822).

The token names the archive and message and an expiry, signed with HMAC-SHA256 under a random
key of this process (so links die with the process, like the jobs); it is the only credential
such a URL carries (the admin token middleware skips `/api/`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mailmgr import logs
from mailmgr.archive.local import ArchiveClosedError
from mailmgr.errors import ActionError

if TYPE_CHECKING:
    from mailmgr.admin.api.service import ApiService

LINK_SECONDS = 15 * 60  # how long a download link works
ROUTE = "/api/archive-messages/{token}"
_KEY_NAME = "ArchiveLinkKey"


@dataclass(frozen=True)
class LinkTarget:
    """What a valid token points at."""

    archive_id: str
    archived_message_id: str
    expires: int  # epoch seconds


class LinkError(Exception):
    """A token that is forged, malformed or expired (the message says which)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, target: LinkTarget) -> str:
    """`<payload>.<signature>`, both base64url: URL-safe as a path segment."""
    payload = json.dumps({"a": target.archive_id, "m": target.archived_message_id,
                          "e": target.expires}, separators=(",", ":")).encode()
    mac = hmac.new(key, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def verify(key: bytes, token: str, now: float) -> LinkTarget:
    """The target of a token signed with `key`, still valid at `now` (epoch seconds). Raises
    LinkError."""
    payload_text, _, mac_text = token.partition(".")
    try:
        payload, mac = _unb64(payload_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise LinkError("the download link is malformed") from None
    if not hmac.compare_digest(hmac.new(key, payload, hashlib.sha256).digest(), mac):
        raise LinkError("the download link's signature does not match")
    data = json.loads(payload)
    target = LinkTarget(str(data["a"]), str(data["m"]), int(data["e"]))
    if now >= target.expires:
        raise LinkError("the download link has expired; call GetArchiveMessage for a new one")
    return target


def link_key(service: ApiService) -> bytes:
    """This process's signing key, made on first use."""
    key = service.extra.get(_KEY_NAME)
    if not isinstance(key, bytes):
        key = service.extra[_KEY_NAME] = secrets.token_bytes(32)
    return key


def download_link(service: ApiService, archive_id: str, archived_message_id: str,
                  now: float | None = None) -> str:
    """A URL on the admin listener (as the client reached it) valid for LINK_SECONDS."""
    expires = int((time.time() if now is None else now) + LINK_SECONDS)
    token = sign(link_key(service), LinkTarget(archive_id, archived_message_id, expires))
    return f"{service.base_url}{ROUTE.replace('{token}', token)}"


def register(router: Any, service: ApiService) -> None:
    async def download(request: web.Request) -> web.Response:
        if service.delegate is not None:  # the link was made where the archives are
            return await service.delegate(request, b"")
        try:
            target = verify(link_key(service), request.match_info["token"], time.time())
        except LinkError as exc:
            return web.Response(status=403, text=f"AccessDenied: {exc}\n")
        archive = service.archives().get(target.archive_id)
        content = None
        try:
            if archive is not None:
                row = await archive.row(target.archived_message_id)
                content = None if row is None else await archive.store.read(row.path)
        except (ArchiveClosedError, ActionError, OSError) as exc:
            logs.warning("api.archive_download_failed", archive_id=target.archive_id,
                         error=f"{type(exc).__name__}: {exc}")
            return web.Response(status=503, text="the archived message cannot be read now; "
                                "the server log has the details\n")
        if content is None:
            return web.Response(status=404, text="NoSuchKey: the archived message is gone\n")
        name = f"{target.archived_message_id}.eml"
        return web.Response(body=content, content_type="message/rfc822", headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "private, no-store"})

    router.add_get(ROUTE, download)
