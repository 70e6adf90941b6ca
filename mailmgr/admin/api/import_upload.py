"""The pre-signed upload URL of address-list import jobs, served by the admin listener:
`PUT /api/address-list-import/{JobId}?Expires=<epoch s>&Signature=<HMAC>` (as a client uploads to
S3's pre-signed URL: `curl -T file.csv "$URL"`), streamed to a file under DataDirectory; and
reading that file into members (the config loader's CSV/JSON reader)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from mailmgr import logs
from mailmgr.admin.api.member_state import MAX_MEMBERS, member_problem
from mailmgr.config.documents import MAX_MEMBER_FILE_BYTES, address_file_members
from mailmgr.config.fields import Ctx, Sink

ROUTE = "/api/address-list-import/{job_id}"
UPLOAD_DIRECTORY = "api-imports"  # under DataDirectory
URL_SECONDS = 3600  # a pre-signed URL's lifetime (Get/List hand out a fresh one)
MAX_UPLOAD_BYTES = MAX_MEMBER_FILE_BYTES  # as the config loader's address-list files (64 MiB)
# Uploaded files waiting to be imported, together: a client cannot fill the disk by creating
# many jobs and uploading to each without starting them.
MAX_PENDING_BYTES = 4 * MAX_UPLOAD_BYTES
# An upload that sends nothing for this long is abandoned (408, connection closed): a stalled
# client must not hold a connection, a temporary file and the job's upload slot for ever.
IDLE_SECONDS = 10.0
_CHUNK = 1024 * 1024  # written to disk in the executor per MiB, not per network read
_KEY = "import_upload.key"  # service.extra: this process's random signing key
ACTIVE_UPLOADS = "import_upload.active"  # service.extra: job IDs with an upload in flight
_SUFFIX = {"CSV": ".csv", "JSON": ".json"}


def signing_key(extra: dict[str, Any]) -> bytes:
    """The per-process key (random at start: URLs handed out before a restart stop working)."""
    key: bytes = extra.setdefault(_KEY, secrets.token_bytes(32))
    return key


def signature(key: bytes, job_id: str, expires: int) -> str:
    message = f"address-list-import\n{job_id}\n{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def presigned_url(base_url: str, key: bytes, job_id: str, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + URL_SECONDS)
    return (f"{base_url}/api/address-list-import/{job_id}?Expires={expires}"
            f"&Signature={signature(key, job_id, expires)}")


def refusal(key: bytes, job_id: str, expires: str | None, given: str | None, now: float
            ) -> str | None:
    """Why an upload URL is not acceptable (None: it is): missing, forged or expired."""
    if not expires or not given or not expires.isdigit():
        return "the URL is not a pre-signed upload URL (Expires and Signature are required)"
    if not hmac.compare_digest(signature(key, job_id, int(expires)).encode(),
                               given.encode("utf-8", "replace")):
        return "the URL's signature does not match (forged, altered, or from before a restart)"
    if int(expires) < now:
        return "the URL has expired: GetAddressListImportJob hands out a fresh one"
    return None


def upload_path(data_directory: Path, job_id: str, data_type: str) -> Path:
    return data_directory / UPLOAD_DIRECTORY / f"{job_id}{_SUFFIX.get(data_type, '.csv')}"


def remove_uploads(data_directory: Path, job_id: str) -> None:
    """Blocking."""
    for suffix in _SUFFIX.values():
        (data_directory / UPLOAD_DIRECTORY / f"{job_id}{suffix}").unlink(missing_ok=True)


def sweep(directory: Path, keep: set[str], now: float) -> int:
    """Removes upload files of jobs not in `keep` (finished, dropped or unknown jobs: left by
    a crash) and temporary files older than an hour (an interrupted upload). Blocking; answers
    how many files it removed."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.name.startswith("."):
                stale = entry.stat().st_mtime < now - 3600
            else:
                stale = entry.name.rsplit(".", 1)[0] not in keep
            if stale and entry.is_file():
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def pending_bytes(directory: Path, except_job: str) -> int:
    """Bytes of the upload files other jobs are keeping. Blocking."""
    try:
        return sum(e.stat().st_size for e in os.scandir(directory)
                   if e.is_file() and not e.name.startswith(except_job))
    except FileNotFoundError:
        return 0


@dataclass(frozen=True)
class UploadTarget:
    """What the route needs to know about a job: its file, and whether it takes uploads."""

    path: Path
    refusal: str | None  # e.g. "the job has already been started"


