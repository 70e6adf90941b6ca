"""`Server.Admin`: defaults, validation with located problems, the token file read at load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mailmgr import config
from mailmgr.config.models import ListenAddress
from mailmgr.errors import ConfigError, ConfigProblem
from tests.support import basic_config


def _write(tmp_path: Path, admin: Any | None) -> Path:
    data = basic_config(tmp_path)
    if admin is None:
        del data["Server"]["Admin"]
    else:
        data["Server"]["Admin"] = admin
    path = tmp_path / "mailmgr.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))  # not write_config: no Admin default
    return path


def _problems(tmp_path: Path, admin: Any) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        config.load(_write(tmp_path, admin))
    return info.value.problems


def _only(problems: list[ConfigProblem], path: str) -> str:
    found = [p.message for p in problems if p.path == path]
    assert found, f"no problem at {path}: {problems}"
    return found[0]


def test_defaults_listen_on_loopback_9025_with_5_s_drain_and_no_token(tmp_path):
    admin = config.load(_write(tmp_path, None)).server.admin
    assert admin.listen == (ListenAddress("127.0.0.1", 9025),)
    assert admin.drain_seconds == 5.0
    assert admin.token is None


def test_empty_listen_turns_it_off_and_values_are_read(tmp_path):
    (tmp_path / "token").write_text("s3cret-Token\n")
    admin = config.load(_write(tmp_path, {"Listen": [], "TokenFile": "token",
                                          "DrainSeconds": 0})).server.admin
    assert admin.listen == ()
    assert admin.drain_seconds == 0
    assert admin.token == "s3cret-Token"
    assert "s3cret" not in repr(admin)


def test_ipv6_and_several_addresses(tmp_path):
    admin = config.load(_write(tmp_path, {"Listen": ["[::1]:0", "127.0.0.1:9100"]})).server.admin
    assert admin.listen == (ListenAddress("::1", 0), ListenAddress("127.0.0.1", 9100))


@pytest.mark.parametrize(("admin", "path", "text"), [
    ({"Listen": ["127.0.0.1"]}, "$.Server.Admin.Listen[0]", "host:port"),
    ({"Listen": ["127.0.0.1:99999"]}, "$.Server.Admin.Listen[0]", "invalid port"),
    ({"Listen": ["999.1.1.1:9025"]}, "$.Server.Admin.Listen[0]", "invalid IP"),
    ({"Listen": "127.0.0.1:9025"}, "$.Server.Admin.Listen", "list"),
    ({"DrainSeconds": -1}, "$.Server.Admin.DrainSeconds", ""),
    ({"DrainSeconds": "soon"}, "$.Server.Admin.DrainSeconds", ""),
    ({"TokenFile": "missing-token"}, "$.Server.Admin.TokenFile", "cannot read"),
    ({"Port": 9025}, "$.Server.Admin", "Port"),
    ("on", "$.Server.Admin", ""),
])
def test_bad_values_give_located_problems(tmp_path, admin, path, text):
    assert text in _only(_problems(tmp_path, admin), path)


@pytest.mark.parametrize("content", [b"", b"  \n", b"two words", b"\xff\xfe", b"x" * 5000])
def test_bad_token_files_are_refused_without_echoing_them(tmp_path, content):
    (tmp_path / "token").write_bytes(content)
    message = _only(_problems(tmp_path, {"TokenFile": "token"}), "$.Server.Admin.TokenFile")
    assert "two words" not in message and "xxxx" not in message
