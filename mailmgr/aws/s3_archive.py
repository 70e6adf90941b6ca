"""The S3 calls archive storage needs besides PutObject (mailmgr.aws.services): GetObject,
DeleteObject and the bucket's lifecycle rules, as typed results.

Errors are classified by mailmgr.aws.errors like every other call (NoSuchBucket, AccessDenied →
permanent; connection trouble, 5xx, throttling → temporary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailmgr.aws.clients import AwsClients
from mailmgr.aws.errors import classify
from mailmgr.errors import ActionError


async def get_object(clients: AwsClients, role_arn: str | None, *, bucket: str, key: str
                     ) -> bytes | None:
    """The object's bytes, or None when it does not exist (NoSuchKey)."""
    try:
        response = await clients.call("s3", "GetObject", role_arn=role_arn, Bucket=bucket, Key=key)
    except ActionError as exc:
        if exc.code in ("NoSuchKey", "404"):
            return None
        raise
    try:
        async with response["Body"] as stream:
            data: bytes = await stream.read()
    except Exception as exc:
        raise classify(exc, what="s3:GetObject") from exc
    return data


async def delete_object(clients: AwsClients, role_arn: str | None, *, bucket: str, key: str
                        ) -> None:
    """DeleteObject; deleting a missing key succeeds, as S3 does."""
    await clients.call("s3", "DeleteObject", role_arn=role_arn, Bucket=bucket, Key=key)


@dataclass(frozen=True)
class ExpirationRule:
    """An enabled lifecycle rule that expires current objects: `prefix` it applies to ("" for
    the whole bucket) and `days` after creation (None when it expires at a date instead)."""

    rule_id: str
    prefix: str
    days: int | None


def _rule_prefix(rule: dict[str, Any]) -> str | None:
    """The key prefix a rule filters on ("" = every key), or None when it filters on tags or
    sizes too (it may then skip archived objects, so it does not count)."""
    if "Filter" not in rule:
        return str(rule.get("Prefix") or "")
    filt = rule["Filter"] or {}
    if "Prefix" in filt:
        return str(filt["Prefix"] or "")
    if not filt:
        return ""
    return None  # Tag, And (with tags or sizes), ObjectSize…: not every object qualifies


async def expiration_rules(clients: AwsClients, role_arn: str | None, *, bucket: str
                           ) -> tuple[ExpirationRule, ...]:
    """The bucket's enabled Expiration rules; () when it has no lifecycle configuration."""
    try:
        response = await clients.call(
            "s3", "GetBucketLifecycleConfiguration", role_arn=role_arn, Bucket=bucket)
    except ActionError as exc:
        if exc.code == "NoSuchLifecycleConfiguration":
            return ()
        raise
    rules: list[ExpirationRule] = []
    for rule in response.get("Rules") or []:
        expiration = rule.get("Expiration") or {}
        prefix = _rule_prefix(rule)
        if rule.get("Status") != "Enabled" or prefix is None or not expiration:
            continue
        days = expiration.get("Days")
        rules.append(ExpirationRule(str(rule.get("ID") or ""), prefix,
                                    int(days) if days is not None else None))
    return tuple(rules)
