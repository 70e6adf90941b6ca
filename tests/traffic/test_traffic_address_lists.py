"""Address lists loaded through the config and used by a traffic policy's IsInAddressList: each
valid wildcard form matches what it should and nothing else; each invalid form, inline or in a
CSV/JSON file, is a config error with its path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailmgr import config
from mailmgr.config.models import AcceptAction, Config
from mailmgr.errors import ConfigError, ConfigProblem
from mailmgr.message import SessionFacts
from mailmgr.rules.address_lists import build_indexes
from mailmgr.rules.traffic_policy import CompiledTrafficPolicy

PROBES = [
    "user@example.test", "USER@Example.Test", "user2@example.test", "xuser@example.test",
    "user+tag@example.test", "other@example.test", "user@mx.example.test",
    "user@a.b.example.test", "other@mx.example.test", "user@badexample.test",
    "user@example.test.evil", "user@other.test",
]

# member -> the probes it must match; every other probe must not match
FORMS: dict[str, set[str]] = {
    "user@example.test": {"user@example.test", "USER@Example.Test"},
    "example.test": {"user@example.test", "USER@Example.Test", "user2@example.test",
                     "xuser@example.test", "user+tag@example.test", "other@example.test"},
    "*@example.test": {"user@example.test", "USER@Example.Test", "user2@example.test",
                       "xuser@example.test", "user+tag@example.test", "other@example.test"},
    "user*@example.test": {"user@example.test", "USER@Example.Test", "user2@example.test",
                           "user+tag@example.test"},
    "*.example.test": {"user@mx.example.test", "user@a.b.example.test", "other@mx.example.test"},
    "user@*.example.test": {"user@mx.example.test", "user@a.b.example.test"},
}


def document(members: list[str] | None = None, file: str | None = None) -> dict[str, Any]:
    address_list: dict[str, Any] = {"AddressListName": "listed"}
    if members is not None:
        address_list["Members"] = members
    if file is not None:
        address_list["File"] = file
    return {
        "Server": {"Hostname": "mx.example.test"},
        "IngressPoints": [{"IngressPointName": "inbound", "Type": "OPEN", "RuleSetId": "main",
                           "TrafficPolicyId": "gate", "TlsPolicy": "OPTIONAL",
                           "Listen": ["127.0.0.1:0"]}],
        "TrafficPolicies": [{"TrafficPolicyName": "gate", "DefaultAction": "DENY",
                             "PolicyStatements": [{"Action": "ALLOW", "Conditions": [{
                                 "BooleanExpression": {
                                     "Evaluate": {"IsInAddressList": {
                                         "Attribute": "RECIPIENT", "AddressLists": ["listed"]}},
                                     "Operator": "IS_TRUE"}}]}]}],
        "RuleSets": [{"RuleSetName": "main", "Rules": [{"Name": "drop", "Actions": [
            {"Drop": {}}]}]}],
        "AddressLists": [address_list],
    }


def load(tmp_path: Path, data: dict[str, Any]) -> Config:
    path = tmp_path / "mailmgr.yaml"
    path.write_text(yaml.safe_dump(data))
    return config.load(path)


def problems(tmp_path: Path, data: dict[str, Any]) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, data)
    return list(info.value.problems)


def allowed(cfg: Config, recipient: str) -> bool:
    policy = CompiledTrafficPolicy.compile(
        cfg.traffic_policies[0], build_indexes(cfg.address_lists)
    )
    facts = SessionFacts(ingress_point_id="inp-1", ingress_point_name="inbound",
                         peer_ip="192.0.2.1")
    return policy.decide(facts, recipient).decision is AcceptAction.ALLOW


@pytest.mark.parametrize("member", sorted(FORMS))
@pytest.mark.parametrize("source", ["inline", "csv", "json"])
def test_each_form_matches_exactly_what_it_should(
    tmp_path: Path, member: str, source: str
) -> None:
    if source == "inline":
        cfg = load(tmp_path, document([member.upper()]))
    elif source == "csv":
        (tmp_path / "list.csv").write_text(f"address\n{member}\n")
        cfg = load(tmp_path, document(file="list.csv"))
    else:
        (tmp_path / "list.json").write_text(json.dumps({"items": [{"address": member}]}))
        cfg = load(tmp_path, document(file="list.json"))
    matched = {probe for probe in PROBES if allowed(cfg, probe)}
    assert matched == FORMS[member]


INVALID = [
    "*", "**@example.test", "*@*.example.test", "*user@example.test", "us*er@example.test",
    "user@example.*", "user@ex*ample.test", "exa*mple.test", "*example.test", "example.*",
    "user@*example.test", "@example.test", "user@", "*.", "a@b@example.test", "",
    "user @example.test", "user@example..test", "user@-example.test",
]


def test_every_invalid_inline_form_is_reported_at_its_path(tmp_path: Path) -> None:
    found = problems(tmp_path, document(["ok@example.test", *INVALID]))
    by_path = {p.path: p.message for p in found}
    for i, text in enumerate(INVALID, 1):
        message = by_path.get(f"$.AddressLists[0].Members[{i}]")
        assert message is not None, text
        assert message.startswith(f"invalid address list member {text!r}: "), message
    assert len(found) == len(INVALID)


def test_every_invalid_file_form_is_reported_at_its_line(tmp_path: Path) -> None:
    lines = [text for text in INVALID if text and "," not in text]
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("address\nok@example.test\n" + "\n".join(lines) + "\n")
    found = problems(tmp_path, document(file="list.csv"))
    assert {p.file for p in found} == {str(csv_file)}
    assert len(found) == len(lines)
    for line, text in enumerate(lines, 3):
        assert any(f"line {line}" in p.path and repr(text) in p.message for p in found), text

    json_file = tmp_path / "list.json"
    json_file.write_text(json.dumps({"items": [{"address": t} for t in ["ok@x.test", *INVALID]]}))
    found = problems(tmp_path, document(file="list.json"))
    assert {p.file for p in found} == {str(json_file)}
    assert {p.path for p in found} == {
        f"$.items[{i}].address" for i in range(1, len(INVALID) + 1)
    }
