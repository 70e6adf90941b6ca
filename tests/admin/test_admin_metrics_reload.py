"""Config reload metrics over HTTP from a real `mailmgr serve`: SIGHUP with a good file counts a
success and publishes the new config's hash; a bad file counts a failure and keeps the hash."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from metrics_support import Scrape, scrape

from mailmgr.config import load
from mailmgr.reload import config_hash
from tests.support import ServerProcess, basic_config, write_config

RELOADS = "mailmgr_config_reloads_total"


def _hash(after: Scrape) -> str:
    (labels,) = after.labelsets("mailmgr_config_info")  # exactly one label set at a time
    assert after.value("mailmgr_config_info", **labels) == 1
    return labels["hash"]


def _sighup(server: ServerProcess, expect: str) -> None:
    seen = len(server.events)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while not any(e.get("event") == expect for e in server.events[seen:]):
        assert time.monotonic() < deadline, f"no {expect} after SIGHUP"
        time.sleep(0.05)


def test_reloads_count_by_result_and_the_hash_follows_the_config(
    tmp_path: Path, server_factory: Any
) -> None:
    config = basic_config(tmp_path)
    server: ServerProcess = server_factory(config).start()
    first = scrape(server)
    started_with = _hash(first)
    assert len(started_with) == 16 and int(started_with, 16) >= 0
    assert started_with == config_hash(load(server.config_file))  # the documented definition
    assert first.value(RELOADS, result="success") == 0
    assert first.value(RELOADS, result="failure") == 0

    config["TrafficPolicies"][0]["MaxMessageSizeBytes"] = 2_000_000
    write_config(server.config_file, config)
    _sighup(server, "config.reloaded")
    second = scrape(server)
    reloaded_to = _hash(second)
    assert reloaded_to != started_with
    assert reloaded_to == config_hash(load(server.config_file))
    assert (second.value(RELOADS, result="success"), second.value(RELOADS, result="failure")) \
        == (1, 0)
    reloaded = [e for e in server.events if e.get("event") == "config.reloaded"]
    assert reloaded[-1]["config_hash"] == reloaded_to

    server.config_file.write_text("Server: [this is not a mapping\n")
    _sighup(server, "config.reload_failed")
    third = scrape(server)
    assert _hash(third) == reloaded_to  # the running config did not change
    assert (third.value(RELOADS, result="success"), third.value(RELOADS, result="failure")) \
        == (1, 1)
    assert server.stop() == 0


def test_hash_ignores_formatting_and_location_but_not_content(tmp_path: Path) -> None:
    config = basic_config(tmp_path)
    same = load(write_config(tmp_path / "a.yaml", config))
    # The same settings as JSON, keys in another order, in another file: the same config ...
    other = tmp_path / "b.json"
    other.write_text(json.dumps(dict(reversed(list(config.items()))), indent=4))
    assert config_hash(load(other)) == config_hash(same)
    # ... and one changed value gives another hash.
    config["Server"]["Hostname"] = "mx2.test.example"
    assert config_hash(load(write_config(tmp_path / "c.yaml", config))) != config_hash(same)
