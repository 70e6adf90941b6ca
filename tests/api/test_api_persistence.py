"""Where API changes live: without SharedState a state file under DataDirectory, loaded on top of
the config file (per resource: the operator's later edits to other resources still apply) and
printed by `mailmgr config export`; with SharedState a new version of the fleet's shared document
that every replica applies."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.api.conftest import ApiServer
from tests.fleet.fleet_config_support import local_config
from tests.state.postgres_support import PostgresInstance
from tests.support import ROOT, ServerProcess, cli, write_config


def _rule_set(client: Any, name: str, value: str) -> str:
    return str(client.create_rule_set(RuleSetName=name, Rules=[{"Name": "r", "Actions": [
        {"AddHeader": {"HeaderName": "X-Api", "HeaderValue": value}}]}])["RuleSetId"])


def test_export_prints_the_file_with_the_api_changes_and_it_loads(
        api_server: ApiServer, tmp_path: Path) -> None:
    client = api_server.client()
    made = _rule_set(client, "from-api", "x")
    main = client.list_rule_sets()["RuleSets"][0]["RuleSetId"]
    client.update_rule_set(RuleSetId=main, RuleSetName="main-renamed")
    config = api_server.server.config_file
    exported = cli(config, "config", "export")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith(f"# effective configuration of {config} (with the API's "
                                      "changes in")
    document = yaml.safe_load(exported.stdout)
    by_id = {r.get("RuleSetId"): r for r in document["RuleSets"]}
    assert by_id[made]["RuleSetName"] == "from-api"
    assert by_id[main]["RuleSetName"] == "main-renamed"
    # the export is a config file that runs the same resources
    copy = tmp_path / "exported.yaml"
    copy.write_text(exported.stdout)
    checked = cli(copy, "check-config")
    assert checked.returncode == 0, checked.stderr
    assert made in checked.stdout and main in checked.stdout


def test_operator_edits_to_untouched_resources_still_apply(
        api_server: ApiServer, tmp_path: Path) -> None:
    client = api_server.client()
    _rule_set(client, "from-api", "x")
    assert api_server.server.stop() == 0
    config = api_server.server.config_file
    data = yaml.safe_load(config.read_text())
    data["Archives"].append({"ArchiveName": "added-in-file", "Storage": {"Local": {}}})
    config.write_text(yaml.safe_dump(data))
    again = ServerProcess(config).start()
    try:
        client = ApiServer(again, tmp_path).client()
        names = {a["ArchiveName"] for a in client.list_archives()["Archives"]}
        assert names == {"default", "added-in-file"}
        assert {r["RuleSetName"] for r in client.list_rule_sets()["RuleSets"]} == {
            "main", "from-api"}
    finally:
        again.stop()


def test_a_corrupt_state_file_stops_start_up_with_its_name(api_server: ApiServer,
                                                           tmp_path: Path) -> None:
    _rule_set(api_server.client(), "from-api", "x")
    assert api_server.server.stop() == 0
    state = tmp_path / "var" / "api-state.json"
    state.write_text("{not json")
    checked = cli(api_server.server.config_file, "config", "export")
    assert checked.returncode == 1
    assert str(state) in checked.stderr and "Traceback" not in checked.stderr
    served = subprocess.run(
        [sys.executable, "-m", "mailmgr", "serve", "--config", str(api_server.server.config_file)],
        capture_output=True, text=True, cwd=ROOT, timeout=30, stdin=subprocess.DEVNULL)
    assert served.returncode == 2
    assert str(state) in served.stderr and "Traceback" not in served.stderr


def test_with_shared_state_a_change_is_a_push_every_replica_applies(
        tmp_path: Path, postgres: PostgresInstance) -> None:
    dsn = postgres.fresh_database()
    replicas = [ServerProcess(write_config(tmp_path / f"{name}.yaml",
                                           local_config(tmp_path, dsn, name))).start()
                for name in ("r1", "r2")]
    try:
        client = ApiServer(replicas[0], tmp_path).client()
        made = _rule_set(client, "shared-api", "s")
        shown = cli(replicas[0].config_file, "config", "show", "--json")
        assert shown.returncode == 0, shown.stderr
        stored = json.loads(shown.stdout)
        assert stored["pushed_by"].startswith("mailmgr-api@")
        assert made in json.dumps(stored["document"]["RuleSets"])
        # the other replica has it within 10 s (interface.md) and answers for it
        other = ApiServer(replicas[1], tmp_path).client()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(e.get("event") == "config.reloaded" for e in replicas[1].events):
                break
            time.sleep(0.1)
        got = other.get_rule_set(RuleSetId=made)
        assert got["RuleSetName"] == "shared-api"
        assert got["CreatedDate"] == client.get_rule_set(RuleSetId=made)["CreatedDate"]
    finally:
        for replica in replicas:
            replica.stop()
    assert not (tmp_path / "r1" / "var" / "api-state.json").exists()


def test_check_config_validates_the_file_with_the_api_changes(api_server: ApiServer) -> None:
    client = api_server.client()
    made = str(client.create_rule_set(RuleSetName="archives", Rules=[{"Name": "r", "Actions": [
        {"Archive": {"TargetArchive": "default"}}]}])["RuleSetId"])
    config = api_server.server.config_file
    checked = cli(config, "check-config")
    assert checked.returncode == 0, checked.stderr
    assert "changes made through the Mail Manager API" in checked.stdout
    assert made in checked.stdout
    # the operator removes the archive the API's rule set uses: check-config says where
    assert api_server.server.stop() == 0
    data = yaml.safe_load(config.read_text())
    data["Archives"] = []
    data["RuleSets"][0]["Rules"][0]["Actions"] = data["RuleSets"][0]["Rules"][0]["Actions"][:1]
    config.write_text(yaml.safe_dump(data))
    broken = cli(config, "check-config")
    assert broken.returncode == 1
    assert "api-state.json (changes made through the API)" in broken.stderr
    assert "TargetArchive" in broken.stderr and "Traceback" not in broken.stderr
