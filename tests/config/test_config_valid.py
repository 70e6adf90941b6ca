"""A full valid config loads into the expected models, IDs, ARNs and resolved references."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from config_helpers import MAILBOX_ARN, base, find, problems_of, write

from mailmgr import certs, config
from mailmgr.config.ids import ResourceKind, derive_id
from mailmgr.config.models import (
    AcceptAction,
    AddHeaderAction,
    ArchiveAction,
    BooleanCondition,
    BooleanOperator,
    DmarcCondition,
    DropAction,
    IngressPointStatus,
    IngressPointType,
    IpCondition,
    ListenAddress,
    LocalStorage,
    NumberCondition,
    NumberOperator,
    ReplaceRecipientAction,
    StringCondition,
    StringOperator,
    TlsPolicy,
    VerdictCondition,
)

FULL: dict[str, Any] = {
    "Server": {
        "Hostname": "mx.example.test",
        "DataDirectory": "data",
        "Region": "eu-west-1",
        "AccountId": "123456789012",
        "Aws": {"EndpointUrl": "http://127.0.0.1:5000", "EndpointUrls": {"s3": "http://s3:1"}},
        "Dns": {"Nameservers": ["127.0.0.1:5353", "[::1]:53", "10.0.0.1"], "Timeout": 2},
        "Log": {"Format": "text", "Level": "debug"},
        "Workers": 4,
        "Retry": {"InitialDelaySeconds": 1, "MaxDelaySeconds": 60, "MaxAgeSeconds": 3600},
        "ShutdownGraceSeconds": 3,
    },
    "IngressPoints": [{
        "IngressPointName": "inbound",
        "IngressPointId": "inp-inbound",
        "Type": "OPEN",
        "RuleSetId": "main",
        "TrafficPolicyId": "arn:aws:ses:us-west-2:999999999999:mailmanager-traffic-policy/tp-def",
        "TlsPolicy": "REQUIRED",
        "IngressPointConfiguration": {},
        "Listen": ["127.0.0.1:0", "[::1]:2525"],
        "TlsCertificate": {"CertificateFile": "certs/server.pem", "PrivateKeyFile": "k.key"},
        "Status": "CLOSED",
        "ClientToken": "token-1",
        "Tags": [{"Key": "team", "Value": "mail"}],
    }],
    "TrafficPolicies": [{
        "TrafficPolicyName": "default", "TrafficPolicyId": "tp-def", "DefaultAction": "DENY",
        "PolicyStatements": [], "MaxMessageSizeBytes": 41943040,
    }],
    "RuleSets": [{
        "RuleSetName": "main",
        "Rules": [
            {
                "Name": "vip",
                "Conditions": [
                    {"BooleanExpression": {
                        "Evaluate": {"IsInAddressList": {
                            "Attribute": "RECIPIENT", "AddressLists": ["vip"]}},
                        "Operator": "IS_TRUE"}},
                    {"StringExpression": {"Evaluate": {"Attribute": "SUBJECT"},
                                          "Operator": "CONTAINS", "Values": ["hello"]}},
                    {"StringExpression": {"Evaluate": {"MimeHeaderAttribute": "X-Tag"},
                                          "Operator": "EQUALS", "Values": ["a", "b"]}},
                    {"NumberExpression": {"Evaluate": {"Attribute": "MESSAGE_SIZE"},
                                          "Operator": "LESS_THAN", "Value": 1000}},
                ],
                "Unless": [
                    {"IpExpression": {"Evaluate": {"Attribute": "SOURCE_IP"},
                                      "Operator": "CIDR_MATCHES", "Values": ["10.0.0.0/8"]}},
                    {"VerdictExpression": {"Evaluate": {"Attribute": "SPF"},
                                           "Operator": "EQUALS", "Values": ["FAIL"]}},
                    {"DmarcExpression": {"Operator": "EQUALS", "Values": ["REJECT"]}},
                ],
                "Actions": [
                    {"AddHeader": {"HeaderName": "X-Vip", "HeaderValue": "yes"}},
                    {"Archive": {"TargetArchive": "a-keep", "ActionFailurePolicy": "DROP"}},
                    {"ReplaceRecipient": {"ReplaceWith": ["boss@example.test"]}},
                ],
            },
            {"Actions": [{"Drop": {}}]},
        ],
    }],
    "AddressLists": [{"AddressListName": "vip", "Members": ["CEO@Example.test", "*.board.test"]}],
    "Archives": [{"ArchiveName": "keep", "ArchiveId": "a-keep",
                  "Retention": {"RetentionPeriod": "ONE_YEAR"}, "Storage": {"Local": {}}}],
    "Relays": [{"RelayName": "upstream", "ServerName": "smtp.example.net", "ServerPort": 587,
                "Authentication": {"NoAuthentication": {}},
                "MailFromReplacement": "bounces@example.test",
                "Tls": {"Required": True, "Verify": False, "CaFile": "ca.pem"}}],
    "Mailboxes": [{"MailboxArn": MAILBOX_ARN, "Lmtp": "127.0.0.1:24"},
                  {"MailboxArn": MAILBOX_ARN + "x", "Maildir": "maildir/m-2"}],
}


def _write_full(tmp_path: Path) -> Path:
    """FULL as mailmgr.yaml, with the relay's CaFile (checked at load time) beside it."""
    certs.load_or_create_ca(tmp_path)
    return write(tmp_path, FULL)


