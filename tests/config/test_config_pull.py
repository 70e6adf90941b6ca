"""`config pull`'s conversion: Get* responses as botocore returns them -> a config file that
`mailmgr.config.load` accepts, with the account's IDs and references and marked placeholders."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from mailmgr import config
from mailmgr.config.pull import Account, PulledResource, convert
from mailmgr.config.pull_render import render

ACCOUNT = "111122223333"
REGION = "eu-west-1"
WHEN = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ADDON = f"arn:aws:ses:{REGION}:{ACCOUNT}:addon-instance/ai-abcdef0123"
RSPAMD_ADDON = f"arn:aws:ses:{REGION}:{ACCOUNT}:addon-instance/ai-vade000001"
MAILBOX = f"arn:aws:workmail:{REGION}:{ACCOUNT}:organization/m-0123456789"


def arn(kind: str, resource_id: str) -> str:
    return f"arn:aws:ses:{REGION}:{ACCOUNT}:mailmanager-{kind}/{resource_id}"


META = {"ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": "r-1"}}


def account(**extra: tuple[PulledResource, ...]) -> Account:
    """One resource of each kind, shaped as the Get* output shapes (with the output-only fields
    AWS adds: ARNs, timestamps, Status, ARecord, ArchiveState, ResponseMetadata)."""
    resources: dict[str, tuple[PulledResource, ...]] = {
        "IngressPoints": (PulledResource({
            **META, "IngressPointId": "inp-0open", "IngressPointName": "inbound",
            "IngressPointArn": arn("ingress-point", "inp-0open"), "Status": "ACTIVE",
            "Type": "OPEN", "ARecord": "abc.fips.mail-manager-smtp.amazonaws.com",
            "RuleSetId": "rs-0main", "TrafficPolicyId": "tp-0policy", "TlsPolicy": "OPTIONAL",
            "NetworkConfiguration": {"PublicNetworkConfiguration": {"IpType": "IPV4"}},
            "CreatedTimestamp": WHEN, "LastUpdatedTimestamp": WHEN,
        }, tags=(("team", "mail"),)),),
        "TrafficPolicies": (PulledResource({
            **META, "TrafficPolicyId": "tp-0policy", "TrafficPolicyName": "policy",
            "TrafficPolicyArn": arn("traffic-policy", "tp-0policy"), "DefaultAction": "DENY",
            "MaxMessageSizeBytes": 1000000,
            "PolicyStatements": [
                {"Action": "ALLOW", "Conditions": [{"BooleanExpression": {
                    "Evaluate": {"IsInAddressList": {
                        "Attribute": "RECIPIENT",
                        "AddressLists": [arn("address-list", "al-0vip")]}},
                    "Operator": "IS_TRUE"}}]},
                {"Action": "DENY", "Conditions": [{"BooleanExpression": {
                    "Evaluate": {"Analysis": {"Analyzer": ADDON, "ResultField": "isListed"}},
                    "Operator": "IS_TRUE"}}]},
            ],
            "CreatedTimestamp": WHEN, "LastUpdatedTimestamp": WHEN,
        }),),
        "RuleSets": (PulledResource({
            **META, "RuleSetId": "rs-0main", "RuleSetName": "main",
            "RuleSetArn": arn("rule-set", "rs-0main"), "CreatedDate": WHEN,
            "LastModificationDate": WHEN,
            "Rules": [
                {"Name": "vip", "Conditions": [{"StringExpression": {
                    "Evaluate": {"Attribute": "SUBJECT"}, "Operator": "CONTAINS",
                    "Values": ["urgent"]}}],
                 "Actions": [{"Relay": {"Relay": arn("smtp-relay", "rl-0up"),
                                        "MailFrom": "PRESERVE"}},
                             {"DeliverToMailbox": {
                                 "MailboxArn": MAILBOX,
                                 "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/mm"}}]},
                {"Name": "spam", "Conditions": [{"VerdictExpression": {
                    "Evaluate": {"Analysis": {"Analyzer": RSPAMD_ADDON,
                                              "ResultField": "verdict"}},
                    "Operator": "EQUALS", "Values": ["FAIL"]}}],
                 "Actions": [{"Drop": {}}]},
                {"Name": "archive", "Actions": [
                    {"AddHeader": {"HeaderName": "X-Seen", "HeaderValue": "yes"}},
                    {"Archive": {"TargetArchive": arn("archive", "a-0cold")}}]},
            ],
        }),),
        "Relays": (PulledResource({
            **META, "RelayId": "rl-0up", "RelayName": "upstream",
            "RelayArn": arn("smtp-relay", "rl-0up"), "ServerName": "smtp.example.net",
            "ServerPort": 587, "Authentication": {"NoAuthentication": {}},
            "CreatedTimestamp": WHEN, "LastModifiedTimestamp": WHEN,
        }),),
        "AddressLists": (PulledResource({
            **META, "AddressListId": "al-0vip", "AddressListName": "vip",
            "AddressListArn": arn("address-list", "al-0vip"),
            "CreatedTimestamp": WHEN, "LastUpdatedTimestamp": WHEN,
        }, members=("ceo@example.test", "cfo@example.test")),),
        "Archives": (
            PulledResource({
                **META, "ArchiveId": "a-0cold", "ArchiveName": "cold",
                "ArchiveArn": arn("archive", "a-0cold"), "ArchiveState": "ACTIVE",
                "Retention": {"RetentionPeriod": "ONE_YEAR"},
                "CreatedTimestamp": WHEN, "LastUpdatedTimestamp": WHEN,
            }),
            PulledResource({
                **META, "ArchiveId": "a-0gone", "ArchiveName": "gone",
                "ArchiveArn": arn("archive", "a-0gone"), "ArchiveState": "PENDING_DELETION",
                "Retention": {"RetentionPeriod": "ONE_YEAR"},
            }),
        ),
    }
    for section, items in extra.items():
        resources[section] = resources.get(section, ()) + items
    return Account(region=REGION, endpoint_url="http://127.0.0.1:9025", pulled_at=WHEN,
                   resources=resources)


def written(tmp_path: Path, acct: Account) -> tuple[str, Path]:
    text = render(convert(acct, new_password=lambda: "placeholder-pw-1234"))
    path = tmp_path / "mailmgr.yaml"
    path.write_text(text)
    return text, path


def test_every_resource_keeps_its_id_and_references_and_loads(tmp_path: Path) -> None:
    text, path = written(tmp_path, account())
    loaded = config.load(path)
    assert loaded.server.region == REGION and loaded.server.account_id == ACCOUNT
    (point,) = loaded.ingress_points
    assert (point.id, point.name, point.arn) == (
        "inp-0open", "inbound", arn("ingress-point", "inp-0open"))
    assert (point.rule_set_id, point.traffic_policy_id) == ("rs-0main", "tp-0policy")
    assert [(a.host, a.port) for a in point.listen] == [("127.0.0.1", 2525)]
    (policy,) = loaded.traffic_policies
    assert (policy.id, policy.default_action, policy.max_message_size) == (
        "tp-0policy", "DENY", 1000000)
    assert len(policy.statements) == 2
    (rule_set,) = loaded.rule_sets
    assert rule_set.id == "rs-0main"
    assert [r.name for r in rule_set.rules] == ["vip", "spam", "archive"]
    (relay,) = loaded.relays
    assert (relay.id, relay.server_name, relay.server_port) == ("rl-0up", "smtp.example.net", 587)
    (vip,) = loaded.address_lists
    assert (vip.id, vip.members) == ("al-0vip", ("ceo@example.test", "cfo@example.test"))
    assert [(a.id, a.name, a.retention) for a in loaded.archives] == [
        ("a-0cold", "cold", "ONE_YEAR")]  # the archive pending deletion is left out
    (mailbox,) = loaded.mailboxes
    assert mailbox.arn == MAILBOX and mailbox.maildir == tmp_path / "var/maildir/m-0123456789"
    analyzers = {a.arn: (a.name, a.engine.value) for a in loaded.analyzers}
    assert analyzers == {ADDON: ("ai-abcdef0123", "Dnsbl"),
                         RSPAMD_ADDON: ("ai-vade000001", "Rspamd")}
    assert "not pulled: 1 archive pending deletion" in text


def test_output_only_fields_are_dropped_and_tags_kept(tmp_path: Path) -> None:
    _, path = written(tmp_path, account())
    document = yaml.safe_load(path.read_text())
    point = document["IngressPoints"][0]
    for key in ("IngressPointArn", "Status", "ARecord", "CreatedTimestamp",
                "LastUpdatedTimestamp", "ResponseMetadata"):
        assert key not in point
    assert point["Tags"] == [{"Key": "team", "Value": "mail"}]
    assert point["NetworkConfiguration"] == {"PublicNetworkConfiguration": {"IpType": "IPV4"}}
    assert "ArchiveState" not in document["Archives"][0]
    assert "CreatedDate" not in document["RuleSets"][0]
    assert set(document) == {"Server", "IngressPoints", "TrafficPolicies", "RuleSets", "Relays",
                             "AddressLists", "Archives", "Mailboxes", "Analyzers"}
    assert list(document) == sorted(document, key=list(document).index)  # interface order
    assert list(document)[:2] == ["Server", "IngressPoints"]


def test_placeholders_are_marked_with_comments_and_the_header_says_where_from(
        tmp_path: Path) -> None:
    text, _ = written(tmp_path, account())
    lines = text.splitlines()
    assert lines[0] == "# mailmgr config pulled from Mail Manager"
    assert "region eu-west-1, http://127.0.0.1:9025, at 2026-11-30T12:00:00Z" in lines[1]
    assert lines[2] == ("#   1 ingress point, 1 traffic policy, 1 rule set, 1 relay, "
                        "1 address list, 1 archive")
    assert lines[3] == "#   2 address list members"

    def comment_before(pattern: str) -> str:
        index = next(i for i, line in enumerate(lines) if line.strip().startswith(pattern))
        comments = []
        while lines[index - 1].lstrip().startswith("#"):
            index -= 1
            comments.insert(0, lines[index].lstrip("# "))
        return " ".join(comments)

    assert "mailmgr placeholder: where this ingress point accepts SMTP" in comment_before(
        "Listen:")
    assert "mailmgr placeholder: where archived mail is kept" in comment_before("Storage:")
    assert "mailmgr placeholder: this server's name" in comment_before("Hostname:")
    assert "where DeliverToMailbox puts this mailbox's mail" in comment_before(
        f"- MailboxArn: {MAILBOX}")
    assert "engine behind this add-on (result fields used: isListed)" in comment_before(
        "- Name: ai-abcdef0123")


def auth_point(**changes: Any) -> PulledResource:
    response = {
        "IngressPointId": "inp-0auth", "IngressPointName": "submission",
        "IngressPointArn": arn("ingress-point", "inp-0auth"), "Status": "CLOSED",
        "Type": "AUTH", "RuleSetId": "rs-0main", "TrafficPolicyId": "tp-0policy",
        "TlsPolicy": "REQUIRED",
        "IngressPointAuthConfiguration": {"IngressPointPasswordConfiguration": {
            "SmtpPasswordVersion": "v1"}},
    }
    response.update(changes)
    return PulledResource(response)


def test_password_point_gets_a_marked_random_password_and_a_certificate_placeholder(
        tmp_path: Path) -> None:
    text, path = written(tmp_path, account(IngressPoints=(auth_point(),)))
    document = yaml.safe_load(text)
    points = {p["IngressPointName"]: p for p in document["IngressPoints"]}
    auth = points["submission"]
    assert auth["IngressPointConfiguration"] == {"SmtpPassword": "placeholder-pw-1234"}
    assert "SmtpPasswordVersion" not in text
    assert auth["Status"] == "CLOSED"
    assert auth["TlsCertificate"] == {"CertificateFile": "certs/server.pem",
                                      "PrivateKeyFile": "certs/server.key"}
    # distinct placeholder ports, in name order
    assert points["inbound"]["Listen"] == ["127.0.0.1:2525"]
    assert auth["Listen"] == ["127.0.0.1:2526"]
    assert "AWS never returns an ingress point's password" in text
    assert "serve creates a development certificate there" in " ".join(text.split())
    loaded = config.load(path)  # both files missing: serve will create a dev certificate
    point = next(p for p in loaded.ingress_points if p.name == "submission")
    assert point.smtp_password == "placeholder-pw-1234"
    assert point.status.value == "CLOSED"


def test_the_random_password_differs_per_pull() -> None:
    first = convert(account(IngressPoints=(auth_point(),)))
    second = convert(account(IngressPoints=(auth_point(),)))

    def password(pulled: Any) -> str:
        point = next(p for p in pulled.document["IngressPoints"]
                     if p["IngressPointName"] == "submission")
        return str(point["IngressPointConfiguration"]["SmtpPassword"])

    assert password(first) != password(second) and len(password(first)) >= 16


def test_secret_and_trust_store_configurations_map_back_to_the_request_shape() -> None:
    secret = auth_point(IngressPointId="inp-0sec", IngressPointName="secret",
                        IngressPointAuthConfiguration={
                            "SecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:s"})
    mtls = auth_point(IngressPointId="inp-0mtls", IngressPointName="mtls", Type="MTLS",
                      IngressPointAuthConfiguration={"TlsAuthConfiguration": {"TrustStore": {
                          "CAContent": "-----BEGIN CERTIFICATE-----\nAAA\n"
                                       "-----END CERTIFICATE-----\n"}}})
    pulled = convert(account(IngressPoints=(secret, mtls)))
    points = {p["IngressPointName"]: p for p in pulled.document["IngressPoints"]}
    assert points["secret"]["IngressPointConfiguration"] == {
        "SecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:s"}
    assert points["mtls"]["IngressPointConfiguration"]["TlsAuthConfiguration"]["TrustStore"][
        "CAContent"].startswith("-----BEGIN CERTIFICATE-----\nAAA")
    assert "IngressPointConfiguration" not in points["inbound"]
    bare = auth_point(IngressPointId="inp-0bare", IngressPointName="bare", Type="MTLS",
                      IngressPointAuthConfiguration={})
    (note,) = [n for n in convert(account(IngressPoints=(bare,))).notes
               if n.section == "IngressPoints" and n.index == 0 and n.key is None]
    assert "returned no trust store for this MTLS point" in note.text
    text = render(pulled)
    assert "CAContent: |" in text  # PEM as a literal block
    assert yaml.safe_load(text)["IngressPoints"] == pulled.document["IngressPoints"]


def test_extension_tags_replace_the_listen_and_certificate_placeholders(tmp_path: Path) -> None:
    tagged = auth_point(IngressPointId="inp-0tag", IngressPointName="tagged", Type="OPEN",
                        TlsPolicy="REQUIRED", IngressPointAuthConfiguration={})
    tags = (("mailmgr:Listen", "0.0.0.0:25"), ("mailmgr:CertificateFile", "/etc/c.pem"),
            ("mailmgr:PrivateKeyFile", "/etc/c.key"))
    pulled = convert(account(IngressPoints=(PulledResource(tagged.response, tags=tags),)))
    point = next(p for p in pulled.document["IngressPoints"] if p["IngressPointName"] == "tagged")
    assert "Listen" not in point and "TlsCertificate" not in point
    assert point["Tags"] == [{"Key": k, "Value": v} for k, v in tags]
    assert not [n for n in pulled.notes if n.section == "IngressPoints" and n.index == 1]
    (tmp_path / "tagged.yaml").write_text(render(pulled))
    loaded = config.load(tmp_path / "tagged.yaml")  # the loader applies the mailmgr: tags
    point_model = next(p for p in loaded.ingress_points if p.name == "tagged")
    assert [(a.host, a.port) for a in point_model.listen] == [("0.0.0.0", 25)]
    assert point_model.tls_certificate is not None
    assert str(point_model.tls_certificate.certificate_file) == "/etc/c.pem"
    # implicit TLS from a tag needs a certificate even on an OPEN, OPTIONAL point
    wrapped = auth_point(IngressPointId="inp-0wrap", IngressPointName="wrapped", Type="OPEN",
                         TlsPolicy="OPTIONAL", IngressPointAuthConfiguration={})
    pulled = convert(account(IngressPoints=(PulledResource(
        wrapped.response, tags=(("mailmgr:TlsWrappedListen", "0.0.0.0:465"),)),)))
    point = next(p for p in pulled.document["IngressPoints"]
                 if p["IngressPointName"] == "wrapped")
    assert "Listen" not in point and point["TlsCertificate"]["CertificateFile"] == (
        "certs/server.pem")


def test_an_empty_account_is_a_server_section_only(tmp_path: Path) -> None:
    pulled = convert(Account(region="ap-south-1", endpoint_url=None, pulled_at=WHEN))
    assert pulled.document == {"Server": {"Hostname": "mx.example.invalid",
                                          "Region": "ap-south-1"}}
    assert "the AWS endpoint" in pulled.header[1]
    path = tmp_path / "empty.yaml"
    path.write_text(render(pulled))
    assert config.load(path).server.region == "ap-south-1"


def test_analyzer_engine_follows_the_result_fields_and_one_instance_is_one_analyzer(
        tmp_path: Path) -> None:
    other_region = f"arn:aws:ses:us-east-1:{ACCOUNT}:addon-instance/ai-abcdef0123"
    acct = account()
    rule_set = copy.deepcopy(dict(acct.resources["RuleSets"][0].response))
    rule_set["Rules"].append({"Name": "virus", "Conditions": [{"StringExpression": {
        "Evaluate": {"Analysis": {"Analyzer": "trend", "ResultField": "addon.category"}},
        "Operator": "EQUALS", "Values": ["clean"]}}, {"BooleanExpression": {
            "Evaluate": {"Analysis": {"Analyzer": other_region, "ResultField": "isListed"}},
            "Operator": "IS_TRUE"}}], "Actions": [{"Drop": {}}]})
    pulled = convert(Account(REGION, None, WHEN, {**acct.resources,
                                                  "RuleSets": (PulledResource(rule_set),)}))
    by_ref = {a.get("AnalyzerArn", a["Name"]): a for a in pulled.document["Analyzers"]}
    assert by_ref["trend"] == {"Name": "trend", "Rspamd": {"Url": "http://127.0.0.1:11333"}}
    # the same add-on instance named from another region: one analyzer serves both references
    assert other_region not in by_ref and "Dnsbl" in by_ref[ADDON]
    assert len(by_ref) == 3
    path = tmp_path / "mailmgr.yaml"
    text = render(pulled)
    assert "&id" not in text and "*id" not in text  # no YAML anchors between entries
    path.write_text(text)
    loaded = config.load(path)
    virus = loaded.rule_sets[0].rules[-1]
    assert [c.analysis.analyzer for c in virus.conditions] == ["trend", "ai-abcdef0123"]


def open_point(name: str, *tags: tuple[str, str]) -> PulledResource:
    point = auth_point(IngressPointId=f"inp-0{name}", IngressPointName=name, Type="OPEN",
                       TlsPolicy="OPTIONAL", IngressPointAuthConfiguration={})
    return PulledResource(point.response, tags=tags)


def test_placeholder_ports_avoid_the_ports_of_listen_tags(tmp_path: Path) -> None:
    # A running server's `inbound` (file-defined: no tags) and API points with listen tags:
    # the placeholders used to be 2525 + position, so `inbound` got the tagged 2526.
    tagged = open_point("api", ("mailmgr:Listen", "127.0.0.1:2526"),
                        ("mailmgr:TlsWrappedListen", "127.0.0.1:2527"),
                        ("mailmgr:CertificateFile", "/etc/c.pem"),
                        ("mailmgr:PrivateKeyFile", "/etc/c.key"))
    acct = account(IngressPoints=(tagged, open_point("other"), open_point("zz-last")))
    text, path = written(tmp_path, acct)
    points = {p["IngressPointName"]: p for p in yaml.safe_load(text)["IngressPoints"]}
    assert "Listen" not in points["api"]
    assert points["inbound"]["Listen"] == ["127.0.0.1:2525"]
    assert points["other"]["Listen"] == ["127.0.0.1:2528"]
    assert points["zz-last"]["Listen"] == ["127.0.0.1:2529"]
    loaded = config.load(path)  # check-config's listen-conflict check passes
    assert len(loaded.ingress_points) == 4


def test_placeholder_ports_skip_the_default_admin_port() -> None:
    busy = ",".join(f"127.0.0.1:{port}" for port in range(2525, 9025))
    pulled = convert(account(IngressPoints=(open_point("a-busy", ("mailmgr:Listen", busy)),)))
    points = {p["IngressPointName"]: p for p in pulled.document["IngressPoints"]}
    assert points["inbound"]["Listen"] == ["127.0.0.1:9026"]


def test_header_counts_use_english_plurals() -> None:
    acct = account()
    resources = dict(acct.resources)
    resources["Relays"] = ()
    resources["TrafficPolicies"] = resources["TrafficPolicies"] * 2
    pulled = convert(replace(acct, resources=resources))
    assert pulled.header[2] == ("  1 ingress point, 2 traffic policies, 1 rule set, 0 relays, "
                                "1 address list, 1 archive")
