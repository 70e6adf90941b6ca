"""The Mail Manager API drives a running server (boto3, AWS JSON 1.0): resources created, updated
and deleted through it act on live SMTP traffic, errors are the modelled ones, ClientToken
replays, and a restart keeps everything (the state file under DataDirectory)."""

from __future__ import annotations

import json
import smtplib
import socket
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import ApiServer
from tests.support import ServerProcess, archived_text, basic_config, cli

BLOCKED = "blocked@example.com"


def _rules(value: str) -> list[dict[str, Any]]:
    return [{"Name": "stamp", "Actions": [
        {"AddHeader": {"HeaderName": "X-Api", "HeaderValue": value}},
        {"Archive": {"TargetArchive": "default"}}]}]


def _create_stack(client: Any, name: str = "api") -> dict[str, str]:
    tp = client.create_traffic_policy(
        TrafficPolicyName=f"{name}-tp", DefaultAction="ALLOW",
        PolicyStatements=[{"Action": "DENY", "Conditions": [{"StringExpression": {
            "Evaluate": {"Attribute": "RECIPIENT"}, "Operator": "EQUALS",
            "Values": [BLOCKED]}}]}])["TrafficPolicyId"]
    rs = client.create_rule_set(RuleSetName=f"{name}-rs", Rules=_rules("v1"))["RuleSetId"]
    ip = client.create_ingress_point(
        IngressPointName=f"{name}-in", Type="OPEN", RuleSetId=rs, TrafficPolicyId=tp,
        Tags=[{"Key": "mailmgr:Listen", "Value": "127.0.0.1:0"}])["IngressPointId"]
    return {"tp": tp, "rs": rs, "ip": ip}


def _port(client: Any, point_id: str) -> int:
    record = client.get_ingress_point(IngressPointId=point_id)["ARecord"]
    return int(record.rsplit(":", 1)[1])


def _send(port: int, subject: str, rcpt: str = "bob@example.com") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail("alice@example.net", [rcpt],
                      f"From: alice@example.net\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\n"
                      "hello\r\n")


def _header(server: ServerProcess, subject: str) -> str:
    text = archived_text(server, subject)
    return next(line for line in text.splitlines() if line.startswith("X-Api:"))


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_created_resources_act_on_smtp_and_updates_apply_to_the_next_message(
        api_server: ApiServer) -> None:
    client = api_server.client()
    ids = _create_stack(client)
    port = _port(client, ids["ip"])
    assert port != api_server.server.port
    _send(port, "first")
    assert _header(api_server.server, "first") == "X-Api: v1"
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        _send(port, "denied", BLOCKED)
    assert refused.value.recipients[BLOCKED][0] == 550

    client.update_rule_set(RuleSetId=ids["rs"], Rules=_rules("v2"))
    _send(port, "second")
    assert _header(api_server.server, "second") == "X-Api: v2"
    got = client.get_rule_set(RuleSetId=ids["rs"])
    assert got["RuleSetName"] == "api-rs"
    assert got["Rules"][0]["Actions"][0]["AddHeader"]["HeaderValue"] == "v2"
    assert got["LastModificationDate"] >= got["CreatedDate"]
    assert got["RuleSetArn"].endswith(f":mailmanager-rule-set/{ids['rs']}")


def test_delete_closes_the_point_and_get_answers_not_found(api_server: ApiServer) -> None:
    client = api_server.client()
    ids = _create_stack(client)
    port = _port(client, ids["ip"])
    with pytest.raises(ClientError) as in_use:
        client.delete_rule_set(RuleSetId=ids["rs"])
    assert _code(in_use) == "ConflictException"
    assert "in use by ingress point 'api-in'" in str(in_use.value)

    client.delete_ingress_point(IngressPointId=ids["ip"])
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_ingress_point(IngressPointId=ids["ip"])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    client.delete_rule_set(RuleSetId=ids["rs"])
    client.delete_traffic_policy(TrafficPolicyId=ids["tp"])
    for get, key in ((client.get_rule_set, "RuleSetId"),
                     (client.get_traffic_policy, "TrafficPolicyId")):
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            get(**{key: ids["rs" if key == "RuleSetId" else "tp"]})
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.delete_relay(RelayId="rl-unknown")
    # the server's own resources are untouched and still serve
    _send(api_server.server.port, "still-served")
    archived_text(api_server.server, "still-served")


