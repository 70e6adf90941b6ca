"""Archive exports through the Mail Manager API with boto3: StartArchiveExport to moto's S3 and
to a local directory (`s3://LOCAL/<path>`) writes the matching messages (and their metadata),
GetArchiveExport / ListArchiveExports report it, and bad requests get modelled errors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from archive_api_support import archive_id, send, wait_export
from botocore.exceptions import ClientError

from tests.support import basic_config, cli

NOW = dt.datetime.now(dt.UTC)
WINDOW = {"FromTimestamp": NOW - dt.timedelta(hours=1), "ToTimestamp": NOW + dt.timedelta(hours=1)}


def archived_bytes(config_file: Path, archived_id: str) -> bytes:
    got = cli(config_file, "archive", "get", archived_id)
    assert got.returncode == 0, got.stderr
    return got.stdout.encode()  # LF line ends (text mode), as compared below


def test_export_to_s3_writes_messages_and_metadata(
        aws_env: str, api_server_factory: Any, tmp_path: Path) -> None:
    api = api_server_factory(basic_config(tmp_path, Aws={"EndpointUrl": aws_env}))
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=aws_env)
    s3.create_bucket(Bucket="exports")
    client = api.client()
    first = send(api.server, subject="Export one", to="dave@example.test")
    second = send(api.server, subject="Export two", to="erin@example.test")
    archive = archive_id(client)

    export_id = client.start_archive_export(
        ArchiveId=archive, **WINDOW, IncludeMetadata=True,
        ExportDestinationConfiguration={"S3": {"S3Location": "s3://exports/mail/2026"}},
    )["ExportId"]
    got = wait_export(client, export_id)
    assert got["Status"]["State"] == "COMPLETED", got
    assert got["ArchiveId"] == archive
    assert got["ExportDestinationConfiguration"] == {
        "S3": {"S3Location": "s3://exports/mail/2026"}}
    listed = s3.list_objects_v2(Bucket="exports")["Contents"]
    keys = sorted(o["Key"] for o in listed)
    prefix = f"mail/2026/{export_id}/"
    assert keys == sorted(f"{prefix}{i}{suffix}" for i in (first, second)
                          for suffix in (".eml", ".metadata.json"))
    for archived in (first, second):
        body = s3.get_object(Bucket="exports", Key=f"{prefix}{archived}.eml")
        assert body["ContentType"] == "message/rfc822"
        data = body["Body"].read()
        assert data.replace(b"\r\n", b"\n") == archived_bytes(api.server.config_file, archived)
    meta = json.loads(s3.get_object(Bucket="exports",
                                    Key=f"{prefix}{second}.metadata.json")["Body"].read())
    assert meta["ArchivedMessageId"] == second and meta["Subject"] == "Export two"
    assert meta["ArchiveId"] == archive and meta["Envelope"]["To"] == ["erin@example.test"]

    # A bucket that does not exist: the export FAILS and says why.
    failed = client.start_archive_export(
        ArchiveId=archive, **WINDOW,
        ExportDestinationConfiguration={"S3": {"S3Location": "s3://no-such-bucket"}},
    )["ExportId"]
    status = wait_export(client, failed)["Status"]
    assert status["State"] == "FAILED" and "NoSuchBucket" in status["ErrorMessage"], status
    exports = client.list_archive_exports(ArchiveId=archive)["Exports"]
    assert [(e["ExportId"], e["Status"]["State"]) for e in exports] == [
        (failed, "FAILED"), (export_id, "COMPLETED")]


def test_export_to_a_local_directory(api_server: Any) -> None:
    client = api_server.client()
    server = api_server.server
    wanted = send(server, subject="Keep me", to="dave@example.test")
    send(server, subject="Not this one", to="dave@example.test")
    archive = archive_id(client)
    export_id = client.start_archive_export(
        ArchiveId=archive, **WINDOW, MaxResults=10,
        Filters={"Include": [{"StringExpression": {"Evaluate": {"Attribute": "SUBJECT"},
                                                   "Operator": "CONTAINS",
                                                   "Values": ["keep"]}}]},
        ExportDestinationConfiguration={"S3": {"S3Location": "s3://LOCAL/legal/hold"}},
    )["ExportId"]
    assert wait_export(client, export_id)["Status"]["State"] == "COMPLETED"
    directory = api_server.tmp_path / "var" / "exports" / "legal" / "hold" / export_id
    assert sorted(p.name for p in directory.iterdir()) == [f"{wanted}.eml"]
    assert (directory / f"{wanted}.eml").stat().st_mode & 0o777 == 0o600
    assert (directory / f"{wanted}.eml").read_bytes().replace(b"\r\n", b"\n") == \
        archived_bytes(server.config_file, wanted)

    client.stop_archive_export(ExportId=export_id)  # finished: stays COMPLETED
    assert client.get_archive_export(ExportId=export_id)["Status"]["State"] == "COMPLETED"


def error(call: Any, **params: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**params)
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def test_bad_export_requests_get_modelled_errors(api_server: Any) -> None:
    client = api_server.client()
    archive = archive_id(client)
    local = {"S3": {"S3Location": "s3://LOCAL/out"}}
    code, message = error(client.start_archive_export, ArchiveId="a-doesnotexist", **WINDOW,
                          ExportDestinationConfiguration=local)
    assert code == "ResourceNotFoundException" and "a-doesnotexist" in message
    assert error(client.list_archive_exports, ArchiveId="a-doesnotexist")[0] == \
        "ResourceNotFoundException"
    code, message = error(client.start_archive_export, ArchiveId=archive, **WINDOW,
                          ExportDestinationConfiguration={"S3": {"S3Location": "s3://LOCAL/../x"}})
    assert code == "ValidationException" and ".." in message
    code, message = error(client.start_archive_export, ArchiveId=archive, **WINDOW,
                          ExportDestinationConfiguration={"S3": {"S3Location": "/tmp/x"}})
    assert code == "ValidationException" and "S3Location" in message
    code, message = error(client.start_archive_export, ArchiveId=archive, **WINDOW,
                          MaxResults=0, ExportDestinationConfiguration=local)
    assert code == "ValidationException" and "MaxResults" in message
    for call, wanted in ((client.get_archive_export, "ResourceNotFoundException"),
                         (client.stop_archive_export, "ValidationException")):
        code, message = error(call, ExportId="no-such-export")
        assert code == wanted and "no-such-export" in message
    assert not (api_server.tmp_path / "var" / "exports").exists()
