"""Send: the message, as this action sees it, to its current (matched) recipients with SES
SendRawEmail under the action's RoleArn. SES's verdict on the sender is classified in aws/."""

from __future__ import annotations

from mailmgr.actions.base import Action, ActionInput, ActionResult, Resources
from mailmgr.aws import services
from mailmgr.config.models import RuleAction, SendAction


class Send:
    name = "Send"

    def __init__(self, action: SendAction, resources: Resources) -> None:
        self._action = action
        self._resources = resources

    async def run(self, item: ActionInput) -> ActionResult:
        if not item.recipients:
            return ActionResult()
        ses_id = await services.send_raw_email(
            services.require(self._resources.aws), self._action.role_arn or None,
            # A null sender leaves Source out: SES then uses the From header.
            source=item.message.envelope.mail_from or None,
            destinations=item.recipients, data=item.content,
        )
        return ActionResult(details={"ses_message_id": ses_id})


def build(action: RuleAction, resources: Resources) -> Action:
    if not isinstance(action, SendAction):
        raise TypeError(f"Send cannot be built from {type(action).__name__}")
    return Send(action, resources)
