"""WriteToS3: PutObject of the message as this action sees it, under the action's RoleArn.

The key is `S3Prefix/messageId` (no double slash); a retry re-puts the same bytes at the same
key, so the object ends up written once. Error classification belongs to mailmgr.aws.
"""

from __future__ import annotations

from mailmgr.actions.base import Action, ActionInput, ActionResult, Resources
from mailmgr.aws import services
from mailmgr.config.models import RuleAction, WriteToS3Action

CONTENT_TYPE = "message/rfc822"


def object_key(prefix: str | None, message_id: str) -> str:
    """`prefix/id`; trailing slashes of the prefix are not doubled, an empty prefix is no prefix."""
    base = (prefix or "").rstrip("/")
    return f"{base}/{message_id}" if base else message_id


class WriteToS3:
    name = "WriteToS3"

    def __init__(self, action: WriteToS3Action, resources: Resources) -> None:
        self._action = action
        self._resources = resources

    async def run(self, item: ActionInput) -> ActionResult:
        a = self._action
        key = object_key(a.prefix, item.message.id)
        result = await services.put_object(
            services.require(self._resources.aws), a.role_arn or None,
            bucket=a.bucket, key=key, body=item.content, content_type=CONTENT_TYPE,
            kms_key_id=a.kms_key_id,
        )
        details = {"s3_bucket": a.bucket, "s3_key": key, "s3_etag": result.etag}
        if result.version_id:
            details["s3_version_id"] = result.version_id
        return ActionResult(details=details)


def build(action: RuleAction, resources: Resources) -> Action:
    if not isinstance(action, WriteToS3Action):
        raise TypeError(f"WriteToS3 cannot be built from {type(action).__name__}")
    return WriteToS3(action, resources)
