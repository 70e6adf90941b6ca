"""Fixtures for the archive tests: action inputs and opened local archives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from archive_samples import DEFAULT, FOREVER, PLAIN, REMOTE, MakeItem, make_config

from mailmgr.actions.base import ActionInput
from mailmgr.archive import LocalArchive
from mailmgr.config.models import Config
from mailmgr.message import Envelope, InboundMessage, SessionFacts, Verdicts, new_message_id


@pytest.fixture
def make_item() -> MakeItem:
    def make(
        content: bytes = PLAIN,
        *,
        message_id: str | None = None,
        received_at: float = 1_795_000_000.0,
        rule_index: int = 1,
        action_index: int = 1,
        mail_from: str = "bounce@sender.test",
        rcpt_to: tuple[str, ...] = ("alice@example.test", "hidden@example.test"),
        peer_ip: str = "192.0.2.7",
    ) -> ActionInput:
        message = InboundMessage(
            id=message_id or new_message_id(),
            received_at=received_at,
            envelope=Envelope(mail_from=mail_from, rcpt_to=rcpt_to),
            session=SessionFacts(
                ingress_point_id="inp-inbound",
                ingress_point_name="inbound",
                peer_ip=peer_ip,
                peer_port=40000,
                helo="client.sender.test",
            ),
            content=content,
        )
        return ActionInput(
            message=message,
            content=content,
            recipients=rcpt_to,
            verdicts=Verdicts(),
            rule_set_id="rs-main",
            rule_set_name="main",
            rule_index=rule_index,
            rule_name="archive-all",
            action_index=action_index,
        )

    return make


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "var", DEFAULT, FOREVER, REMOTE)


@pytest.fixture
async def archive(config: Config) -> AsyncIterator[LocalArchive]:
    store = LocalArchive.from_config(config, DEFAULT)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def forever(config: Config) -> AsyncIterator[LocalArchive]:
    store = LocalArchive.from_config(config, FOREVER)
    await store.open()
    yield store
    await store.close()
