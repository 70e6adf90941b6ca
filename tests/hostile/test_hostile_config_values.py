"""Values a parser accepts but the config cannot use. Numbers: NaN and infinities (YAML
`.nan`/`.inf`, JSON `NaN`/`Infinity`/`1e400`) compare false against every minimum and maximum,
and an integer of hundreds of digits overflows wherever it becomes a float. Strings: an escaped
lone UTF-16 surrogate is not a character and fails wherever it is encoded. Keys: a list or
mapping as a YAML key. The real `mailmgr check-config` refuses each with one line at the value's
JSON path (not "configuration is valid", not an "internal error", not a traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.hostile.hostile_config_support import assert_refused, mailmgr, write
from tests.support import basic_config

NUMBER_AT = "$.RuleSets[0].Rules[0].Conditions[0].NumberExpression.Value"


def _with_number_condition(tmp_path: Path, value: str) -> Path:
    """basic_config as JSON with a NumberExpression whose Value is the raw JSON `value`."""
    data = basic_config(tmp_path)
    data["IngressPoints"][0].pop("TlsCertificate")
    data["RuleSets"][0]["Rules"][0]["Conditions"] = [{"NumberExpression": {
        "Evaluate": {"Attribute": "MESSAGE_SIZE"}, "Operator": "LESS_THAN", "Value": "@V@"}}]
    return write(tmp_path, json.dumps(data).replace('"@V@"', value), "mailmgr.json")


@pytest.mark.parametrize(("value", "expected"), [
    ("NaN", "expected a finite number, got nan (Double)"),
    ("Infinity", "expected a finite number, got inf (Double)"),
    ("-1e400", "expected a finite number, got -inf (Double)"),
    ("1" + "0" * 400, "is too large (Double)"),
])
def test_non_finite_rule_numbers_are_refused(tmp_path: Path, value: str, expected: str) -> None:
    path = _with_number_condition(tmp_path, value)
    line = assert_refused(mailmgr("check-config", path), 1, f"{path}: {NUMBER_AT}: ", expected)
    assert "internal error" not in line
    assert len(line) < 400


def test_a_finite_rule_number_is_accepted(tmp_path: Path) -> None:
    run = mailmgr("check-config", _with_number_condition(tmp_path, "1e6"))
    assert run.status == 0, run.output[-2000:]


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("ShutdownGraceSeconds", ".nan", "expected a finite number, got nan"),
    ("ShutdownGraceSeconds", ".inf", "expected a finite number, got inf"),
    ("Workers", "1" + "0" * 400, "is too large"),
])
def test_non_finite_server_numbers_are_refused(
    tmp_path: Path, key: str, value: str, expected: str
) -> None:
    data = basic_config(tmp_path)
    data["Server"][key] = "@V@"
    path = write(tmp_path, yaml.safe_dump(data, sort_keys=False).replace("'@V@'", value))
    assert_refused(mailmgr("check-config", path), 1, f"{path}: $.Server.{key}: ", expected)
    assert_refused(mailmgr("serve", path, timeout=30), 2, f"$.Server.{key}: ", expected)


@pytest.mark.parametrize(("suffix", "text"), [
    (".json", '{"RuleSets": [{"RuleSetName": "\\ud800x", "Rules": []}]}'),
    (".json", '{"RuleSets": [{"RuleSetName": "x", "Rules": [], "\\udfff": 1}]}'),
    (".yaml", 'RuleSets:\n  - RuleSetName: "\\udc00"\n    Rules: []\n'),
    (".yaml", 'RuleSets:\n  - RuleSetName: "\\U0000d800"\n    Rules: []\n'),
])
def test_lone_surrogate_escapes_are_refused_at_their_path(
    tmp_path: Path, suffix: str, text: str
) -> None:
    path = write(tmp_path, text, "mailmgr" + suffix)
    line = assert_refused(mailmgr("check-config", path), 1, f"{path}: $")
    # libyaml (used when PyYAML has it) refuses the escape itself, at its line; JSON and the
    # Python YAML parser decode it, and the loader refuses the string at its path.
    assert (f"{path}: $.RuleSets[0]" in line and "escaped UTF-16 surrogate" in line) or (
        f"{path}: $: YAML syntax error at line 2" in line
        and "invalid Unicode character escape code" in line), line
    assert "internal error" not in line


def test_a_surrogate_pair_escape_is_one_character(tmp_path: Path) -> None:
    data = basic_config(tmp_path)
    data["IngressPoints"][0].pop("TlsCertificate")
    data["RuleSets"][0]["Rules"][0]["Actions"][0]["AddHeader"]["HeaderValue"] = "@V@"
    path = write(tmp_path, json.dumps(data).replace("@V@", "smile \\ud83d\\ude00"),
                 "mailmgr.json")
    run = mailmgr("check-config", path)
    assert run.status == 0, run.output[-2000:]


@pytest.mark.parametrize("key", ["[a, b]", "{a: 1}"])
def test_a_collection_as_yaml_key_is_refused(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, f"RuleSets:\n  - ? {key}\n    : 1\n")
    assert_refused(mailmgr("check-config", path), 1, f"{path}: $: YAML syntax error at line 2",
                   "a list or mapping cannot be a key")
    assert_refused(mailmgr("serve", path, timeout=30), 2, "a list or mapping cannot be a key")


def test_an_invalid_listen_address_literal_is_a_located_problem() -> None:
    """Found in review: check-config called `Listen: ["999.1.1.1:25"]` valid; serve failed."""
    from mailmgr.config.fields import parse_host_port

    for text in ("999.1.1.1:25", "[::g]:25", "1.2.3:25"):
        with pytest.raises(ValueError, match="invalid IP address"):
            parse_host_port(text)
    assert parse_host_port("localhost:25").port == 25
