"""With `Server.Processes: 2` the supervisor answers the Mail Manager API: a change is persisted
once and every worker applies it (SIGHUP), so every connection, whichever worker takes it, sees
the new rules."""

from __future__ import annotations

from pathlib import Path

from tests.api.conftest import ApiServer
from tests.fleet.processes_support import fleet_config, send, start, wait_archived
from tests.support import archived_text


def test_an_api_change_reaches_every_worker(tmp_path: Path) -> None:
    server = start(tmp_path, fleet_config(tmp_path, 2))
    try:
        client = ApiServer(server, tmp_path).client()
        main = client.list_rule_sets()["RuleSets"][0]["RuleSetId"]
        seen = len(server.events)
        client.update_rule_set(RuleSetId=main, Rules=[{"Name": "stamp", "Actions": [
            {"AddHeader": {"HeaderName": "X-Api", "HeaderValue": "fleet"}},
            {"Archive": {"TargetArchive": "default"}}]}])
        for worker in (0, 1):  # both workers reload
            server.after("config.reloaded", seen, worker=worker)
        # new connections spread over both workers (SO_REUSEPORT): all carry the new header
        subjects = [f"fleet-{i}" for i in range(12)]
        for subject in subjects:
            send(server.port, subject)
        wait_archived(server.config_file, len(subjects))
        for subject in subjects:
            assert "X-Api: fleet" in archived_text(server, subject)
        workers = {e.get("worker") for e in server.events
                   if e.get("event") == "message.processed"}
        assert workers <= {0, 1} and workers
        assert client.get_rule_set(RuleSetId=main)["Rules"][0]["Name"] == "stamp"
    finally:
        server.stop()
