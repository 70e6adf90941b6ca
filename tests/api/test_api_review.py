"""What the review of the Mail Manager API found, as regression tests: a request cannot make the
server write files where it says, cannot persist an ingress point that cannot listen (and so
break every later change), never writes back stale copies of the operator's file, and unusual
but valid documents do not become 500s or tracebacks."""

from __future__ import annotations

import json
import signal
import smtplib
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.api.conftest import ApiServer
from tests.support import ROOT

ALLOW_ALL = "allow-all"


def _point(client: Any, name: str, *tags: tuple[str, str]) -> Any:
    return client.create_ingress_point(
        IngressPointName=name, Type="OPEN", RuleSetId="main", TrafficPolicyId=ALLOW_ALL,
        Tags=[{"Key": k, "Value": v} for k, v in tags])


def _send(port: int, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail("a@example.net", ["b@example.com"], f"Subject: {subject}\r\n\r\nhi\r\n")


def test_certificate_tags_never_create_files(api_server: ApiServer, tmp_path: Path) -> None:
    client = api_server.client()
    target = tmp_path / "evil" / "newdir"
    with pytest.raises(client.exceptions.ValidationException) as refused:
        _point(client, "evil", ("mailmgr:Listen", "127.0.0.1:0"),
               ("mailmgr:CertificateFile", str(target / "c.pem")),
               ("mailmgr:PrivateKeyFile", str(target / "k.pem")))
    assert "TlsCertificate.CertificateFile" in str(refused.value)
    assert "does not exist" in str(refused.value)
    assert not (tmp_path / "evil").exists()
    assert not any(e.get("event") == "tls.dev_certificate_created"
                   for e in api_server.server.events[1:])


def test_a_listen_address_that_cannot_be_bound_is_refused(api_server: ApiServer) -> None:
    client = api_server.client()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(client.exceptions.ValidationException) as refused:
            _point(client, "busy", ("mailmgr:Listen", f"127.0.0.1:{port}"))
        assert f"127.0.0.1:{port}" in str(refused.value)
        assert "in use" in str(refused.value)
        # nothing was stored, and later changes work (no point that failed to bind)
        made = _point(client, "free", ("mailmgr:Listen", "127.0.0.1:0"))
        free = client.get_ingress_point(IngressPointId=made["IngressPointId"])
        arn = free["IngressPointArn"]
        with pytest.raises(client.exceptions.ValidationException):
            client.tag_resource(ResourceArn=arn, Tags=[{"Key": "mailmgr:Listen",
                                                        "Value": f"127.0.0.1:{port}"}])
    # the point kept its listener: mail still flows there
    _send(int(free["ARecord"].rsplit(":", 1)[1]), "still-here")
    with pytest.raises(client.exceptions.ValidationException):
        admin = f"127.0.0.1:{api_server.server.admin_port}"
        _point(client, "admin-port", ("mailmgr:Listen", admin))
    assert {p["IngressPointName"] for p in client.list_ingress_points()["IngressPoints"]} == {
        "inbound", "free"}
    assert api_server.server.proc is not None
    api_server.server.proc.send_signal(signal.SIGHUP)
    api_server.server.wait_for("config.reloaded", 10)


def test_a_change_never_writes_back_stale_copies_of_the_file(api_server: ApiServer) -> None:
    """The operator edits the file (no SIGHUP yet); a change through the API is made to what
    the file says now, and stores only itself."""
    client = api_server.client()
    client.create_rule_set(RuleSetName="first", Rules=[])
    config = api_server.server.config_file
    data = yaml.safe_load(config.read_text())
    data["RuleSets"][0]["Rules"][0]["Name"] = "edited-in-file"
    config.write_text(yaml.safe_dump(data))
    client.create_traffic_policy(TrafficPolicyName="unrelated", DefaultAction="DENY",
                                 PolicyStatements=[])
    state = json.loads((api_server.tmp_path / "var" / "api-state.json").read_text())
    assert set(state["Resources"]["Upserts"]) == {"RuleSets", "TrafficPolicies"}
    assert [r["RuleSetName"] for r in state["Resources"]["Upserts"]["RuleSets"]] == ["first"]
    main = next(r for r in client.list_rule_sets()["RuleSets"] if r["RuleSetName"] == "main")
    assert client.get_rule_set(RuleSetId=main["RuleSetId"])["Rules"][0]["Name"] == \
        "edited-in-file"


def test_deleting_address_lists_with_list_references_in_rules(api_server: ApiServer) -> None:
    client = api_server.client()
    used = client.create_address_list(AddressListName="used")["AddressListId"]
    spare = client.create_address_list(AddressListName="spare")["AddressListId"]
    arn = client.get_address_list(AddressListId=used)["AddressListArn"]
    client.create_rule_set(RuleSetName="vip", Rules=[{"Name": "vip", "Conditions": [
        {"BooleanExpression": {"Evaluate": {"IsInAddressList": {
            "Attribute": "RECIPIENT", "AddressLists": [arn]}}, "Operator": "IS_TRUE"}}],
        "Actions": [{"Drop": {}}]}])
    client.delete_address_list(AddressListId=spare)
    with pytest.raises(client.exceptions.ConflictException) as in_use:
        client.delete_address_list(AddressListId=used)
    assert "rule set 'vip'" in str(in_use.value)


@pytest.mark.parametrize("resources", [
    {"Deleted": {"RuleSets": [{"a": 1}]}},
    {"Upserts": {"RuleSets": ["not a mapping"]}},
    {"Upserts": {"RuleSets": [{"Rules": []}]}},
    {"Upserts": {"Nope": []}},
    {"Meta": {"Resources": []}},
])
def test_a_malformed_state_file_is_one_clear_line(api_server: ApiServer,
                                                  resources: dict[str, Any]) -> None:
    assert api_server.server.stop() == 0
    state = api_server.tmp_path / "var" / "api-state.json"
    document: dict[str, Any] = {"Version": 1, "Resources": resources}
    if "Meta" in resources:
        document = {"Version": 1, "Resources": {}, "Meta": resources["Meta"]}
    state.write_text(json.dumps(document))
    served = subprocess.run(
        [sys.executable, "-m", "mailmgr", "serve", "--config", str(api_server.server.config_file)],
        capture_output=True, text=True, cwd=ROOT, timeout=30, stdin=subprocess.DEVNULL)
    assert served.returncode == 2
    assert str(state) in served.stderr
    assert "Traceback" not in served.stderr


def test_listen_tags_carry_lists_and_ipv6_beyond_the_aws_tag_pattern(
        api_server: ApiServer) -> None:
    """AWS's TagValue pattern has no comma or bracket; interface.md's mailmgr:Listen is a
    comma-separated list of host:port, [IPv6]:port included."""
    client = api_server.client()
    has_ipv6 = socket.has_ipv6
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        has_ipv6 = False
    value = "127.0.0.1:0, [::1]:0" if has_ipv6 else "127.0.0.1:0, 127.0.0.2:0"
    made = _point(client, "two", ("mailmgr:Listen", value))["IngressPointId"]
    point = client.get_ingress_point(IngressPointId=made)
    _send(int(point["ARecord"].rsplit(":", 1)[1]), "two-listeners")
    tags = client.list_tags_for_resource(ResourceArn=point["IngressPointArn"])["Tags"]
    assert tags == [{"Key": "mailmgr:Listen", "Value": value}]
    with pytest.raises(client.exceptions.ValidationException) as bad:
        _point(client, "bad", ("mailmgr:Listen", "127.0.0.1:0\n"))
    assert "control characters" in str(bad.value)
    with pytest.raises(client.exceptions.ValidationException) as plain:
        client.create_rule_set(RuleSetName="tagged", Rules=[],
                               Tags=[{"Key": "team", "Value": "a,b"}])
    assert "Tags[0].Value" in str(plain.value)  # other tags keep AWS's pattern


def test_port_zero_on_a_foreign_address_is_refused(api_server: ApiServer) -> None:
    client = api_server.client()
    for value in ("192.0.2.1:0", "example.invalid:0"):
        with pytest.raises(client.exceptions.ValidationException) as refused:
            _point(client, "foreign", ("mailmgr:Listen", value))
        assert value in str(refused.value)
    assert [p["IngressPointName"] for p in client.list_ingress_points()["IngressPoints"]] == [
        "inbound"]


def test_a_broken_config_file_is_a_400_that_says_so(api_server: ApiServer) -> None:
    config = api_server.server.config_file
    config.write_text(config.read_text() + "\nIngressPoints: [\n")
    client = api_server.client()
    with pytest.raises(client.exceptions.ValidationException) as broken:
        client.create_rule_set(RuleSetName="x", Rules=[])
    assert "configuration cannot be read" in str(broken.value)
