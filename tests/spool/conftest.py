"""Fixtures for spool tests: message factory, log capture, and a store on a temp dir."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mailmgr.logs import LOGGER_NAME
from mailmgr.message import Envelope, InboundMessage, SessionFacts, new_message_id
from mailmgr.spool.store import SpoolStore

SESSION = SessionFacts(
    ingress_point_id="inp-1",
    ingress_point_name="main",
    peer_ip="192.0.2.7",
    peer_port=40000,
    helo="client.example",
    tls=True,
    tls_protocol="TLSv1.3",
)


def make_message(
    size: int = 10 * 1024, rcpt: tuple[str, ...] = ("b@example.org",)
) -> InboundMessage:
    head = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: t\r\n\r\n"
    # Random, binary-ish content (with CR/LF/NUL and high bytes) must come back byte-identical.
    body = os.urandom(max(0, size - len(head)))
    return InboundMessage(
        id=new_message_id(),
        received_at=time.time(),
        envelope=Envelope(mail_from="a@example.com", rcpt_to=rcpt, body_8bit=True),
        session=SESSION,
        content=head + body,
    )


@dataclass
class LogEvents:
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [f for n, f in self.records if n == name]


class _Collect(logging.Handler):
    def __init__(self, sink: LogEvents) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.records.append(
            (getattr(record, "event", record.getMessage()), dict(getattr(record, "fields", {})))
        )


@pytest.fixture
def log_events() -> Iterator[LogEvents]:
    logger = logging.getLogger(LOGGER_NAME)
    sink = LogEvents()
    handler = _Collect(sink)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield sink
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@pytest.fixture
def message_factory() -> Callable[..., InboundMessage]:
    return make_message


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SpoolStore]:
    s = SpoolStore(tmp_path / "spool")
    await s.open()
    try:
        yield s
    finally:
        await s.close()
