"""Drop: the matched recipients leave the live set (the executor applies it). No side effects."""

from __future__ import annotations

from mailmgr.actions.base import Action, ActionInput, ActionResult, Resources
from mailmgr.config.models import DropAction, RuleAction


class Drop:
    name = "Drop"

    async def run(self, item: ActionInput) -> ActionResult:
        return ActionResult(drop=True)


def build(action: RuleAction, resources: Resources) -> Action:
    if not isinstance(action, DropAction):
        raise TypeError(f"Drop cannot be built from {type(action).__name__}")
    return Drop()
