"""mailmgr's own checks: extension keys, AWS limits botocore does not encode, Server, Mailboxes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from config_helpers import Problems, base, find, write

from mailmgr import config
from mailmgr.config.models import ListenAddress

INGRESS = "$.IngressPoints[0]"


def _ingress(**changes: Any) -> dict[str, Any]:
    data = base()
    data["IngressPoints"][0].update(changes)
    return data


@pytest.mark.parametrize(("listen", "reason"), [
    ("127.0.0.1", "is not host:port"),
    ("127.0.0.1:65536", "invalid port (0-65535)"),
    ("127.0.0.1:x", "invalid port"),
    (":25", "has no host"),
    ("::1:25", "write IPv6 addresses as [address]:port"),
    ("[::1]", "needs ':port' after the ']'"),
    ("[::1:25", "unterminated"),
])
def test_bad_listen_address(problems: Problems, listen: str, reason: str) -> None:
    (p,) = problems(_ingress(Listen=["127.0.0.1:0", listen]))
    assert p.path == f"{INGRESS}.Listen[1]"
    assert p.message.startswith("invalid listen address:") and reason in p.message


def test_listen_forms(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, _ingress(Listen=["localhost:25", "[::]:0", "0.0.0.0:65535"])))
    assert cfg.ingress_points[0].listen == (
        ListenAddress("localhost", 25), ListenAddress("::", 0), ListenAddress("0.0.0.0", 65535))


def test_ingress_needs_a_listener(problems: Problems) -> None:
    found = problems(_ingress(Listen=[], TlsWrappedListen=[]))
    find(found, INGRESS, "needs at least one Listen or TlsWrappedListen address")
    found = problems(_ingress(Listen="127.0.0.1:25"))
    find(found, f"{INGRESS}.Listen", "expected a list, got string")


def test_tls_certificate_both_or_neither(problems: Problems) -> None:
    (p,) = problems(_ingress(TlsCertificate={"CertificateFile": "a.pem"}))
    assert p.path == f"{INGRESS}.TlsCertificate"
    assert p.message == "TlsCertificate needs both CertificateFile and PrivateKeyFile"


def test_certificate_files_need_not_exist(tmp_path: Path) -> None:
    cert = {"CertificateFile": "missing.pem", "PrivateKeyFile": "missing.key"}
    cfg = config.load(write(tmp_path, _ingress(TlsPolicy="REQUIRED", TlsCertificate=cert)))
    assert cfg.ingress_points[0].tls_certificate is not None


def test_required_tls_needs_certificate(problems: Problems) -> None:
    (p,) = problems(_ingress(TlsPolicy="REQUIRED"))
    assert (p.path, p.message) == (f"{INGRESS}.TlsPolicy",
                                   "TlsPolicy REQUIRED needs a TlsCertificate")


def test_implicit_tls_needs_certificate(problems: Problems) -> None:
    (p,) = problems(_ingress(TlsWrappedListen=["127.0.0.1:0"]))
    assert (p.path, p.message) == (f"{INGRESS}.TlsWrappedListen",
                                   "TlsWrappedListen needs a TlsCertificate")


def test_auth_ingress_needs_certificate(problems: Problems) -> None:
    found = problems(_ingress(Type="AUTH",
                              IngressPointConfiguration={"SmtpPassword": "Secret-Pass-1"}))
    assert [(p.path, p.message) for p in found] == [
        (f"{INGRESS}.Type", "an AUTH ingress point needs a TlsCertificate")]


def test_status_and_certificate_keys(problems: Problems) -> None:
    found = problems(_ingress(Status="OPENED", TlsCertificate={
        "CertificateFile": "a", "PrivateKeyFile": "b", "Chain": "c"}))
    find(found, f"{INGRESS}.Status", "'OPENED' is not one of ACTIVE, CLOSED")
    find(found, f"{INGRESS}.TlsCertificate", "unknown key 'Chain'")


def test_max_message_size_40_mb(problems: Problems) -> None:
    data = base()
    data["TrafficPolicies"][0]["MaxMessageSizeBytes"] = 41943041
    (p,) = problems(data)
    assert p.path == "$.TrafficPolicies[0].MaxMessageSizeBytes"
    assert p.message == "value 41943041 is greater than the maximum 41943040 (40 MB)"


def test_statement_limits(problems: Problems) -> None:
    condition = {"TlsExpression": {"Evaluate": {"Attribute": "TLS_PROTOCOL"},
                                   "Operator": "IS", "Value": "TLS1_3"}}
    data = base()
    data["TrafficPolicies"][0]["PolicyStatements"] = [
        {"Action": "ALLOW", "Conditions": [condition] * 11}] * 21
    found = problems(data)
    find(found, "$.TrafficPolicies[0].PolicyStatements",
         "at most 20 statements per traffic policy, got 21")
    find(found, "$.TrafficPolicies[0].PolicyStatements[20].Conditions",
         "at most 10 conditions per statement, got 11")


@pytest.mark.parametrize(("value", "text"), [
    ("a\r\nBcc: x@y", "HeaderValue must not contain CR or LF characters"),
    ("x" * 129, "is longer than 128 characters (HeaderValue)"),
    ("", "is shorter than 1 characters (HeaderValue)"),
])
def test_add_header_value(problems: Problems, value: str, text: str) -> None:
    data = base()
    data["RuleSets"][0]["Rules"][0]["Actions"] = [
        {"AddHeader": {"HeaderName": "X-A", "HeaderValue": value}}]
    (p,) = problems(data)
    assert p.path == "$.RuleSets[0].Rules[0].Actions[0].AddHeader.HeaderValue"
    assert text in p.message


def test_add_header_name_pattern(problems: Problems) -> None:
    data = base()
    data["RuleSets"][0]["Rules"][0]["Actions"] = [
        {"AddHeader": {"HeaderName": "Subject", "HeaderValue": "v"}}]
    (p,) = problems(data)
    assert p.message == r"value 'Subject' does not match pattern [xX]\-[a-zA-Z0-9\-]+ (HeaderName)"


def test_unnamed_rules_are_numbered(tmp_path: Path) -> None:
    data = base()
    data["RuleSets"][0]["Rules"] = [{"Actions": [{"Drop": {}}]}, {"Name": "n", "Actions": [
        {"Drop": {}}]}, {"Actions": [{"Drop": {}}]}]
    cfg = config.load(write(tmp_path, data))
    assert [r.name for r in cfg.rule_sets[0].rules] == ["rule-1", "n", "rule-3"]


@pytest.mark.parametrize(("server", "path", "text"), [
    ({"AccountId": "1234"}, "$.Server.AccountId", "AccountId must be a string of 12 digits"),
    ({"Workers": 257}, "$.Server.Workers", "greater than the maximum 256"),
    ({"Workers": 2.5}, "$.Server.Workers", "expected an integer, got number"),
    ({"Log": {"Format": "xml"}}, "$.Server.Log.Format", "'xml' is not one of json, text"),
    ({"Log": {"Level": "LOUD"}}, "$.Server.Log.Level", "'LOUD' is not one of DEBUG"),
    ({"Dns": {"Nameservers": ["1.2.3.4:x"]}}, "$.Server.Dns.Nameservers[0]", "invalid port"),
    ({"Dns": {"Timeout": -1}}, "$.Server.Dns.Timeout", "less than the minimum"),
    ({"Aws": {"EndpointUrl": "localhost:5000"}}, "$.Server.Aws.EndpointUrl", "not an http(s)"),
    ({"Aws": {"Endpoint": "x"}}, "$.Server.Aws", "unknown key 'Endpoint'"),
    ({"Region": "Mars"}, "$.Server.Region", "'Mars' is not an AWS region name"),
    ({"Retry": {"InitialDelaySeconds": 10, "MaxDelaySeconds": 5}}, "$.Server.Retry",
     "MaxDelaySeconds must not be less than InitialDelaySeconds"),
    ({"Colour": "blue"}, "$.Server", "unknown key 'Colour'"),
])
def test_server_problems(problems: Problems, server: dict[str, Any], path: str, text: str) -> None:
    data = base()
    data["Server"] = server
    (p,) = problems(data)
    assert p.path == path and text in p.message


@pytest.mark.parametrize(("mailbox", "path", "text"), [
    ({"MailboxArn": "arn:aws:workmail:x:1:organization/m", "Lmtp": "h:1", "Maildir": "d"},
     "$.Mailboxes[0]", "exactly one of Lmtp, Maildir must be set"),
    ({"MailboxArn": "arn:aws:workmail:x:1:organization/m"}, "$.Mailboxes[0]", "exactly one of"),
    ({"Lmtp": "h:1"}, "$.Mailboxes[0]", "missing required key 'MailboxArn'"),
    ({"MailboxArn": "m-1", "Maildir": "d"}, "$.Mailboxes[0].MailboxArn", "'m-1' is not an ARN"),
    ({"MailboxArn": "arn:x:y:z:1:m", "Lmtp": "nohost"}, "$.Mailboxes[0].Lmtp", "invalid LMTP"),
    ({"MailboxArn": "arn:x:y:z:1:m", "Maildir": "d", "Nfs": 1}, "$.Mailboxes[0]", "unknown key"),
])
def test_mailbox_problems(problems: Problems, mailbox: dict[str, Any], path: str,
                          text: str) -> None:
    data = base()
    data["Mailboxes"] = [mailbox]
    (p,) = problems(data)
    assert p.path == path and text in p.message


def test_relay_extension_problems(problems: Problems) -> None:
    data = base()
    data["Relays"] = [{"RelayName": "up", "ServerName": "smtp.test", "ServerPort": 25,
                       "Authentication": {"NoAuthentication": {}},
                       "MailFromReplacement": "not an address",
                       "Tls": {"Required": "yes", "Pin": 1}}]
    found = problems(data)
    find(found, "$.Relays[0].MailFromReplacement", "'not an address' is not an email address")
    find(found, "$.Relays[0].Tls.Required", "expected true or false, got string")
    find(found, "$.Relays[0].Tls", "unknown key 'Pin' (allowed: Required, Verify, CaFile)")
    assert len(found) == 3


def test_archive_storage_union(problems: Problems) -> None:
    data = base()
    data["Archives"][0]["Storage"] = {"Local": {}, "S3": {"Bucket": "b"}}
    (p,) = problems(data)
    assert (p.path, p.message) == ("$.Archives[0].Storage", "exactly one of Local, S3 must be set")


def test_auth_and_mtls_need_their_configuration(problems: Problems) -> None:
    data = base()
    data["IngressPoints"][0]["Type"] = "AUTH"
    found = problems(data)
    find(found, INGRESS, "an AUTH ingress point needs IngressPointConfiguration SmtpPassword")
    data["IngressPoints"][0]["Type"] = "MTLS"
    found = problems(data)
    find(found, INGRESS, "an MTLS ingress point needs IngressPointConfiguration "
                         "TlsAuthConfiguration.TrustStore")
    find(found, f"{INGRESS}.TlsPolicy", "TlsPolicy OPTIONAL is not allowed for an MTLS")
