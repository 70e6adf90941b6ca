"""PublishToSns: an SES-style "Received" notification JSON published to `TopicArn`.

CONTENT carries the message (UTF-8 text or BASE64) with headers capped at 20 KB; HEADERS carries
headers only (up to 100 KB). A notification over SNS's 256 KB limit fails permanently.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

from mailmgr.actions import events
from mailmgr.actions.base import Action, ActionInput, ActionResult, Resources
from mailmgr.aws import services
from mailmgr.config.models import PublishToSnsAction, RuleAction
from mailmgr.errors import PermanentActionError

SNS_MAX_BYTES = 256 * 1024
SUBJECT = "Amazon SES Email Receipt Notification"


def notification(
    item: ActionInput, topic_arn: str, encoding: str, payload_type: str, now: float
) -> str:
    """The notification text exactly as published."""
    headers_only = payload_type == "HEADERS"
    limit = events.SNS_HEADERS_LIMIT if headers_only else events.SNS_CONTENT_HEADERS_LIMIT
    action = {"type": "SNS", "topicArn": topic_arn, "encoding": encoding,
              "payloadType": payload_type}
    body: dict[str, Any] = {
        "notificationType": "Received",
        "mail": events.mail_object(item, limit),
        "receipt": events.receipt_object(item, action, now),
    }
    if not headers_only:
        if encoding == "BASE64":
            body["content"] = base64.b64encode(item.content).decode("ascii")
        else:
            body["content"] = item.content.decode("utf-8", errors="replace")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


class PublishToSns:
    name = "PublishToSns"

    def __init__(
        self,
        action: PublishToSnsAction,
        resources: Resources,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._action = action
        self._resources = resources
        self._clock = clock

    async def run(self, item: ActionInput) -> ActionResult:
        a = self._action
        text = notification(item, a.topic_arn, a.encoding, a.payload_type, self._clock())
        size = len(text.encode("utf-8"))
        if size > SNS_MAX_BYTES:
            raise PermanentActionError(
                f"SNS notification is {size} bytes, over the {SNS_MAX_BYTES}-byte limit",
                "NotificationTooLarge",
            )
        message_id = await services.publish(
            services.require(self._resources.aws), a.role_arn or None,
            topic_arn=a.topic_arn, message=text, subject=SUBJECT,
        )
        return ActionResult(details={"sns_topic": a.topic_arn, "sns_message_id": message_id,
                                     "sns_bytes": size})


def build(action: RuleAction, resources: Resources) -> Action:
    if not isinstance(action, PublishToSnsAction):
        raise TypeError(f"PublishToSns cannot be built from {type(action).__name__}")
    return PublishToSns(action, resources)
