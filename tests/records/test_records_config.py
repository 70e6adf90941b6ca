"""`Server.Log.Records`: absent or `none` is off, `mailmanager` is on, anything else stops
`mailmgr check-config` (and start-up) with the file, the JSON path and what is wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailmgr import config
from mailmgr.errors import ConfigError
from tests.support import ROOT, basic_config


def _write(tmp_path: Path, records: Any | None) -> Path:
    data = basic_config(tmp_path)
    if records is not None:
        data["Server"]["Log"]["Records"] = records
    path = tmp_path / "mailmgr.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(("records", "on"), [(None, False), ("none", False),
                                             ("mailmanager", True)])
def test_values(tmp_path: Path, records: str | None, on: bool) -> None:
    assert config.load(_write(tmp_path, records)).server.log_records is on


@pytest.mark.parametrize(("records", "message"), [
    ("cloudwatch", "'cloudwatch' is not one of none, mailmanager"),
    ("MailManager", "'MailManager' is not one of none, mailmanager"),
    (True, "expected a non-empty string, got boolean"),
])
def test_bad_value_is_located(tmp_path: Path, records: Any, message: str) -> None:
    path = _write(tmp_path, records)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    (problem,) = info.value.problems
    assert (problem.file, problem.path) == (str(path), "$.Server.Log.Records")
    assert problem.message.startswith(message.split(", got")[0])


def test_check_config_prints_file_and_path_without_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, "cloudwatch")
    done = subprocess.run(
        [sys.executable, "-m", "mailmgr", "check-config", "--config", str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert done.returncode == 1  # check-config: 1 for an invalid file
    output = done.stdout + done.stderr
    assert f"{path}: $.Server.Log.Records: 'cloudwatch' is not one of none, mailmanager" in output
    assert "Traceback" not in output
