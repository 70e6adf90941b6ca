"""Helpers for the S3-storage and PostgreSQL-index archive tests: moto clients, S3 archives."""

from __future__ import annotations

from typing import Any

import boto3

from mailmgr.aws.clients import AwsClients, AwsSettings
from mailmgr.config.models import Archive, S3Storage

ACCOUNT_ARN = "arn:aws:ses:us-east-1:123456789012:mailmanager-archive/"
ROLE = "arn:aws:iam::123456789012:role/archive-writer"


def clients_for(endpoint: str) -> AwsClients:
    # max_attempts=0: one try, so an outage shows at once (the spool does the retrying).
    return AwsClients(AwsSettings(region="us-east-1", endpoint_url=endpoint, max_attempts=0))


def boto(endpoint: str, service: str) -> Any:
    return boto3.client(service, region_name="us-east-1", endpoint_url=endpoint)


def s3_archive(bucket: str = "mail-archive", prefix: str | None = "mailmgr/", *,
               archive_id: str = "a-cold", retention: str = "THREE_MONTHS",
               kms_key_arn: str | None = None, archive_kms_key_arn: str | None = None,
               role_arn: str | None = None) -> Archive:
    return Archive(id=archive_id, name=archive_id.removeprefix("a-"),
                   arn=ACCOUNT_ARN + archive_id, retention=retention,
                   kms_key_arn=archive_kms_key_arn,
                   storage=S3Storage(bucket, prefix, role_arn=role_arn, kms_key_arn=kms_key_arn))
