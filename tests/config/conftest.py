"""Fixtures for the config tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from config_helpers import Problems, problems_of, write

from mailmgr.errors import ConfigProblem


@pytest.fixture
def problems(tmp_path: Path) -> Problems:
    """Write `data` as mailmgr.yaml and return the problems it raises."""

    def run(data: dict[str, Any]) -> list[ConfigProblem]:
        return problems_of(write(tmp_path, data))

    return run