def test_full_config_loads(tmp_path: Path) -> None:
    path = _write_full(tmp_path)
    cfg = config.load(path)

    assert cfg.source == path
    s = cfg.server
    assert (s.hostname, s.region, s.account_id) == ("mx.example.test", "eu-west-1", "123456789012")
    assert s.data_directory == tmp_path / "data"
    assert s.endpoint_url == "http://127.0.0.1:5000"
    assert s.endpoint_urls == (("s3", "http://s3:1"),)
    assert s.dns_nameservers == ("127.0.0.1:5353", "[::1]:53", "10.0.0.1")
    assert (s.dns_timeout, s.log_format, s.log_level, s.workers) == (2.0, "text", "DEBUG", 4)
    assert (s.retry.initial_delay, s.retry.max_delay, s.retry.max_age) == (1.0, 60.0, 3600.0)
    assert s.shutdown_grace == 3.0

    (ip,) = cfg.ingress_points
    rs_id = derive_id(ResourceKind.RULE_SET, "main")
    assert ip.id == "inp-inbound"
    assert ip.arn == "arn:aws:ses:eu-west-1:123456789012:mailmanager-ingress-point/inp-inbound"
    assert ip.type is IngressPointType.OPEN and ip.tls_policy is TlsPolicy.REQUIRED
    assert ip.rule_set_id == rs_id and ip.traffic_policy_id == "tp-def"
    assert ip.listen == (ListenAddress("127.0.0.1", 0), ListenAddress("::1", 2525))
    assert ip.tls_certificate is not None
    assert ip.tls_certificate.certificate_file == tmp_path / "certs/server.pem"
    assert ip.status is IngressPointStatus.CLOSED

    (tp,) = cfg.traffic_policies
    assert tp.default_action is AcceptAction.DENY and tp.max_message_size == 41943040

    rs = cfg.rule_set(rs_id)
    assert rs.arn == f"arn:aws:ses:eu-west-1:123456789012:mailmanager-rule-set/{rs_id}"
    vip, second = rs.rules
    assert second.name == "rule-2" and isinstance(second.actions[0], DropAction)
    al_id = derive_id(ResourceKind.ADDRESS_LIST, "vip")
    assert vip.conditions == (
        BooleanCondition(BooleanOperator.IS_TRUE, address_list_attribute="RECIPIENT",
                         address_list_id=al_id),
        StringCondition(StringOperator.CONTAINS, ("hello",), attribute="SUBJECT"),
        StringCondition(StringOperator.EQUALS, ("a", "b"), mime_header="X-Tag"),
        NumberCondition(NumberOperator.LESS_THAN, 1000.0),
    )
    assert [type(c) for c in vip.unless] == [IpCondition, VerdictCondition, DmarcCondition]
    add, archive, replace = vip.actions
    assert isinstance(add, AddHeaderAction) and add.header_name == "X-Vip"
    assert add.params == {"HeaderName": "X-Vip", "HeaderValue": "yes"}
    assert isinstance(archive, ArchiveAction) and archive.archive_id == "a-keep"
    assert archive.failure_policy == "DROP"
    assert isinstance(replace, ReplaceRecipientAction)
    assert replace.replace_with == ("boss@example.test",)

    assert cfg.address_list(al_id).members == ("ceo@example.test", "*.board.test")
    arch = cfg.archive("a-keep")
    assert arch.retention_days == 365 and arch.storage == LocalStorage()
    relay = cfg.relays[0]
    assert relay.id == derive_id(ResourceKind.RELAY, "upstream")
    assert relay.arn.endswith(":mailmanager-smtp-relay/" + relay.id)
    assert relay.tls.required and not relay.tls.verify and relay.tls.ca_file == tmp_path / "ca.pem"
    assert relay.mail_from_replacement == "bounces@example.test" and relay.secret_arn is None
    lmtp, maildir = cfg.mailboxes
    assert lmtp.lmtp == ListenAddress("127.0.0.1", 24)
    assert maildir.maildir == tmp_path / "maildir/m-2"


