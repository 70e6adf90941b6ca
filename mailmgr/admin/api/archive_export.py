"""StartArchiveExport's work: the matching archived messages copied, page by page, to an S3
location (through mailmgr.aws) or to a directory under `DataDirectory/exports/` (the location
`s3://LOCAL/<path>`, a bucket name S3 itself refuses, so it can never mean a real bucket).

Layout, both ways: `<prefix>/<ExportId>/<ArchivedMessageId>.eml` (message/rfc822), plus
`<ArchivedMessageId>.metadata.json` (the search Row shape and ArchiveId) with IncludeMetadata.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from mailmgr import logs
from mailmgr.admin.api.archive_jobs import Job, JobError
from mailmgr.admin.api.errors import validation
from mailmgr.archive.index import ArchiveRow, SearchQuery
from mailmgr.archive.store import MessageArchive
from mailmgr.aws import services
from mailmgr.aws.clients import AwsClients, AwsSettings
from mailmgr.config.models import ServerConfig
from mailmgr.errors import ActionError

LOCAL_BUCKET = "LOCAL"  # s3://LOCAL/<path>: DataDirectory/exports/<path>
EXPORTS_DIRECTORY = "exports"
MAX_EXPORT_RESULTS = 100_000  # default and largest MaxResults of one export
PAGE = 200  # index rows read per query
COPIES = 8  # messages copied at once
_LOCATION = re.compile(r"s3://([a-zA-Z0-9.-]{3,63})(/.*)?\Z")


@dataclass(frozen=True)
class Destination:
    """Where an export writes: `bucket` and key `prefix` ("" or ending in "/"), or a local
    `directory` (then `bucket` is LOCAL_BUCKET)."""

    bucket: str
    prefix: str
    directory: Path | None = None


def destination(location: str, data_directory: Path) -> Destination:
    """The destination of an ExportDestinationConfiguration's S3Location. Raises ApiError
    (ValidationException) for a location that is not `s3://bucket[/prefix]`, or a local path
    with `.` or `..` segments."""
    found = _LOCATION.match(location)
    if found is None:
        raise validation(f"ExportDestinationConfiguration.S3.S3Location: {location!r:.100} is "
                         "not s3://<bucket>[/<prefix>]")
    bucket, path = found.group(1), (found.group(2) or "").strip("/")
    segments = [s for s in path.split("/") if s]
    prefix = "/".join(segments) + "/" if segments else ""
    if bucket != LOCAL_BUCKET:
        return Destination(bucket, prefix)
    if any(s in (".", "..") for s in segments):
        raise validation("ExportDestinationConfiguration.S3.S3Location: a local export path "
                         "(s3://LOCAL/...) may not contain . or .. segments")
    return Destination(bucket, prefix, data_directory / EXPORTS_DIRECTORY / path)


class _Writer(Protocol):
    async def put(self, name: str, data: bytes, content_type: str) -> None: ...

    async def close(self) -> None: ...


class _LocalWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_name(path.name + ".part")
        # Owner-only, like the archive's own files: exported mail is as private as archived.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(partial, path)  # never a half-written file under the final name

    async def put(self, name: str, data: bytes, content_type: str) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, self._write, self.directory / name, data)

    async def close(self) -> None:
        return None


class _S3Writer:
    """Its own clients (the server's settings: region, endpoints), closed when the export ends."""

    def __init__(self, server: ServerConfig, bucket: str, prefix: str) -> None:
        self.clients = AwsClients(AwsSettings.from_server(server))
        self.bucket = bucket
        self.prefix = prefix

    async def put(self, name: str, data: bytes, content_type: str) -> None:
        await services.put_object(self.clients, None, bucket=self.bucket, key=self.prefix + name,
                                  body=data, content_type=content_type)

    async def close(self) -> None:
        await self.clients.close()


def _metadata(row: ArchiveRow, archive_id: str) -> bytes:
    return json.dumps({**row.to_aws_json(), "ArchiveId": archive_id}, ensure_ascii=False,
                      indent=2).encode()


async def run_export(job: Job, archive: MessageArchive, query: SearchQuery, where: Destination,
                     include_metadata: bool, server: ServerConfig) -> None:
    """Copy up to `query.limit` matching messages, newest first. Raises JobError when the
    destination refuses a write (the export is then FAILED; what was written stays)."""
    writer: _Writer = (_LocalWriter(where.directory / job.job_id) if where.directory is not None
                       else _S3Writer(server, where.bucket, f"{where.prefix}{job.job_id}/"))
    remaining, cursor, copied, missing = query.limit, None, 0, 0
    try:
        while remaining > 0:
            rows = await archive.query(replace(query, limit=min(PAGE, remaining),
                                               before=cursor))
            if not rows:
                break
            job.state = "PROCESSING"
            for start in range(0, len(rows), COPIES):
                done = await asyncio.gather(*(_copy(writer, archive, row, include_metadata)
                                              for row in rows[start:start + COPIES]))
                copied += sum(done)
                missing += len(done) - sum(done)
            remaining -= len(rows)
            cursor = (rows[-1].received_timestamp, rows[-1].archived_message_id)
    except ActionError as exc:
        raise JobError(f"the export failed: {exc}") from None
    except OSError as exc:
        raise JobError(f"writing the export failed: {exc.strerror or exc}") from None
    finally:
        await writer.close()
    logs.event("api.archive_exported", export_id=job.job_id, archive_id=job.archive_id,
               messages=copied, missing=missing)


async def _copy(writer: _Writer, archive: MessageArchive, row: ArchiveRow,
                include_metadata: bool) -> bool:
    """Copy one message (and its metadata); False when its body is gone (purged since, or a
    local body another replica holds)."""
    content = await archive.store.read(row.path)
    if content is None:
        return False
    await writer.put(f"{row.archived_message_id}.eml", content, "message/rfc822")
    if include_metadata:
        await writer.put(f"{row.archived_message_id}.metadata.json",
                         _metadata(row, archive.archive.id), "application/json")
    return True
