"""With `Server.Processes: 2` the supervisor answers the Mail Manager API: a change is persisted
once and every worker applies it (SIGHUP), so every connection, whichever worker takes it, sees
the new rules."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import ApiServer
from tests.fleet.processes_support import fleet_config, send, start, wait_archived
from tests.support import archived_text


def test_an_api_change_reaches_every_worker(tmp_path: Path) -> None:
    server = start(tmp_path, fleet_config(tmp_path, 2))
    try:
        client = ApiServer(server, tmp_path).client()
        main = client.list_rule_sets()["RuleSets"][0]["RuleSetId"]
        seen = len(server.events)
        client.update_rule_set(RuleSetId=main, RuleSetName="fleet-rules", Rules=[{
            "Name": "stamp", "Actions": [
                {"AddHeader": {"HeaderName": "X-Api", "HeaderValue": "fleet"}},
                {"Archive": {"TargetArchive": "default"}}]}])
        for worker in (0, 1):  # both workers reload
            server.after("config.reloaded", seen, worker=worker)
        # new connections spread over both workers (SO_REUSEPORT): every one runs the new rules
        ids = {send(server.port, f"fleet-{i}") for i in range(12)}
        deadline = time.monotonic() + 15
        processed: dict[str, dict[str, object]] = {}
        while len(processed) < len(ids) and time.monotonic() < deadline:
            processed = {str(e["message_id"]): e for e in server.events[seen:]
                         if e.get("event") == "message.processed" and e["message_id"] in ids}
            time.sleep(0.05)
        assert set(processed) == ids
        assert {e["rule_set"] for e in processed.values()} == {"fleet-rules"}
        assert {e.get("worker") for e in processed.values()} <= {0, 1}
        assert "X-Api: fleet" in archived_text(server, "fleet-0")
        assert client.get_rule_set(RuleSetId=main)["Rules"][0]["Name"] == "stamp"
        # every worker binds a new point itself: port 0 would give each another port
        with pytest.raises(client.exceptions.ValidationException) as zero:
            client.create_ingress_point(
                IngressPointName="zero", Type="OPEN", RuleSetId=main,
                TrafficPolicyId="allow-all", Tags=[{"Key": "mailmgr:Listen",
                                                    "Value": "127.0.0.1:0"}])
        assert "port 0" in str(zero.value)
    finally:
        server.stop()


def test_archive_search_and_download_through_the_supervisor(tmp_path: Path) -> None:
    """The supervisor opens no archive: it hands archive operations and download links to a
    worker, as they came (SigV4 verified there too)."""
    secret = tmp_path / "api-secret"
    secret.write_text("s3cret-for-the-fleet\n")
    config = fleet_config(tmp_path, 2)
    config["Server"]["Admin"]["Credentials"] = {"AccessKeyId": "AKIDFLEET",
                                                "SecretAccessKeyFile": str(secret)}
    server = start(tmp_path, config)
    try:
        client = ApiServer(server, tmp_path).client("AKIDFLEET", "s3cret-for-the-fleet")
        subjects = [f"find-me-{i}" for i in range(6)]
        for subject in subjects:
            send(server.port, subject)
        wait_archived(server.config_file, len(subjects))
        archive = client.list_archives()["Archives"][0]["ArchiveId"]
        now = time.time()
        search = client.start_archive_search(
            ArchiveId=archive, FromTimestamp=now - 3600, ToTimestamp=now + 3600,
            MaxResults=100, Filters={"Include": [{"StringExpression": {
                "Evaluate": {"Attribute": "SUBJECT"}, "Operator": "CONTAINS",
                "Values": ["find-me"]}}]})["SearchId"]
        deadline = time.monotonic() + 10
        while client.get_archive_search(SearchId=search)["Status"]["State"] != "COMPLETED":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        rows = client.get_archive_search_results(SearchId=search)["Rows"]
        assert sorted(r["Subject"] for r in rows) == subjects
        link = client.get_archive_message(
            ArchivedMessageId=rows[0]["ArchivedMessageId"])["MessageDownloadLink"]
        assert link.startswith(f"http://127.0.0.1:{server.admin_port}/api/archive-messages/")
        with urllib.request.urlopen(link, timeout=10) as answer:
            assert f"Subject: {rows[0]['Subject']}" in answer.read().decode()
        wrong = ApiServer(server, tmp_path).client("AKIDFLEET", "wrong")
        with pytest.raises(ClientError) as refused:
            wrong.get_archive_search(SearchId=search)
        assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"
    finally:
        server.stop()