class UploadRoute:
    """The PUT handler. `target(job_id)` answers None for an unknown job."""

    def __init__(self, extra: dict[str, Any],
                 target: Callable[[str], Any]) -> None:
        self.extra = extra
        self.target = target

    async def put(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        reason = refusal(signing_key(self.extra), job_id, request.query.get("Expires"),
                         request.query.get("Signature"), time.time())
        if reason is not None:
            return _text(403, reason)
        found: UploadTarget | None = await self.target(job_id)
        if found is None:
            return _text(404, "no such import job")
        if found.refusal is not None:
            return _text(409, found.refusal)
        active: set[str] = self.extra.setdefault(ACTIVE_UPLOADS, set())
        if job_id in active:
            return _text(409, "another upload to this job is in progress")
        declared = request.content_length
        if declared is not None and declared > MAX_UPLOAD_BYTES:
            return _text(413, f"the file is larger than {MAX_UPLOAD_BYTES} bytes")
        loop = asyncio.get_running_loop()
        directory = found.path.parent
        others = await loop.run_in_executor(None, pending_bytes, directory, job_id)
        if others + (declared or MAX_UPLOAD_BYTES) > MAX_PENDING_BYTES:
            return _text(507, "too many uploaded files are waiting to be imported: start or "
                              "stop those import jobs first")
        active.add(job_id)
        try:
            size = await _receive(request, found.path)
        except TimeoutError:
            logs.warning("api.import_upload_stalled", job=job_id, seconds=IDLE_SECONDS)
            response = _text(408, f"the upload sent nothing for {IDLE_SECONDS:g} seconds")
            response.force_close()
            return response
        finally:
            active.discard(job_id)
        if size is None:
            return _text(413, f"the file is larger than {MAX_UPLOAD_BYTES} bytes")
        logs.event("api.import_uploaded", job=job_id, bytes=size)
        return web.Response(status=200, headers={"ETag": f'"{job_id}-{size}"'})


async def _receive(request: web.Request, path: Path) -> int | None:
    """Streams the body to `path` (via a temporary file, fsynced, renamed); None when it
    exceeds MAX_UPLOAD_BYTES (nothing kept). Disk work runs in the executor. Raises
    TimeoutError when no data arrives for IDLE_SECONDS (nothing kept)."""
    loop = asyncio.get_running_loop()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")

    def open_tmp() -> Any:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(tmp, "wb")  # closed in `finish`, or in `discard` on failure

    handle = await loop.run_in_executor(None, open_tmp)
    size = 0
    buffer = bytearray()
    ok = False
    try:
        while True:
            async with asyncio.timeout(IDLE_SECONDS):
                chunk = await request.content.read(64 * 1024)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                return None
            buffer += chunk
            if len(buffer) >= _CHUNK:
                data, buffer = bytes(buffer), bytearray()
                await loop.run_in_executor(None, handle.write, data)

        def finish() -> None:
            handle.write(bytes(buffer))
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(tmp, path)

        await loop.run_in_executor(None, finish)
        ok = True
        return size
    finally:
        if not ok:
            def discard() -> None:
                handle.close()
                tmp.unlink(missing_ok=True)
            await loop.run_in_executor(None, discard)


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n")


@dataclass(frozen=True)
class ImportFile:
    """An uploaded file read: valid members (lower-cased, unique, at most MAX_MEMBERS), the
    rows that were not (invalid, or valid beyond MAX_MEMBERS), or the reason the whole file
    cannot be used (not CSV with an `address` header / not JSON `{"items": [...]}`)."""

    members: tuple[str, ...]
    failed: int
    error: str | None


def read_import_file(path: Path) -> ImportFile:
    """Blocking (run it in the executor). CSV or JSON by the file's suffix."""
    sink = Sink()
    ctx = Ctx("upload", path.parent, sink)
    members: dict[str, None] = {}
    failed = 0
    for text, _ in address_file_members(ctx, path, "$"):
        if member_problem(text) is not None:
            failed += 1
            continue
        assert isinstance(text, str)
        lowered = text.lower()
        if lowered in members:
            continue
        if len(members) >= MAX_MEMBERS:
            failed += 1
            continue
        members[lowered] = None
    fatal = [p for p in sink.problems if not p.path.startswith("$.items[")]
    if fatal:
        first = fatal[0]
        message = first.message.replace(str(path), "the uploaded file")
        where = "" if first.path in ("$", "") else f"{first.path}: "
        return ImportFile((), 0, f"{where}{message}")
    failed += len(sink.problems) + sink.dropped  # JSON items without an "address"
    return ImportFile(tuple(members), failed, None)
