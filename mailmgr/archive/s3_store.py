"""`S3Store`: archived bodies as S3 objects `<Prefix><ArchivedMessageId>` (message/rfc822,
SSE-KMS when a key is configured), and the start-up check of the bucket's lifecycle rules.

A retry re-puts the same key with the same bytes, so a message is stored once however often the
spool retries. S3 failures arrive classified by mailmgr.aws (temporary → the spool retries).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from mailmgr import logs
from mailmgr.archive.backends import Body
from mailmgr.aws import s3_archive, services
from mailmgr.aws.clients import AwsClients
from mailmgr.config.models import Archive, S3Storage
from mailmgr.errors import ActionError

CONTENT_TYPE = "message/rfc822"
_CONCURRENCY = 16  # PutObject calls in flight per archive (the client pool holds 32)


class S3Store:
    """Bodies of one archive in `storage.bucket`. The KMS key is the storage's `KmsKeyArn`,
    else the archive's own `KmsKeyArn` (CreateArchive's), else none (the bucket default)."""

    def __init__(self, archive: Archive, storage: S3Storage, clients: AwsClients | None) -> None:
        self.archive = archive
        self.storage = storage
        self._clients = clients
        self.kms_key_id = storage.kms_key_arn or archive.kms_key_arn
        self.location = f"s3:{storage.bucket}"
        self._slots = asyncio.Semaphore(_CONCURRENCY)

    @property
    def clients(self) -> AwsClients:
        return services.require(self._clients)

    async def open(self) -> None:
        return None  # clients open lazily: start-up never waits on S3

    async def close(self) -> None:
        return None  # the clients are shared and closed by the app

    def key_for(self, archived_id: str, received_at: float) -> str:
        return f"{self.storage.prefix or ''}{archived_id}"

    async def _put(self, body: Body) -> Exception | None:
        async with self._slots:
            try:
                await services.put_object(
                    self.clients, self.storage.role_arn, bucket=self.storage.bucket,
                    key=body.key, body=body.content, content_type=CONTENT_TYPE,
                    kms_key_id=self.kms_key_id)
            except ActionError as exc:
                return exc
        return None

    async def write_many(self, bodies: Sequence[Body]) -> list[Exception | None]:
        return list(await asyncio.gather(*(self._put(b) for b in bodies)))

    async def read(self, key: str) -> bytes | None:
        return await s3_archive.get_object(
            self.clients, self.storage.role_arn, bucket=self.storage.bucket, key=key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        async def one(key: str) -> None:
            async with self._slots:
                await s3_archive.delete_object(
                    self.clients, self.storage.role_arn, bucket=self.storage.bucket, key=key)

        await asyncio.gather(*(one(k) for k in keys))

    async def check_lifecycle(self, retention_days: int | None) -> bool | None:
        """Whether an enabled Expiration rule covers the prefix within `retention_days`; logs
        `archive.lifecycle_missing` (warning) when not. None when it could not be checked
        (logged as `archive.lifecycle_unchecked`) or the retention is permanent."""
        if retention_days is None:
            return None
        bucket, prefix = self.storage.bucket, self.storage.prefix or ""
        try:
            rules = await s3_archive.expiration_rules(
                self.clients, self.storage.role_arn, bucket=bucket)
        except ActionError as exc:
            logs.warning("archive.lifecycle_unchecked", archive_id=self.archive.id,
                         bucket=bucket, prefix=prefix, error=str(exc))
            return None
        if any(r.days is not None and r.days <= retention_days and prefix.startswith(r.prefix)
               for r in rules):
            return True
        logs.warning("archive.lifecycle_missing", archive_id=self.archive.id, bucket=bucket,
                     prefix=prefix, needed_days=retention_days,
                     note="mailmgr deletes expired objects itself; an S3 lifecycle "
                          "Expiration rule on this prefix would enforce retention too")
        return False
