"""The `ProxyProtocol` extension key of an ingress point: CIDRs, TimeoutSeconds, located errors."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from config_helpers import Problems, base, find, write

from mailmgr import config
from mailmgr.config.models import ProxyProtocol

INGRESS = "$.IngressPoints[0]"


def _ingress(**changes: Any) -> dict[str, Any]:
    data = base()
    data["IngressPoints"][0].update(changes)
    return data


def test_absent_is_off(tmp_path: Path) -> None:
    assert config.load(write(tmp_path, base())).ingress_points[0].proxy_protocol is None


def test_parsed_with_default_timeout(tmp_path: Path) -> None:
    data = _ingress(ProxyProtocol={"TrustedSources": ["10.0.0.0/8", "2001:db8::/32"]})
    point = config.load(write(tmp_path, data)).ingress_points[0]
    assert point.proxy_protocol == ProxyProtocol(
        (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")), 5.0)
    data = _ingress(ProxyProtocol={"TrustedSources": ["127.0.0.1/32"], "TimeoutSeconds": 2.5})
    point = config.load(write(tmp_path, data)).ingress_points[0]
    assert point.proxy_protocol is not None and point.proxy_protocol.timeout_seconds == 2.5


@pytest.mark.parametrize(("value", "path", "reason"), [
    ({"TrustedSources": ["10.0.0.1/8"]}, ".TrustedSources[0]", "is not a CIDR"),
    ({"TrustedSources": ["nope"]}, ".TrustedSources[0]", "is not a CIDR"),
    ({"TrustedSources": [7]}, ".TrustedSources[0]", "expected a string"),
    ({"TrustedSources": []}, "", "needs TrustedSources"),
    ({}, "", "needs TrustedSources"),
    ({"TrustedSources": ["10.0.0.0/8"], "TimeoutSeconds": 0}, ".TimeoutSeconds",
     "greater than 0"),
    ({"TrustedSources": ["10.0.0.0/8"], "TimeoutSeconds": -1}, ".TimeoutSeconds", "minimum"),
    ({"TrustedSources": ["10.0.0.0/8"], "TimeoutSeconds": 1000}, ".TimeoutSeconds", "maximum"),
    ({"TrustedSources": ["10.0.0.0/8"], "TimeoutSeconds": "5"}, ".TimeoutSeconds",
     "expected a number"),
    ({"TrustedSources": ["10.0.0.0/8"], "Other": 1}, "", "Other"),
    (["10.0.0.0/8"], "", "expected a mapping"),
])
def test_bad_proxy_protocol(problems: Problems, value: Any, path: str, reason: str) -> None:
    found = problems(_ingress(ProxyProtocol=value))
    find(found, f"{INGRESS}.ProxyProtocol{path}", reason)
