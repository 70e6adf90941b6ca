"""S3 archive storage against moto: object layout and SSE-KMS, idempotent re-puts, permanent
and temporary failures through the Archive action, the lifecycle check, retention deletion."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from archive_samples import PLAIN, MakeItem, make_config
from archive_shared_support import ROLE, boto, clients_for, s3_archive
from moto.server import ThreadedMotoServer

from mailmgr.actions.archive import build
from mailmgr.actions.base import Resources
from mailmgr.archive import MessageArchive
from mailmgr.config.models import ArchiveAction
from mailmgr.errors import PermanentActionError, TemporaryActionError

DAY = 86400.0


def eml_files(root: Path) -> list[Path]:
    return list(root.rglob("*.eml"))


async def test_message_is_one_object_with_content_type_and_sse_kms(
    aws_env: str, tmp_path: Path, make_item: MakeItem
) -> None:
    s3 = boto(aws_env, "s3")
    s3.create_bucket(Bucket="mail-archive")
    key_id = boto(aws_env, "kms").create_key()["KeyMetadata"]["Arn"]
    archive = s3_archive(kms_key_arn=key_id, role_arn=ROLE)
    clients = clients_for(aws_env)
    store = MessageArchive.from_config(make_config(tmp_path, archive), archive, aws=clients)
    try:
        item = make_item()
        archived_id = await store.put(item)
        row = await store.row(archived_id)
        assert row is not None and row.path == f"mailmgr/{archived_id}"
        assert row.subject == "Quarterly réport is ready"
        assert await store.get(archived_id) == PLAIN
        assert [r.archived_message_id for r in await store.search(subject="RÉPORT")] == [
            archived_id]
    finally:
        await store.close()
        await clients.close()
    obj = s3.get_object(Bucket="mail-archive", Key=f"mailmgr/{archived_id}")
    assert obj["Body"].read() == PLAIN
    assert obj["ContentType"] == "message/rfc822"
    assert obj["ServerSideEncryption"] == "aws:kms"
    assert obj["SSEKMSKeyId"] == key_id
    # The body is in S3 only: nothing but the SQLite index under the data directory.
    assert not eml_files(tmp_path)


async def test_archive_kms_key_is_used_when_the_storage_names_none(
    aws_env: str, tmp_path: Path, make_item: MakeItem
) -> None:
    s3 = boto(aws_env, "s3")
    s3.create_bucket(Bucket="mail-archive")
    key_id = boto(aws_env, "kms").create_key()["KeyMetadata"]["Arn"]
    plain, keyed = s3_archive(prefix="p/"), s3_archive(prefix="k/", archive_id="a-keyed",
                                                       archive_kms_key_arn=key_id)
    clients = clients_for(aws_env)
    config = make_config(tmp_path, plain, keyed)
    stores = [MessageArchive.from_config(config, a, aws=clients) for a in (plain, keyed)]
    try:
        ids = [await s.put(make_item()) for s in stores]
    finally:
        for s in stores:
            await s.close()
        await clients.close()
    assert "SSEKMSKeyId" not in s3.head_object(Bucket="mail-archive", Key=f"p/{ids[0]}")
    assert s3.head_object(Bucket="mail-archive", Key=f"k/{ids[1]}")["SSEKMSKeyId"] == key_id


async def test_a_retry_re_puts_the_same_key(
    aws_env: str, tmp_path: Path, make_item: MakeItem
) -> None:
    """A crash after PutObject but before the index row: the retry writes the same key."""
    s3 = boto(aws_env, "s3")
    s3.create_bucket(Bucket="mail-archive")
    s3.put_bucket_versioning(Bucket="mail-archive",
                             VersioningConfiguration={"Status": "Enabled"})
    archive = s3_archive(prefix=None)
    clients = clients_for(aws_env)
    item = make_item()
    ids = []
    try:
        for data_dir in ("first", "second"):  # the second has lost the first's index row
            store = MessageArchive.from_config(make_config(tmp_path / data_dir, archive),
                                               archive, aws=clients)
            ids.append(await store.put(item))
            ids.append(await store.put(item))  # indexed now: no second PutObject
            await store.close()
    finally:
        await clients.close()
    assert len(set(ids)) == 1
    versions = s3.list_object_versions(Bucket="mail-archive")["Versions"]
    assert {v["Key"] for v in versions} == {ids[0]} and len(versions) == 2
    assert s3.list_objects_v2(Bucket="mail-archive")["KeyCount"] == 1


async def test_missing_bucket_is_a_permanent_failure(
    aws_env: str, tmp_path: Path, make_item: MakeItem
) -> None:
    archive = s3_archive(bucket="absent")
    config = make_config(tmp_path, archive)
    clients = clients_for(aws_env)
    store = MessageArchive.from_config(config, archive, aws=clients)
    action = build(ArchiveAction(archive_id=archive.id), Resources(config, {archive.id: store}))
    try:
        with pytest.raises(PermanentActionError) as info:
            await action.run(make_item())
        assert info.value.code == "NoSuchBucket"
        assert await store.search() == []  # no row for a body that was never stored
    finally:
        await store.close()
        await clients.close()


async def test_s3_down_is_temporary_then_archived_once(
    aws_env: str, tmp_path: Path, make_item: MakeItem
) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto(endpoint, "s3").create_bucket(Bucket="mail-archive")
    archive = s3_archive()
    config = make_config(tmp_path, archive)
    clients = clients_for(endpoint)
    store = MessageArchive.from_config(config, archive, aws=clients)
    action = build(ArchiveAction(archive_id=archive.id), Resources(config, {archive.id: store}))
    item = make_item()
    try:
        server.stop()
        with pytest.raises(TemporaryActionError):
            await action.run(item)
        assert await store.search() == []
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        result = await action.run(item)  # the spool's retry
        archived_id = result.details["archived_message_id"]
        assert [r.archived_message_id for r in await store.search()] == [archived_id]
        assert await store.get(archived_id) == item.content
    finally:
        await store.close()
        await clients.close()
        server.stop()
    keys = [o["Key"] for o in boto(aws_env, "s3").list_objects_v2(
        Bucket="mail-archive")["Contents"]]
    assert keys == [f"mailmgr/{archived_id}"]


@pytest.mark.parametrize(("rules", "covered"), [
    ([], False),
    ([{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": "mailmgr/"},
       "Expiration": {"Days": 90}}], True),
    ([{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 30}}],
     True),
    ([{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": "mailmgr/"},
       "Expiration": {"Days": 91}}], False),  # later than the retention
    ([{"ID": "r", "Status": "Disabled", "Filter": {"Prefix": "mailmgr/"},
       "Expiration": {"Days": 90}}], False),
    ([{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": "other/"},
       "Expiration": {"Days": 90}}], False),
])
async def test_lifecycle_rule_present_or_reported_missing(
    aws_env: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    rules: list[dict[str, object]], covered: bool,
) -> None:
    s3 = boto(aws_env, "s3")
    s3.create_bucket(Bucket="mail-archive")
    if rules:
        s3.put_bucket_lifecycle_configuration(Bucket="mail-archive",
                                              LifecycleConfiguration={"Rules": rules})
    archive = s3_archive()  # THREE_MONTHS: 90 days
    clients = clients_for(aws_env)
    store = MessageArchive.from_config(make_config(tmp_path, archive), archive, aws=clients)
    try:
        with caplog.at_level(logging.INFO, logger="mailmgr"):
            assert await store.check_retention() is covered
    finally:
        await store.close()
        await clients.close()
    missing = [r for r in caplog.records if getattr(r, "event", "") == "archive.lifecycle_missing"]
    if covered:
        assert missing == []
    else:
        (record,) = missing
        assert record.levelno == logging.WARNING
        fields = record.fields  # type: ignore[attr-defined]
        assert (fields["bucket"], fields["prefix"], fields["needed_days"]) == (
            "mail-archive", "mailmgr/", 90)


async def test_retention_deletes_expired_objects_itself(
    aws_env: str, tmp_path: Path, make_item: MakeItem
) -> None:
    s3 = boto(aws_env, "s3")
    s3.create_bucket(Bucket="mail-archive")
    archive = s3_archive()
    clients = clients_for(aws_env)
    store = MessageArchive.from_config(make_config(tmp_path, archive), archive, aws=clients)
    now = 1_800_000_000.0
    try:
        old = await store.put(make_item(received_at=now - 91 * DAY))
        recent = await store.put(make_item(received_at=now - 89 * DAY))
        assert await store.purge_expired(now) == 1
        assert [r.archived_message_id for r in await store.search()] == [recent]
        assert await store.get(old) is None
        assert await store.purge_expired(now) == 0
    finally:
        await store.close()
        await clients.close()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mail-archive")["Contents"]]
    assert keys == [f"mailmgr/{recent}"]
