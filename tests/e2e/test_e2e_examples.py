"""Every shipped configuration (default, container, examples) passes `mailmgr check-config`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

CONFIGS = [
    ROOT / "config" / "mailmgr.yaml",
    ROOT / "config" / "container.yaml",
    *sorted((ROOT / "config" / "examples").glob("*.yaml")),
]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailmgr", "check-config", "--config", str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration is valid" in result.stdout
