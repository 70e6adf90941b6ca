"""Server.Limits in the config file: defaults, every key read, and bad values reported with
their location (the usual config error), never a traceback or a silently ignored key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailmgr import config
from mailmgr.config.models import ServerLimits
from tests.config.config_helpers import base, problems_of, write

ALL_KEYS = {
    "MaxConnections": 100, "MaxConnectionsPerAddress": 7, "ConnectionsPerAddressPerMinute": 30,
    "MessagesPerConnection": 9, "MessagesPerAddressPerMinute": 11, "ErrorsPerSession": 3,
    "CommandTimeoutSeconds": 60, "DataTimeoutSeconds": 120.5, "WriteTimeoutSeconds": 30,
    "SessionTimeoutSeconds": 900, "MinDataRateBytesPerSecond": 0,
}


def _with_limits(tmp_path: Path, limits: Any) -> Path:
    data = base()
    data["Server"]["Limits"] = limits
    return write(tmp_path, data)


def test_defaults_match_interface_md(tmp_path: Path) -> None:
    assert config.load(write(tmp_path, base())).server.limits == ServerLimits(
        max_connections=2000, max_connections_per_address=50,
        connections_per_address_per_minute=600, messages_per_connection=1000,
        messages_per_address_per_minute=600, errors_per_session=10, command_timeout=300,
        data_timeout=600, write_timeout=300, session_timeout=1800, min_data_rate=256)


def test_every_key_is_read(tmp_path: Path) -> None:
    assert config.load(_with_limits(tmp_path, ALL_KEYS)).server.limits == ServerLimits(
        max_connections=100, max_connections_per_address=7,
        connections_per_address_per_minute=30, messages_per_connection=9,
        messages_per_address_per_minute=11, errors_per_session=3, command_timeout=60,
        data_timeout=120.5, write_timeout=30, session_timeout=900, min_data_rate=0)


@pytest.mark.parametrize(("limits", "path", "text"), [
    ({"MaxConnections": 0}, "MaxConnections", "less than the minimum 1"),
    ({"MaxConnections": 2.5}, "MaxConnections", "expected an integer"),
    ({"MaxConnectionsPerAddress": "50"}, "MaxConnectionsPerAddress", "expected an integer"),
    ({"MaxConnectionsPerAddress": 3000}, "MaxConnectionsPerAddress",
     "must not be greater than MaxConnections"),
    ({"ConnectionsPerAddressPerMinute": -1}, "ConnectionsPerAddressPerMinute", "minimum"),
    ({"MessagesPerConnection": True}, "MessagesPerConnection", "expected an integer"),
    ({"MessagesPerAddressPerMinute": 0}, "MessagesPerAddressPerMinute", "minimum"),
    ({"ErrorsPerSession": None}, None, None),  # null: the default
    ({"CommandTimeoutSeconds": 0}, "CommandTimeoutSeconds", "less than the minimum"),
    ({"DataTimeoutSeconds": "10m"}, "DataTimeoutSeconds", "expected a number"),
    ({"WriteTimeoutSeconds": -5}, "WriteTimeoutSeconds", "less than the minimum"),
    ({"SessionTimeoutSeconds": 10**9}, "SessionTimeoutSeconds", "greater than the maximum"),
    ({"MinDataRateBytesPerSecond": -1}, "MinDataRateBytesPerSecond", "less than the minimum"),
    ({"MaxConnexions": 10}, "", "unknown key 'MaxConnexions'"),
])
def test_bad_values_are_located(tmp_path: Path, limits: dict[str, Any], path: str | None,
                                text: str | None) -> None:
    where = _with_limits(tmp_path, limits)
    if path is None:
        assert config.load(where).server.limits == ServerLimits()
        return
    (problem,) = problems_of(where)
    assert problem.path == "$.Server.Limits" + (f".{path}" if path else "")
    assert text is not None and text in problem.message


def test_limits_must_be_a_mapping(tmp_path: Path) -> None:
    (problem,) = problems_of(_with_limits(tmp_path, [1, 2]))
    assert problem.path == "$.Server.Limits" and "expected" in problem.message
