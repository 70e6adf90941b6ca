"""ReplaceRecipient: the matched recipients are replaced by ReplaceWith (de-duplicated, order
kept); an empty list removes them. The executor applies the result. No side effects.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailmgr.actions.base import Action, ActionInput, ActionResult, Resources
from mailmgr.config.models import ReplaceRecipientAction, RuleAction


def dedupe(addresses: Iterable[str]) -> tuple[str, ...]:
    """First occurrence wins; comparison is exact (the envelope keeps addresses as written)."""
    return tuple(dict.fromkeys(addresses))


class ReplaceRecipient:
    name = "ReplaceRecipient"

    def __init__(self, replace_with: Iterable[str]) -> None:
        self.replace_with = dedupe(replace_with)

    async def run(self, item: ActionInput) -> ActionResult:
        return ActionResult(replace_with=self.replace_with)


def build(action: RuleAction, resources: Resources) -> Action:
    if not isinstance(action, ReplaceRecipientAction):
        raise TypeError(f"ReplaceRecipient cannot be built from {type(action).__name__}")
    return ReplaceRecipient(action.replace_with)
