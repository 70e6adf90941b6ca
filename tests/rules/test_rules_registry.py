"""The action registry against botocore's RuleAction union, and the state actions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import botocore.session
import pytest
from rules_samples import make_config, make_message, rule, rule_set

from mailmgr.actions.base import ActionInput, ActionResult, Resources
from mailmgr.actions.registry import REGISTRY, UnsupportedAction, build_actions
from mailmgr.config import features
from mailmgr.config.models import (
    ALL_ACTION_CLASSES,
    AddHeaderAction,
    ArchiveAction,
    DropAction,
    ReplaceRecipientAction,
)
from mailmgr.message import Verdicts


def aws_rule_actions() -> set[str]:
    model = botocore.session.get_session().get_service_model("mailmanager")
    return set(model.shape_for("RuleAction").members)


def test_registry_plus_not_implemented_covers_every_aws_action() -> None:
    implemented = set(REGISTRY)
    assert implemented.isdisjoint(features.NOT_IMPLEMENTED_ACTIONS)
    assert implemented | features.NOT_IMPLEMENTED_ACTIONS == aws_rule_actions()
    assert {cls.aws_name for cls in ALL_ACTION_CLASSES} == aws_rule_actions()


def _item(recipients: tuple[str, ...]) -> ActionInput:
    message = make_message(rcpts=recipients)
    return ActionInput(
        message=message,
        content=message.content,
        recipients=recipients,
        verdicts=Verdicts(),
        rule_set_id="rs-main",
        rule_set_name="main",
        rule_index=1,
        rule_name="r",
        action_index=1,
    )


async def test_build_actions_builds_state_actions_once_per_configured_action() -> None:
    rules = rule_set(
        rule("r1", (DropAction(), AddHeaderAction(header_name="X-A", header_value="1"))),
        rule("r2", (ReplaceRecipientAction(replace_with=("n@x", "m@x", "n@x")),)),
        rule("r3", (ArchiveAction(archive_id="a-1"),)),
    )
    built = build_actions(rules, Resources(config=make_config(rules)))
    assert [[a.name for a in r] for r in built] == [
        ["Drop", "AddHeader"],
        ["ReplaceRecipient"],
        ["Archive"],
    ]
    item = _item(("a@x",))
    assert await built[0][0].run(item) == ActionResult(drop=True)
    assert await built[0][1].run(item) == ActionResult(add_header=("X-A", "1"))
    assert await built[1][0].run(item) == ActionResult(replace_with=("n@x", "m@x"))


async def test_replace_recipient_without_targets_removes() -> None:
    rules = rule_set(rule("r", (ReplaceRecipientAction(),)))
    [[action]] = build_actions(rules, Resources(config=make_config(rules)))
    assert await action.run(_item(("a@x",))) == ActionResult(replace_with=())


@dataclass(frozen=True)
class FutureAction(DropAction):
    """An action AWS might add later: in the config union, not in the registry."""

    aws_name: ClassVar[str] = "FutureAction"


def test_unimplemented_action_is_refused() -> None:
    rules = rule_set(rule("r", (FutureAction(),)))
    with pytest.raises(UnsupportedAction, match="FutureAction"):
        build_actions(rules, Resources(config=make_config(rules)))
