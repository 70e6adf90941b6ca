"""Helpers for the config tests: write config files into tmp_path and collect problems.

A uniquely named module (not conftest) so other test areas' conftest files cannot shadow it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailmgr import config
from mailmgr.errors import ConfigError, ConfigProblem

MAILBOX_ARN = "arn:aws:workmail:us-east-1:123456789012:organization/m-1"

BASE: dict[str, Any] = {
    "Server": {"Hostname": "mx.example.test", "Region": "eu-west-1", "AccountId": "123456789012"},
    "IngressPoints": [{
        "IngressPointName": "inbound",
        "Type": "OPEN",
        "RuleSetId": "main",
        "TrafficPolicyId": "default",
        "TlsPolicy": "OPTIONAL",
        "Listen": ["127.0.0.1:0"],
    }],
    "TrafficPolicies": [{
        "TrafficPolicyName": "default", "DefaultAction": "ALLOW", "PolicyStatements": [],
    }],
    "RuleSets": [{
        "RuleSetName": "main",
        "Rules": [{"Name": "archive-all", "Actions": [{"Archive": {"TargetArchive": "default"}}]}],
    }],
    "Archives": [{"ArchiveName": "default"}],
}


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def write(tmp_path: Path, data: Any, name: str = "mailmgr.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    elif name.endswith(".json"):
        path.write_text(json.dumps(data, indent=2))
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def problems_of(path: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.problems, "ConfigError without problems"
    return info.value.problems


Problems = Callable[[dict[str, Any]], list[ConfigProblem]]


def find(problems: list[ConfigProblem], path: str, text: str) -> ConfigProblem:
    """The problem at `path` whose message contains `text` (fails with the full list)."""
    for p in problems:
        if p.path == path and text in p.message:
            return p
    raise AssertionError(f"no problem at {path} containing {text!r}; got:\n"
                         + "\n".join(str(p) for p in problems))
