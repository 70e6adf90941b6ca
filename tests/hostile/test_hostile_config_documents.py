"""Hostile config documents (hostile case 08, class 7): alias and merge-key bombs, oversized,
deeply nested, non-UTF-8, huge numbers, non-files. The real `mailmgr check-config` and
`mailmgr serve` refuse each with one bounded problem line naming the file, exit 1 / 2, quickly,
in bounded memory, without a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmgr.config.documents import MAX_DEPTH, parse_document
from mailmgr.config.fields import MAX_PROBLEMS, MESSAGE_CHARS, PATH_CHARS, Ctx, Sink
from tests.hostile.hostile_config_support import (
    assert_refused,
    config_text,
    mailmgr,
    write,
)

MIB = 1024 * 1024


def _alias_bomb(levels: int = 9) -> str:
    rows = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
        f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return ("AddressLists:\n  - AddressListName: bomb\n    Members:\n"
            + "".join(f"      - {row}\n" for row in rows))


def _merge_bomb(levels: int = 9) -> str:
    rows = ["m0: &m0 {" + ", ".join(f"k{i}: v" for i in range(10)) + "}"] + [
        f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 10) + f"], own{i}: v}}"
        for i in range(1, levels)]
    return ("AddressLists:\n  - AddressListName: bomb\n    Members: []\n    Tags:\n"
            "      - Key: k\n        Value:\n" + "".join(f"          {r}\n" for r in rows))


def test_alias_bomb_is_refused_quickly_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(tmp_path) + _alias_bomb())
    run = mailmgr("check-config", path)
    line = assert_refused(run, 1, str(path), ": $: YAML document refused at line",
                          "aliases expand the document to more than")
    assert run.seconds < 5, (run.seconds, line)
    assert_refused(mailmgr("serve", path, timeout=30), 2, str(path), "aliases expand")


def test_merge_key_bomb_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(tmp_path) + _merge_bomb())
    run = mailmgr("check-config", path)
    assert_refused(run, 1, str(path), "YAML document refused", "aliases expand the document")
    assert run.seconds < 5


def test_a_small_merge_key_still_works(tmp_path: Path) -> None:
    text = config_text(tmp_path) + (
        "AddressLists:\n"
        "  - &base {AddressListName: a, Members: [x@example.test]}\n"
        "  - {<<: *base, AddressListName: b}\n")
    run = mailmgr("check-config", write(tmp_path, text))
    assert run.status == 0, run.output
    assert "Address lists (2):" in run.output, run.output


def test_many_aliases_to_one_large_node_are_refused(tmp_path: Path) -> None:
    big = "[" + ", ".join(f"u{i}@example.test" for i in range(5000)) + "]"
    text = (config_text(tmp_path) + "AddressLists:\n  - AddressListName: wide\n    Members: "
            f"&big {big}\n" + "".join(f"  - {{AddressListName: w{i}, Members: *big}}\n"
                                      for i in range(200)))
    path = write(tmp_path, text)
    assert_refused(mailmgr("check-config", path), 1, str(path), "aliases expand")


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    text = (config_text(tmp_path) + "AddressLists:\n"
            "  - {AddressListName: a, Members: &m [x@example.test, y@example.test]}\n"
            "  - {AddressListName: b, Members: *m}\n")
    run = mailmgr("check-config", write(tmp_path, text))
    assert run.status == 0, run.output


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    text = config_text(tmp_path) + "AddressLists:\n  - AddressListName: r\n    Members: &r [*r]\n"
    path = write(tmp_path, text)
    assert_refused(mailmgr("check-config", path), 1, str(path),
                   "alias *r refers to a node that contains it (recursive)")


@pytest.mark.parametrize("style", ["flow", "block"])
def test_deep_yaml_nesting_is_refused(tmp_path: Path, style: str) -> None:
    depth = 5000 if style == "flow" else 1000  # block indentation grows quadratically
    if style == "flow":
        deep = "Deep: " + "[" * depth + "]" * depth + "\n"
    else:
        deep = "".join("  " * i + "a:\n" for i in range(depth)) + "  " * depth + "b: 1\n"
        deep = "Deep:\n" + "".join("  " + line + "\n" for line in deep.splitlines())
    path = write(tmp_path, config_text(tmp_path) + deep)
    assert_refused(mailmgr("check-config", path), 1, str(path),
                   f"nested more than {MAX_DEPTH} levels deep")


@pytest.mark.parametrize("depth", [200, 100_000])
def test_deep_json_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    path = write(tmp_path, '{"Server": ' + "[" * depth + "]" * depth + "}", "mailmgr.json")
    assert_refused(mailmgr("check-config", path), 1, str(path), "JSON document refused",
                   "nested more than")


def test_oversized_config_is_refused_before_reading(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(tmp_path))
    with path.open("r+b") as file:
        file.truncate(17 * MIB)  # sparse: costs no disk, and is never read
    run = mailmgr("check-config", path)
    assert_refused(run, 1, str(path), "17,825,792 bytes is more than the limit of 16 MiB")
    assert run.seconds < 5
    assert_refused(mailmgr("serve", path), 2, str(path), "16 MiB")


def test_oversized_address_list_file_is_refused(tmp_path: Path) -> None:
    members = tmp_path / "members.csv"
    members.write_text("address\nx@example.test\n")
    with members.open("r+b") as file:
        file.truncate(65 * MIB)
    text = config_text(tmp_path) + "AddressLists:\n  - {AddressListName: big, File: members.csv}\n"
    path = write(tmp_path, text)
    assert_refused(mailmgr("check-config", path), 1, f"{path}: $.AddressLists[0].File:",
                   str(members), "limit of 64 MiB")


def test_non_utf8_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mailmgr.yaml"
    path.write_bytes(config_text(tmp_path).encode() + b"# caf\xe9\n")
    assert_refused(mailmgr("check-config", path), 1, str(path), "not UTF-8 text (byte 0xe9")


def test_directory_as_config_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "mailmgr.yaml"
    folder.mkdir()
    assert_refused(mailmgr("check-config", folder), 1, str(folder), "is a directory")
    assert_refused(mailmgr("serve", folder), 2, str(folder), "is a directory")


def test_fifo_as_config_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "mailmgr.yaml"
    os.mkfifo(fifo)
    assert_refused(mailmgr("check-config", fifo, timeout=20), 1, str(fifo),
                   "not a regular file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file")
def test_unreadable_config_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(tmp_path))
    path.chmod(0)
    assert_refused(mailmgr("check-config", path), 1, str(path), "Permission denied")


@pytest.mark.parametrize(("tail", "expected"), [
    # libyaml (used when PyYAML has it) does not quote the character; the Python parser does.
    ("Extra:\n\t- tab\n", "that cannot start any token"),
    ("Server: {Hostname: a}\n", "duplicate key 'Server'"),
    ("Big: " + "1" * 5000 + "\n", "invalid int value: Exceeds the limit (4300 digits)"),
    ("When: 2024-13-45\n", "invalid timestamp value: month must be in 1..12"),
])
def test_yaml_errors_are_one_located_line(tmp_path: Path, tail: str, expected: str) -> None:
    path = write(tmp_path, config_text(tmp_path) + tail)
    line = assert_refused(mailmgr("check-config", path), 1, str(path), expected)
    assert " at line " in line


def test_huge_json_number_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '{"Server": {"Workers": ' + "9" * 5000 + "}}", "mailmgr.json")
    assert_refused(mailmgr("check-config", path), 1, str(path), "JSON value refused")


def test_huge_values_and_keys_give_short_lines(tmp_path: Path) -> None:
    huge = "a" * 2_000_000
    data = {
        "AddressLists": [{"AddressListName": "l", "Members": ["@" + huge]}],
        "Server": {"Hostname": "mx.test", "DataDirectory": str(tmp_path / "var")},
        f"bad\nkey{huge}": 1,
    }
    path = write(tmp_path, json.dumps(data), "mailmgr.json")
    run = mailmgr("check-config", path)
    assert run.status == 1 and "Traceback" not in run.output
    lines = run.output.splitlines()
    assert max(len(line) for line in lines) <= PATH_CHARS + MESSAGE_CHARS + 20
    assert any("unknown key 'bad\\nkeyaaa" in line for line in lines), run.output[:2000]
    assert any("$.AddressLists[0].Members[0]: invalid address list member '@aaa" in line
               for line in lines), run.output[:2000]


def test_problem_count_is_bounded(tmp_path: Path) -> None:
    members = "".join(f"      - not an address {i}\n" for i in range(3000))
    text = (config_text(tmp_path) + "AddressLists:\n  - AddressListName: l\n    Members:\n"
            + members)
    run = mailmgr("check-config", write(tmp_path, text))
    assert run.status == 1
    lines = run.problem_lines
    assert len(lines) == MAX_PROBLEMS + 1
    assert lines[-1].endswith(f"2,000 more problems not shown (only the first "
                              f"{MAX_PROBLEMS:,} are listed)")


# -- the document parser itself, fuzzed: never an exception, never a long line ----------------

_YAMLISH = st.text(alphabet="ab:-[]{}&*<>!|'\"#,?\t\n 0123456789.\x00é", max_size=300)


@settings(max_examples=int(os.environ.get("MAILMGR_FUZZ_EXAMPLES", "300")), deadline=None)
@given(text=_YAMLISH, suffix=st.sampled_from([".yaml", ".json"]))
def test_parse_document_never_raises(text: str, suffix: str) -> None:
    sink = Sink()
    ok, _ = parse_document(Ctx("f.yaml", Path("."), sink), text, suffix)
    assert ok or sink.problems
    for problem in sink.problems:
        assert "\n" not in str(problem)
        assert len(problem.message) <= MESSAGE_CHARS + 3
