"""Shared fixtures (helpers live in tests/support.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess, write_config


@pytest.fixture
def server_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    started: list[ServerProcess] = []

    def make(config: dict[str, Any], name: str = "mailmgr.yaml") -> ServerProcess:
        server = ServerProcess(write_config(tmp_path / name, config))
        started.append(server)
        return server

    yield make
    for server in started:
        if server.proc and server.proc.poll() is None:
            server.stop()