def test_derived_id_is_documented_scheme() -> None:
    import base64
    import hashlib

    digest = base64.b32encode(hashlib.sha256(b"main").digest()).decode().lower()
    assert derive_id(ResourceKind.RULE_SET, "main") == "rs-" + digest[:26]
    assert derive_id(ResourceKind.ARCHIVE, "main").startswith("a-")
    assert len(derive_id(ResourceKind.INGRESS_POINT, "x")) == len("inp-") + 26


def test_summary_lists_resources(tmp_path: Path) -> None:
    cfg = config.load(_write_full(tmp_path))
    text = config.summary(cfg)
    for needle in (
        "inp-inbound", "arn:aws:ses:eu-west-1:123456789012:mailmanager-ingress-point/inp-inbound",
        "type OPEN, TLS policy REQUIRED", "listen 127.0.0.1:0, [::1]:2525",
        "traffic policy default [tp-def]", "default action DENY",
        "rule 1 vip", "rule 2 rule-2", "AddHeader X-Vip: yes", "Archive to keep [a-keep]",
        "2 member(s)", "retention ONE_YEAR (365 days)", "smtp.example.net:587",
        MAILBOX_ARN + " -> LMTP 127.0.0.1:24",
    ):
        assert needle in text, needle


def test_json_config_and_defaults(tmp_path: Path) -> None:
    data = base()
    del data["Server"]
    path = write(tmp_path, data, "sub/mailmgr.json")
    cfg = config.load(path)
    assert cfg.server.data_directory == tmp_path / "sub" / "var"
    assert cfg.server.account_id == "000000000000" and cfg.server.workers == 8
    assert cfg.server.hostname
    assert cfg.ingress_points[0].tls_policy is TlsPolicy.OPTIONAL


GET_RULE_SET = {
    "RuleSetId": "rs-12345abcde",
    "RuleSetArn": "arn:aws:ses:us-east-1:111122223333:mailmanager-rule-set/rs-12345abcde",
    "RuleSetName": "exported",
    "CreatedDate": "2024-05-01T10:00:00.123000+00:00",
    "LastModificationDate": "2024-05-02T10:00:00.123000+00:00",
    "Rules": [
        {"Name": "tag", "Actions": [{"AddHeader": {"HeaderName": "X-A", "HeaderValue": "1"}}]},
    ],
}


def test_file_rule_set_in_get_rule_set_form(tmp_path: Path) -> None:
    write(tmp_path, GET_RULE_SET, "rulesets/exported.json")
    data = base()
    data["RuleSets"].append({"File": "rulesets/exported.json"})
    data["IngressPoints"][0]["RuleSetId"] = GET_RULE_SET["RuleSetArn"]
    cfg = config.load(write(tmp_path, data))
    rs = cfg.rule_set("rs-12345abcde")
    assert rs.name == "exported" and rs.rules[0].name == "tag"
    assert rs.arn == "arn:aws:ses:eu-west-1:123456789012:mailmanager-rule-set/rs-12345abcde"
    assert cfg.ingress_points[0].rule_set_id == "rs-12345abcde"


def test_problem_inside_file_rule_set_names_that_file(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(GET_RULE_SET))
    bad["Rules"][0]["Actions"][0]["AddHeader"]["HeaderName"] = "Subject"
    bad["Extra"] = 1
    file = write(tmp_path, bad, "rulesets/exported.json")
    data = base()
    data["RuleSets"].append({"File": "rulesets/exported.json"})
    problems = problems_of(write(tmp_path, data))
    p = find(problems, "$.Rules[0].Actions[0].AddHeader.HeaderName", "does not match pattern")
    assert p.file == str(file)
    assert find(problems, "$", "unknown key 'Extra'").file == str(file)
    assert len(problems) == 2


def test_missing_file_rule_set_is_reported_in_config(tmp_path: Path) -> None:
    data = base()
    data["RuleSets"].append({"File": "nope.json", "Other": 1})
    path = write(tmp_path, data)
    problems = problems_of(path)
    assert find(problems, "$.RuleSets[1].File", "file not found").file == str(path)
    find(problems, "$.RuleSets[1]", "unknown key 'Other'")
