"""Address-list members: every form parses and matches; invalid ones are reported with paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from config_helpers import base, find, problems_of, write

from mailmgr import config
from mailmgr.config.addresses import MemberKind, MemberPattern, parse_member


@pytest.mark.parametrize(("text", "expected"), [
    ("User@Example.COM", MemberPattern(MemberKind.ADDRESS, "user", "example.com")),
    ("Example.com", MemberPattern(MemberKind.DOMAIN, "", "example.com")),
    ("*@example.com", MemberPattern(MemberKind.ANY_LOCAL, "", "example.com")),
    ("user*@example.com", MemberPattern(MemberKind.LOCAL_PREFIX, "user", "example.com")),
    ("*.Example.com", MemberPattern(MemberKind.SUBDOMAIN, "", "example.com")),
    ("user@*.example.com", MemberPattern(MemberKind.LOCAL_AT_SUBDOMAIN, "user", "example.com")),
])
def test_valid_forms(text: str, expected: MemberPattern) -> None:
    assert parse_member(text) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("*", "bare '*'"),
    ("*@*.example.com", "at most one '*'"),
    ("u*s*@example.com", "at most one '*'"),
    ("*user@example.com", "'*' is allowed only"),
    ("us*er@example.com", "'*' is allowed only"),
    ("user@example.*", "'*' is allowed only"),
    ("user@ex*ample.com", "'*' is allowed only"),
    ("exa*mple.com", "'*' is allowed only"),
    ("@example.com", "local part is empty"),
    ("user@", "domain is empty"),
    ("*.", "domain is empty"),
    ("user @example.com", "whitespace"),
    ("", "empty member"),
    ("a@b@c", "more than one '@'"),
    ("user@example..com", "empty label"),
    ("user@exa_mple!.com", "invalid character"),
])
def test_invalid_forms(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_member(text)
    assert reason in str(info.value)


@pytest.mark.parametrize(("member", "address", "expected"), [
    ("user@example.com", "USER@example.com", True),
    ("user@example.com", "user2@example.com", False),
    ("example.com", "any@Example.com", True),
    ("example.com", "any@sub.example.com", False),
    ("*@example.com", "x@example.com", True),
    ("user*@example.com", "user+tag@example.com", True),
    ("user*@example.com", "xuser@example.com", False),
    ("*.example.com", "a@mx.example.com", True),
    ("*.example.com", "a@example.com", False),
    ("*.example.com", "a@badexample.com", False),
    ("user@*.example.com", "user@a.b.example.com", True),
    ("user@*.example.com", "other@a.example.com", False),
])
def test_matching(member: str, address: str, expected: bool) -> None:
    assert parse_member(member).matches(address) is expected


def _with_list(**fields: object) -> dict[str, object]:
    data = base()
    data["AddressLists"] = [{"AddressListName": "vip", **fields}]
    return data


def test_inline_invalid_members_have_paths(tmp_path: Path) -> None:
    found = problems_of(write(tmp_path, _with_list(Members=["ok@example.com", "*", "a b@c.d"])))
    find(found, "$.AddressLists[0].Members[1]", "invalid address list member '*': a bare '*'")
    find(found, "$.AddressLists[0].Members[2]", "whitespace")
    assert len(found) == 2


def test_csv_file(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "vip.csv").write_text("address\nA@Example.com\n\n*.board.test\n")
    cfg = config.load(write(tmp_path, _with_list(Members=["x@y.z", "a@example.com"],
                                                File="lists/vip.csv")))
    assert cfg.address_lists[0].members == ("x@y.z", "a@example.com", "*.board.test")


def test_csv_file_problems(tmp_path: Path) -> None:
    csv_file = tmp_path / "vip.csv"
    csv_file.write_text("address\nok@example.com\nbad*x@example.com\n")
    found = problems_of(write(tmp_path, _with_list(File="vip.csv")))
    p = find(found, "line 3", "invalid address list member 'bad*x@example.com'")
    assert p.file == str(csv_file)
    csv_file.write_text("email\nok@example.com\n")
    p = find(problems_of(write(tmp_path, _with_list(File="vip.csv"))), "line 1",
             "expected a CSV header line 'address'")
    assert p.file == str(csv_file)


def test_json_file(tmp_path: Path) -> None:
    (tmp_path / "vip.json").write_text(json.dumps({"items": [
        {"address": "a@example.com"}, {"address": "*@b.example"}]}))
    cfg = config.load(write(tmp_path, _with_list(File="vip.json")))
    assert cfg.address_lists[0].members == ("a@example.com", "*@b.example")


def test_json_file_problems(tmp_path: Path) -> None:
    json_file = tmp_path / "vip.json"
    json_file.write_text(json.dumps({"items": [{"address": "a@example.com"},
                                               {"address": "a@*"}, {"mail": "x"}]}))
    found = problems_of(write(tmp_path, _with_list(File="vip.json")))
    assert find(found, "$.items[1].address", "invalid address list member").file == str(json_file)
    assert find(found, "$.items[2]", 'expected {"address": ...}').file == str(json_file)


def test_missing_list_file(tmp_path: Path) -> None:
    path = write(tmp_path, _with_list(File="nope.csv"))
    p = find(problems_of(path), "$.AddressLists[0].File", "file not found")
    assert p.file == str(path)
