"""DeliverToQBusiness: one BatchPutDocument per message into ApplicationId/IndexId.

Document id = message ID (a retry replaces, never duplicates), title = Subject, content = the
text body (HTML when there is no text part; mailmgr.mime.walk, bounded), attributes From, To
and Date.
"""

from __future__ import annotations

import email.utils
from datetime import datetime

from mailmgr import heavy, logs
from mailmgr.actions.base import Action, ActionInput, ActionResult, Resources
from mailmgr.aws import services
from mailmgr.config.models import DeliverToQBusinessAction, RuleAction
from mailmgr.mime import rfc2047, walk
from mailmgr.mime.headers import read


def _body(content: bytes, message_id: str) -> tuple[str, str]:
    """(content type for Q Business, text) of the best body part: text/plain, else text/html,
    found by the bounded MIME walk (mailmgr.mime.walk: linear, at most 1,000 parts)."""
    tree = walk.walk(content)
    if tree.truncated:
        logs.warning("qbusiness.mime_walk_truncated", message_id=message_id, parts=tree.parts)
    subtype, text = walk.text_body(content, tree)
    return ("HTML" if subtype == "html" else "PLAIN_TEXT"), text.replace("\r\n", "\n")


def document(item: ActionInput) -> services.QDocument:
    content = item.content
    section = read(content)  # the one header reader; RFC 2047 decoded linearly

    def get(name: str) -> str:
        raw = section.first(name)
        return rfc2047.decode(raw.strip()) if raw else ""

    kind, text = _body(content, item.message.id)
    strings = tuple((name, value) for name in ("From", "To") if (value := get(name)))
    dates: tuple[tuple[str, datetime], ...] = ()
    raw_date = get("Date")
    if raw_date:
        try:
            dates = (("Date", email.utils.parsedate_to_datetime(raw_date)),)
        except (TypeError, ValueError):
            strings += (("Date", raw_date),)
    return services.QDocument(
        id=item.message.id,
        title=get("Subject") or "(no subject)",
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
            application_id=a.application_id, index_id=a.index_id,
            document=await heavy.run(len(item.content), document, item),
        )
        return ActionResult(details={"qbusiness_application": a.application_id,
                                     "qbusiness_index": a.index_id,
                                     "qbusiness_document": item.message.id})


def build(action: RuleAction, resources: Resources) -> Action:
    if not isinstance(action, DeliverToQBusinessAction):
        raise TypeError(f"DeliverToQBusiness cannot be built from {type(action).__name__}")
    return DeliverToQBusiness(action, resources)
