"""Fixtures for secure-ingress tests: one test PKI per session, one real `mailmgr serve` with
every secure ingress point per module, and moto's Secrets Manager."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from secure_support import Pki, make_pki, secure_config

from tests.support import ServerProcess, write_config


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("secure")
    server = ServerProcess(write_config(folder / "mailmgr.yaml", secure_config(folder, pki)))
    server.start()
    yield server
    server.stop()



@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path