def test_a_bad_request_names_the_field(api_server: ApiServer) -> None:
    client = api_server.client()
    with pytest.raises(client.exceptions.ValidationException) as bad:
        client.create_rule_set(RuleSetName="bad", Rules=[{"Name": "r", "Actions": [
            {"Archive": {"TargetArchive": "no-such-archive"}}]}])
    assert "Rules[0].Actions[0].Archive.TargetArchive" in str(bad.value)
    assert "no-such-archive" in str(bad.value)
    # what boto3 lets through but the model forbids: a name with spaces
    with pytest.raises(client.exceptions.ValidationException) as pattern:
        client.create_rule_set(RuleSetName="has spaces", Rules=[])
    assert "RuleSetName" in str(pattern.value)
    with pytest.raises(client.exceptions.ValidationException) as listen:
        client.create_ingress_point(
            IngressPointName="no-listen", Type="OPEN", RuleSetId="main",
            TrafficPolicyId="allow-all")
    assert "Listen" in str(listen.value)
    assert client.list_rule_sets()["RuleSets"][0]["RuleSetName"] == "main"
    assert len(client.list_rule_sets()["RuleSets"]) == 1  # nothing was stored


def test_client_token_replays_and_names_conflict(api_server: ApiServer) -> None:
    client = api_server.client()
    first = client.create_rule_set(RuleSetName="once", Rules=_rules("a"), ClientToken="t-1")
    again = client.create_rule_set(RuleSetName="once", Rules=_rules("a"), ClientToken="t-1")
    assert again["RuleSetId"] == first["RuleSetId"]
    assert [r["RuleSetName"] for r in client.list_rule_sets()["RuleSets"]].count("once") == 1
    with pytest.raises(ClientError) as changed:
        client.create_rule_set(RuleSetName="once", Rules=_rules("b"), ClientToken="t-1")
    assert _code(changed) == "ConflictException"
    with pytest.raises(ClientError) as duplicate:
        client.create_rule_set(RuleSetName="once", Rules=_rules("a"))
    assert _code(duplicate) == "ConflictException"
    # a rename keeps the ID; renaming onto another's name is a conflict
    client.update_rule_set(RuleSetId=first["RuleSetId"], RuleSetName="renamed")
    assert client.get_rule_set(RuleSetId=first["RuleSetId"])["RuleSetName"] == "renamed"
    with pytest.raises(ClientError) as onto:
        client.update_rule_set(RuleSetId=first["RuleSetId"], RuleSetName="main")
    assert _code(onto) == "ConflictException"


