"""Fixtures for the Mail Manager API tests: a real `mailmgr serve` with its admin listener, and
boto3 clients pointed at it (what `--endpoint-url` / AWS_ENDPOINT_URL_MAILMANAGER do)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from tests.support import ServerProcess, basic_config

REGION = "us-east-1"


@dataclass
class ApiServer:
    server: ServerProcess
    tmp_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.admin_port}"

    def client(self, key: str = "AKIDLOCAL", secret: str = "unused", **config: Any) -> Any:
        """A boto3 `mailmanager` client on this server (no retries: a test sees every error)."""
        return boto3.client(
            "mailmanager", region_name=REGION, endpoint_url=self.url,
            aws_access_key_id=key, aws_secret_access_key=secret,
            config=BotoConfig(retries={"max_attempts": 1}, **config))


@pytest.fixture
def api_server(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> ApiServer:
    """The default-shaped config (ingress point `inbound`, rule set `main`, archive `default`)
    running; its state file lands under tmp_path/var."""
    server = server_factory(basic_config(tmp_path)).start()
    return ApiServer(server, tmp_path)


@pytest.fixture
def api_server_factory(server_factory: Callable[..., ServerProcess], tmp_path: Path
                       ) -> Callable[[dict[str, Any]], ApiServer]:
    """Start a server on any config (e.g. basic_config(tmp_path) with changes)."""
    def make(config: dict[str, Any]) -> ApiServer:
        return ApiServer(server_factory(config).start(), tmp_path)
    return make
