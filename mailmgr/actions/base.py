"""The action contract: what an action receives, what it returns, how it fails.

Actions raise TemporaryActionError (retried from the spool with backoff) or PermanentActionError
(ActionFailurePolicy applies). They must be idempotent per (message, rule, action): a crash after
the side effect and before the checkpoint re-runs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from mailmgr.aws import AwsClients, SecretStore
from mailmgr.config.models import Config
from mailmgr.message import InboundMessage, Verdicts


class Disposition(StrEnum):
    CONTINUE = "CONTINUE"
    STOP_RULE = "STOP_RULE"
    STOP_RULE_SET = "STOP_RULE_SET"


@dataclass(frozen=True)
class ActionInput:
    message: InboundMessage
    content: bytes  # the message as this action sees it (received bytes + headers added so far)
    recipients: tuple[str, ...]  # the rule's matched, still-live recipients
    verdicts: Verdicts
    rule_set_id: str
    rule_set_name: str
    rule_index: int  # 1-based, as logs and explain show it
    rule_name: str
    action_index: int  # 1-based
    resume: str | None = None  # JSON text this action stored on an earlier, failed attempt


@dataclass(frozen=True)
class ActionResult:
    """What the executor applies after a successful action."""

    disposition: Disposition = Disposition.CONTINUE
    drop: bool = False  # the matched recipients leave the live set
    replace_with: tuple[str, ...] | None = None  # matched recipients replaced by these
    add_header: tuple[str, str] | None = None
    # Matched recipients this action failed for permanently while it succeeded for the others
    # (e.g. a relay's 550 for one RCPT): ActionFailurePolicy applies to these only.
    failed: tuple[str, ...] = ()
    failure_reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # extra log fields (archive id, key…)


class Action(Protocol):
    """One configured action instance, built once at start-up by the registry."""

    name: str  # the AWS union member name, e.g. "Archive"

    async def run(self, item: ActionInput) -> ActionResult: ...


class ArchiveSink(Protocol):
    """Where the Archive action stores a message (mailmgr.archive implements the local one)."""

    async def put(self, item: ActionInput) -> str:
        """Store `item.content` with its search fields; return the archived message ID.

        Idempotent per (message ID, rule index, action index): a re-run returns the same ID and
        stores nothing twice."""
        ...


@dataclass(frozen=True)
class Resources:
    """Long-lived things actions need; opened by app.py at start-up, closed at shutdown."""

    config: Config
    archives: Mapping[str, ArchiveSink] = field(default_factory=dict)  # by archive ID
    aws: AwsClients | None = None  # None only in tests and explain (no AWS calls there)
    secrets: SecretStore | None = None
