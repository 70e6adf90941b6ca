"""The total-read budget of one config load (documents.MAX_TOTAL_BYTES): per-file limits alone
let a config name the same large address-list file in many lists, multiplying the work and the
memory. The real `mailmgr check-config` / `serve` refuse the file that crosses the budget with
one line naming it and its JSON path."""

from __future__ import annotations

import json
from pathlib import Path

from mailmgr.config.documents import MAX_MEMBER_FILE_BYTES, MAX_TOTAL_BYTES
from tests.hostile.hostile_config_support import assert_refused, config_text, mailmgr, write

MIB = 1024 * 1024


def _member_file(tmp_path: Path, size: int) -> Path:
    """A valid AWS JSON import file (one member) padded to `size` bytes: cheap to parse, so the
    test measures the budget, not the member parser."""
    head = json.dumps({"items": [{"address": "a@example.test"}], "pad": ""})
    path = tmp_path / "members.json"
    path.write_text(head[:-2] + "x" * (size - len(head)) + '"}')
    return path


def _config(tmp_path: Path, lists: int) -> Path:
    text = config_text(tmp_path) + "AddressLists:\n" + "".join(
        f"  - {{AddressListName: l{i}, File: members.json}}\n" for i in range(lists))
    return write(tmp_path, text)


def test_the_same_large_file_in_many_lists_is_refused_once_over_budget(tmp_path: Path) -> None:
    size = 45 * MIB
    assert size <= MAX_MEMBER_FILE_BYTES and 2 * size < MAX_TOTAL_BYTES < 3 * size
    members = _member_file(tmp_path, size)

    ok = mailmgr("check-config", _config(tmp_path, 2))
    assert ok.status == 0, ok.output[-2000:]  # two reads fit the budget

    path = _config(tmp_path, 3)
    run = mailmgr("check-config", path)
    assert_refused(run, 1, f"{path}: $.AddressLists[2].File: cannot read {members}",
                   f"total more than {MAX_TOTAL_BYTES // MIB} MiB")
    assert run.seconds < 20, run.seconds
    assert_refused(mailmgr("serve", path, timeout=60), 2, "$.AddressLists[2].File:",
                   "total more than")


def test_many_lists_past_the_budget_give_a_bounded_report(tmp_path: Path) -> None:
    _member_file(tmp_path, 45 * MIB)
    run = mailmgr("check-config", _config(tmp_path, 40))
    assert "Traceback" not in run.output and run.status == 1, run.output[-2000:]
    over = [line for line in run.problem_lines if "total more than" in line]
    # Lists 2..39 are refused without being read: the run stays fast.
    assert [line.split(": ")[1] for line in over] == [
        f"$.AddressLists[{i}].File" for i in range(2, 40)]
    assert run.seconds < 20, run.seconds
