"""DeliverToQBusiness: one BatchPutDocument per message into ApplicationId/IndexId.

Document id = message ID (a retry replaces, never duplicates), title = Subject, content = the
text body (HTML when there is no text part), attributes From, To and Date.
"""

from __future__ import annotations

import email.utils
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from mailmgr.actions.base import Action, ActionInput, ActionResult, Resources
from mailmgr.aws import services
from mailmgr.config.models import DeliverToQBusinessAction, RuleAction


def _body(message: EmailMessage) -> tuple[str, str]:
    """(content type for Q Business, text) of the best body part."""
    try:
        part = message.get_body(preferencelist=("plain", "html"))
        if part is None:
            return "PLAIN_TEXT", ""
        text = part.get_content()
    except (LookupError, ValueError, AttributeError):
        return "PLAIN_TEXT", ""
    kind = "HTML" if part.get_content_subtype() == "html" else "PLAIN_TEXT"
    return kind, text.replace("\r\n", "\n") if isinstance(text, str) else ""


def document(item: ActionInput) -> services.QDocument:
    parsed = BytesParser(policy=policy.default).parsebytes(item.content)
    assert isinstance(parsed, EmailMessage)
    kind, text = _body(parsed)
    strings = tuple((name, str(parsed[name])) for name in ("From", "To") if parsed[name])
    dates: tuple[tuple[str, datetime], ...] = ()
    raw_date = parsed["Date"]
    if raw_date:
        try:
            dates = (("Date", email.utils.parsedate_to_datetime(str(raw_date))),)
        except (TypeError, ValueError):
            strings += (("Date", str(raw_date)),)
    return services.QDocument(
        id=item.message.id,
        title=str(parsed["Subject"] or "") or "(no subject)",
        content=text.encode("utf-8"),
        content_type=kind,
        string_attributes=strings,
        date_attributes=dates,
    )


class DeliverToQBusiness:
    name = "DeliverToQBusiness"

    def __init__(self, action: DeliverToQBusinessAction, resources: Resources) -> None:
        self._action = action
        self._resources = resources

    async def run(self, item: ActionInput) -> ActionResult:
        a = self._action
        await services.batch_put_document(
            services.require(self._resources.aws), a.role_arn or None,
            application_id=a.application_id, index_id=a.index_id, document=document(item),
        )
        return ActionResult(details={"qbusiness_application": a.application_id,
                                     "qbusiness_index": a.index_id,
                                     "qbusiness_document": item.message.id})


def build(action: RuleAction, resources: Resources) -> Action:
    if not isinstance(action, DeliverToQBusinessAction):
        raise TypeError(f"DeliverToQBusiness cannot be built from {type(action).__name__}")
    return DeliverToQBusiness(action, resources)
