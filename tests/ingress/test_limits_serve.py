"""Server.Limits through the config file and a real `mailmgr serve`: the recipient keys are
read and checked, and a refusal shows on /metrics (scraped over HTTP) and as one
`limits.refused` line."""

from __future__ import annotations

import smtplib
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mailmgr import config
from mailmgr.config.models import ServerLimits
from tests.config.config_helpers import base, problems_of, write
from tests.support import ServerProcess, basic_config


def _with_limits(tmp_path: Path, limits: Any) -> Path:
    data = base()
    data["Server"]["Limits"] = limits
    return write(tmp_path, data)


def test_recipient_limits_have_safe_defaults_and_are_read(tmp_path: Path) -> None:
    defaults = config.load(write(tmp_path, base())).server.limits
    assert (defaults.recipients_per_connection, defaults.recipients_per_address_per_minute) == (
        10_000, 6_000)
    read = config.load(_with_limits(tmp_path, {"RecipientsPerConnection": 7,
                                               "RecipientsPerAddressPerMinute": 9}))
    assert read.server.limits == ServerLimits(recipients_per_connection=7,
                                              recipients_per_address_per_minute=9)


@pytest.mark.parametrize(("key", "value", "text"), [
    ("RecipientsPerConnection", 0, "less than the minimum 1"),
    ("RecipientsPerConnection", 1.5, "expected an integer"),
    ("RecipientsPerAddressPerMinute", "many", "expected an integer"),
])
def test_bad_recipient_limits_are_located(tmp_path: Path, key: str, value: Any,
                                          text: str) -> None:
    (problem,) = problems_of(_with_limits(tmp_path, {key: value}))
    assert problem.path == f"$.Server.Limits.{key}"
    assert text in problem.message


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


def _sample(text: str, limit: str) -> float:
    wanted = f'mailmgr_limit_refusals_total{{limit="{limit}"}}'
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == wanted:
            return float(value)
    raise AssertionError(f"{wanted} not exposed")


def test_refusals_are_scraped_and_logged_once(tmp_path: Path, server_factory: Any) -> None:
    data = basic_config(tmp_path, Limits={"MessagesPerAddressPerMinute": 1})
    server: ServerProcess = server_factory(data).start()
    before = _metrics(server.admin_port)
    assert _sample(before, "MessagesPerAddressPerMinute") == 0  # every series from the start
    assert _sample(before, "RecipientsPerConnection") == 0
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.sendmail("a@sender.test", ["b@mailmgr.test"], b"Subject: one\r\n\r\nbody\r\n")
        for _ in range(3):
            assert smtp.mail("a@sender.test") == (
                451, b"4.7.1 Too many messages from your address per minute, try again later")
        assert smtp.noop()[0] == 250  # the session is still usable
    after = _metrics(server.admin_port)
    assert _sample(after, "MessagesPerAddressPerMinute") == 3
    refused = [e for e in server.events if e.get("event") == "limits.refused"]
    assert len(refused) == 1
    assert refused[0]["limit"] == "MessagesPerAddressPerMinute"
    assert refused[0]["address"] == "127.0.0.1" and refused[0]["reply"] == "451 4.7.1"
    assert server.stop() == 0


def _value(text: str, series: str) -> float:
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == series:
            return float(value)
    return 0.0


def test_a_refusal_before_the_banner_counts_as_a_reply(
    tmp_path: Path, server_factory: Any
) -> None:
    """The per-address cap's 421 is written before any session exists: it still shows as a
    CONNECT reply and a `limits` rejection, like every reply a session sends."""
    data = basic_config(tmp_path, Limits={"MaxConnectionsPerAddress": 1})
    server: ServerProcess = server_factory(data).start()
    replies = ('mailmgr_smtp_replies_total{code_class="4xx",command="CONNECT",'
               'ingress_point="inbound"}')
    rejected = 'mailmgr_messages_rejected_total{ingress_point="inbound",reason="limits"}'
    before = _metrics(server.admin_port)
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as first:
        first.ehlo("client.test")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as second:
            assert second.recv(512).startswith(b"421 4.7.0 Too many connections from your")
        assert first.noop()[0] == 250
    after = _metrics(server.admin_port)
    assert _value(after, replies) - _value(before, replies) == 1
    assert _value(after, rejected) - _value(before, rejected) == 1
    assert server.stop() == 0
