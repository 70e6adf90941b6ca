"""Bounce: an RFC 3464 DSN for the matched recipients, sent to the envelope sender with SES
SendRawEmail under the action's RoleArn. A null envelope sender never gets a bounce."""

from __future__ import annotations

import time
from collections.abc import Callable

from mailmgr.actions import dsn
from mailmgr.actions.base import Action, ActionInput, ActionResult, Resources
from mailmgr.aws import services
from mailmgr.config.models import BounceAction, RuleAction


class Bounce:
    name = "Bounce"

    def __init__(
        self,
        action: BounceAction,
        resources: Resources,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._action = action
        self._resources = resources
        self._clock = clock

    async def run(self, item: ActionInput) -> ActionResult:
        a = self._action
        to = item.message.envelope.mail_from
        if not to:
            # RFC 3464 §2 / RFC 5321 §4.5.5: never bounce a bounce.
            return ActionResult(details={"bounce": "skipped: null envelope sender"})
        request = dsn.DsnRequest(
            reporting_mta=self._resources.config.server.hostname,
            sender=a.sender,
            to=to,
            recipients=item.recipients,
            status_code=a.status_code,
            smtp_reply_code=a.smtp_reply_code,
            diagnostic_message=a.diagnostic_message,
            human_text=a.message,
            original_headers=dsn.original_header_section(item.content),
            arrival=item.message.received_at,
            now=self._clock(),
            original_id=item.message.id,
        )
        ses_id = await services.send_raw_email(
            services.require(self._resources.aws), a.role_arn or None,
            source=a.sender, destinations=(to,), data=dsn.build_dsn(request),
        )
        return ActionResult(details={"bounce_to": to, "ses_message_id": ses_id})


def build(action: RuleAction, resources: Resources) -> Action:
    if not isinstance(action, BounceAction):
        raise TypeError(f"Bounce cannot be built from {type(action).__name__}")
    return Bounce(action, resources)