def test_tags_and_the_listen_tag_rebinds(api_server: ApiServer) -> None:
    client = api_server.client()
    ids = _create_stack(client)
    arn = client.get_ingress_point(IngressPointId=ids["ip"])["IngressPointArn"]
    client.tag_resource(ResourceArn=arn, Tags=[{"Key": "team", "Value": "mail"}])
    tags = {t["Key"]: t["Value"] for t in client.list_tags_for_resource(ResourceArn=arn)["Tags"]}
    assert tags == {"mailmgr:Listen": "127.0.0.1:0", "team": "mail"}
    old = _port(client, ids["ip"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        wanted = probe.getsockname()[1]
    client.tag_resource(ResourceArn=arn, Tags=[{"Key": "mailmgr:Listen",
                                               "Value": f"127.0.0.1:{wanted}"}])
    assert _port(client, ids["ip"]) == wanted
    _send(wanted, "rebound")
    assert _header(api_server.server, "rebound") == "X-Api: v1"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", old), timeout=2).close()
    client.untag_resource(ResourceArn=arn, TagKeys=["team"])
    assert [t["Key"] for t in client.list_tags_for_resource(ResourceArn=arn)["Tags"]] == [
        "mailmgr:Listen"]
    with pytest.raises(client.exceptions.ValidationException) as unknown:
        client.tag_resource(ResourceArn=arn, Tags=[{"Key": "mailmgr:Nope", "Value": "x"}])
    assert "mailmgr:Nope" in str(unknown.value)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.list_tags_for_resource(
            ResourceArn=arn.replace(ids["ip"], "inp-doesnotexist"))


def test_file_resources_are_visible_with_their_ids(api_server: ApiServer) -> None:
    client = api_server.client()
    checked = cli(api_server.server.config_file, "check-config")
    points = client.list_ingress_points()["IngressPoints"]
    assert [p["IngressPointName"] for p in points] == ["inbound"]
    assert points[0]["IngressPointId"] in checked.stdout
    point = client.get_ingress_point(IngressPointId=points[0]["IngressPointId"])
    assert point["ARecord"] == f"127.0.0.1:{api_server.server.port}"
    assert point["Status"] == "ACTIVE" and point["TlsPolicy"] == "OPTIONAL"
    main = client.list_rule_sets()["RuleSets"][0]
    assert point["RuleSetId"] == main["RuleSetId"]
    archive = client.list_archives()["Archives"][0]
    got = client.get_archive(ArchiveId=archive["ArchiveId"])
    assert got["Retention"] == {"RetentionPeriod": "ONE_YEAR"}
    assert got["ArchiveState"] == "ACTIVE"


def test_restart_keeps_everything_created_through_the_api(
        api_server: ApiServer, server_factory: Any, tmp_path: Path) -> None:
    client = api_server.client()
    ids = _create_stack(client)
    relay = client.create_relay(RelayName="smarthost", ServerName="smtp.example.net",
                                ServerPort=587, Authentication={"NoAuthentication": {}})
    client.update_rule_set(RuleSetId=ids["rs"], Rules=_rules("v3"))
    assert api_server.server.stop() == 0
    state = json.loads((tmp_path / "var" / "api-state.json").read_text())
    assert ids["rs"] in json.dumps(state["Resources"]["Upserts"]["RuleSets"])

    again = ApiServer(ServerProcess(api_server.server.config_file).start(), tmp_path)
    try:
        client = again.client()
        names = sorted(r["RuleSetName"] for r in client.list_rule_sets()["RuleSets"])
        assert names == ["api-rs", "main"]
        assert client.get_relay(RelayId=relay["RelayId"])["ServerPort"] == 587
        port = _port(client, ids["ip"])
        _send(port, "after-restart")
        assert _header(again.server, "after-restart") == "X-Api: v3"
    finally:
        again.server.stop()


def test_lists_page_with_the_model_limits(api_server_factory: Any, tmp_path: Path) -> None:
    config = basic_config(tmp_path)
    config["RuleSets"] += [{"RuleSetName": f"extra-{i:02}", "Rules": []} for i in range(59)]
    client = api_server_factory(config).client()
    first = client.list_rule_sets()
    assert len(first["RuleSets"]) == 50 and first["NextToken"]  # the model's maximum
    seen: list[str] = []
    kwargs: dict[str, Any] = {"PageSize": 7}
    while True:
        page = client.list_rule_sets(**kwargs)
        seen += [r["RuleSetName"] for r in page["RuleSets"]]
        if "NextToken" not in page:
            break
        kwargs["NextToken"] = page["NextToken"]
    assert seen == ["main", *(f"extra-{i:02}" for i in range(59))]
    paginator = client.get_paginator("list_rule_sets")
    assert sum(len(p["RuleSets"]) for p in paginator.paginate()) == 60
    with pytest.raises(client.exceptions.ValidationException):
        client.list_relays(NextToken=first["NextToken"])  # another operation's token
