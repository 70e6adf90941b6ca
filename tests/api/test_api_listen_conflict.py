"""The Mail Manager API validates with the config loader: an ingress point whose `mailmgr:Listen`
tag names an address already bound (another point's, the admin listener's) is refused with a
ValidationException instead of a reload that fails with 'address already in use'."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import ApiServer
from tests.support import basic_config


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_listen_tag_on_a_bound_address_is_refused(
        api_server_factory: Callable[[dict[str, Any]], ApiServer], tmp_path: Path) -> None:
    port, admin_port = _free_port(), _free_port()
    config = basic_config(tmp_path)
    config["IngressPoints"][0]["Listen"] = [f"127.0.0.1:{port}"]
    config["Server"]["Admin"]["Listen"] = [f"127.0.0.1:{admin_port}"]
    api = api_server_factory(config)
    client = api.client()
    rule_set = client.list_rule_sets()["RuleSets"][0]["RuleSetId"]
    policy = client.list_traffic_policies()["TrafficPolicies"][0]["TrafficPolicyId"]

    def create(name: str, address: str) -> Any:
        return client.create_ingress_point(
            IngressPointName=name, Type="OPEN", RuleSetId=rule_set, TrafficPolicyId=policy,
            Tags=[{"Key": "mailmgr:Listen", "Value": address}])

    for address, first in ((f"127.0.0.1:{port}", "ingress point 'inbound'"),
                           (f"0.0.0.0:{port}", "ingress point 'inbound'"),
                           (f"127.0.0.1:{admin_port}", "the admin listener")):
        with pytest.raises(client.exceptions.ValidationException) as info:
            create("second", address)
        message = str(info.value)
        assert "Listen[0]: listen address" in message and first in message, message
    names = [p["IngressPointName"] for p in client.list_ingress_points()["IngressPoints"]]
    assert names == ["inbound"]
    create("second", "127.0.0.1:0")  # port 0 never conflicts
    with socket.create_connection(("127.0.0.1", port), timeout=5) as smtp:
        assert smtp.recv(100).startswith(b"220 ")  # `inbound` kept its address
