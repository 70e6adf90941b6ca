"""SIGHUP re-reads the config file: a rule set change applies to the next message; an invalid file
is refused with every problem logged and the old config keeps running; restart-only settings warn.
"""

from __future__ import annotations

import copy
from pathlib import Path

from reload_support import archived, reload, send

from tests.support import basic_config, write_config


def test_rule_set_change_applies_to_the_next_message(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    config = basic_config(tmp_path)
    server = server_factory(config).start()
    send(server.port, "before reload")
    assert "X-Reloaded" not in archived(server, "before reload")

    changed = copy.deepcopy(config)
    changed["RuleSets"][0]["Rules"][0]["Actions"].insert(
        0, {"AddHeader": {"HeaderName": "X-Reloaded", "HeaderValue": "v2"}})
    changed["Server"]["Workers"] = 3  # restart-only: warned about, the rest still applies
    event = reload(server, changed)
    assert event["rule_sets"] == 1
    assert event["updated"] == ["inbound"] and event["added"] == event["removed"] == []
    warning = server.wait_for("config.reload_restart_needed")
    assert warning["keys"] == ["Workers"] and warning["level"] == "WARNING"

    send(server.port, "after reload")
    text = archived(server, "after reload")
    assert "X-Reloaded: v2" in text
    assert "X-Mailmgr-Processed: yes" in text
    assert "X-Reloaded" not in archived(server, "before reload")
    assert server.stop() == 0


def test_invalid_config_is_refused_and_the_old_one_keeps_running(
    tmp_path: Path, server_factory  # type: ignore[no-untyped-def]
) -> None:
    config = basic_config(tmp_path)
    server = server_factory(config).start()
    broken = copy.deepcopy(config)
    broken["TrafficPolicies"][0]["DefaultAction"] = "MAYBE"
    broken["RuleSets"][0]["Rules"][0]["Actions"] = [
        {"AddHeader": {"HeaderName": "X-Broken", "HeaderValue": "yes"}},
        {"Archive": {"TargetArchive": "no-such-archive"}},
    ]
    event = reload(server, broken, expect="config.reload_failed")
    assert event["level"] == "ERROR"
    assert event["count"] == len(event["problems"]) >= 2
    source = str(server.config_file)
    assert all(p.startswith(f"{source}: $.") for p in event["problems"])
    assert any("$.TrafficPolicies[0].DefaultAction" in p for p in event["problems"])
    assert any("no-such-archive" in p for p in event["problems"])
    assert not any("Traceback" in line for line in server.raw)
    assert not [e for e in server.events if e.get("event") == "config.reloaded"]

    send(server.port, "still old")  # the old rules and the old traffic policy run
    valid = write_config(tmp_path / "valid.yaml", config)  # the CLI needs a valid file
    text = archived(server, "still old", valid)
    assert "X-Mailmgr-Processed: yes" in text and "X-Broken" not in text
    assert server.proc is not None and server.proc.poll() is None
    assert server.stop() == 0
