"""AddHeader: appends one header to the message later actions and rules see. No side effects.

The name and value were validated by the config loader (semantics.md §1).
"""

from __future__ import annotations

from mailmgr.actions.base import Action, ActionInput, ActionResult, Resources
from mailmgr.config.models import AddHeaderAction, RuleAction


class AddHeader:
    name = "AddHeader"

    def __init__(self, header_name: str, header_value: str) -> None:
        self.header_name = header_name
        self.header_value = header_value

    async def run(self, item: ActionInput) -> ActionResult:
        return ActionResult(add_header=(self.header_name, self.header_value))


def build(action: RuleAction, resources: Resources) -> Action:
    if not isinstance(action, AddHeaderAction):
        raise TypeError(f"AddHeader cannot be built from {type(action).__name__}")
    return AddHeader(action.header_name, action.header_value)
