"""The explicit table from AWS RuleAction member name to the builder of its implementation.

Adding an action: one module in actions/ and one line here. Instances are built once at start-up
by `build_actions`; nothing is registered by import side effects.
"""

from __future__ import annotations

from collections.abc import Callable

from mailmgr.actions import (
    add_header,
    archive,
    bounce,
    drop,
    lambda_,
    mailbox,
    qbusiness,
    relay,
    replace_recipient,
    s3,
    send,
    sns,
)
from mailmgr.actions.base import Action, Resources
from mailmgr.config.models import ArchiveAction, RuleAction, RuleSet
from mailmgr.errors import MailmgrError

Builder = Callable[[RuleAction, Resources], Action]


class UnsupportedAction(MailmgrError):
    """A configured action has no implementation (the config loader should have rejected it)."""


def _archive(action: RuleAction, resources: Resources) -> Action:
    # archive.build takes the precise model type; the table needs the union.
    if not isinstance(action, ArchiveAction):
        raise TypeError(f"Archive cannot be built from {type(action).__name__}")
    return archive.build(action, resources)


REGISTRY: dict[str, Builder] = {
    "Drop": drop.build,
    "AddHeader": add_header.build,
    "ReplaceRecipient": replace_recipient.build,
    "Archive": _archive,
    "WriteToS3": s3.build,
    "PublishToSns": sns.build,
    "InvokeLambda": lambda_.build,
    "Bounce": bounce.build,
    "Send": send.build,
    "DeliverToQBusiness": qbusiness.build,
    "DeliverToMailbox": mailbox.build,
    "Relay": relay.build,
}


def build_action(action: RuleAction, resources: Resources) -> Action:
    builder = REGISTRY.get(action.aws_name)
    if builder is None:
        raise UnsupportedAction(f"action '{action.aws_name}' is not implemented")
    return builder(action, resources)


def build_actions(rule_set: RuleSet, resources: Resources) -> tuple[tuple[Action, ...], ...]:
    """One instance per configured action, per rule, in order (the executor's `actions`)."""
    return tuple(
        tuple(build_action(action, resources) for action in rule.actions)
        for rule in rule_set.rules
    )
