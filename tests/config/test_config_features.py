"""Not-yet-implemented features and coverage of the AWS RuleAction union."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import botocore.session
import pytest
from config_helpers import MAILBOX_ARN, Problems, base, write

from mailmgr import certs, config
from mailmgr.config import features
from mailmgr.config.actions import ACTION_BUILDERS
from mailmgr.config.models import ALL_ACTION_CLASSES, AcceptAction, S3Storage

ROLE = "arn:aws:iam::123456789012:role/mail"
RULE = "$.RuleSets[0].Rules[0].Actions[0]"

ACTION_PARAMS: dict[str, dict[str, Any]] = {
    "Relay": {"Relay": "up", "MailFrom": "REPLACE"},
    "WriteToS3": {"RoleArn": ROLE, "S3Bucket": "bucket", "S3Prefix": "in"},
    "Send": {"RoleArn": ROLE},
    "DeliverToMailbox": {"MailboxArn": MAILBOX_ARN, "RoleArn": ROLE},
    "DeliverToQBusiness": {"ApplicationId": "a" * 36, "IndexId": "b" * 36, "RoleArn": ROLE},
    "PublishToSns": {"TopicArn": "arn:aws:sns:us-east-1:123456789012:topic", "RoleArn": ROLE},
    "Bounce": {"RoleArn": ROLE, "Sender": "postmaster@example.test", "StatusCode": "5.1.1",
               "SmtpReplyCode": "550", "DiagnosticMessage": "no such user"},
    "InvokeLambda": {"FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
                     "InvocationType": "EVENT", "RoleArn": ROLE},
}


@pytest.mark.parametrize("action", sorted(ACTION_PARAMS))
def test_action_is_rejected_only_while_not_implemented(
    problems: Problems, tmp_path: Path, action: str
) -> None:
    data = base()
    data["Relays"] = [{"RelayName": "up", "ServerName": "smtp.test", "ServerPort": 25,
                       "Authentication": {"NoAuthentication": {}}}]
    data["Mailboxes"] = [{"MailboxArn": MAILBOX_ARN, "Maildir": "md"}]
    data["RuleSets"][0]["Rules"][0]["Actions"] = [{action: ACTION_PARAMS[action]}]
    if action not in features.NOT_IMPLEMENTED_ACTIONS:  # implemented: accepted
        loaded = config.load(write(tmp_path, data))
        assert loaded.rule_sets[0].rules[0].actions[0].aws_name == action
        return
    (p,) = problems(data)  # the model was built without any other problem
    assert p.path == f"{RULE}.{action}"
    assert p.message == f"action '{action}' is not implemented yet in this version of mailmgr"


def test_aws_actions_are_implemented() -> None:
    aws = {"WriteToS3", "Send", "DeliverToMailbox", "DeliverToQBusiness", "PublishToSns",
           "Bounce", "InvokeLambda"}
    assert not aws & features.NOT_IMPLEMENTED_ACTIONS


def _ingress(**changes: Any) -> dict[str, Any]:
    data = base()
    data["IngressPoints"][0].update(changes)
    return data


CERT = {"CertificateFile": "s.pem", "PrivateKeyFile": "s.key"}
# The trust store is parsed at load time, so it must hold a real CA.
TRUST = {"TlsAuthConfiguration": {"TrustStore": {
    "CAContent": certs.cert_pem(certs.make_ca("config test CA").certificate).decode()}}}


@pytest.mark.parametrize("changes", [
    {"Type": "AUTH", "TlsCertificate": CERT,
     "IngressPointConfiguration": {"SmtpPassword": "secret-pass"}},
    {"Type": "AUTH", "TlsPolicy": "REQUIRED", "TlsCertificate": CERT,
     "IngressPointConfiguration": {
         "SecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:smtp-AbCdEf"}},
    {"Type": "MTLS", "TlsPolicy": "REQUIRED", "TlsCertificate": CERT,
     "IngressPointConfiguration": TRUST},
    {"TlsPolicy": "FIPS", "TlsCertificate": CERT},
    {"TlsWrappedListen": ["127.0.0.1:0"], "TlsCertificate": CERT},
])
def test_secure_ingress_features_are_accepted(tmp_path: Path, changes: dict[str, Any]) -> None:
    loaded = config.load(write(tmp_path, _ingress(**changes)))
    point = loaded.ingress_points[0]
    assert point.type.value == changes.get("Type", "OPEN")
    assert point.tls_policy.value == changes.get("TlsPolicy", "OPTIONAL")
    assert len(point.tls_wrapped_listen) == len(changes.get("TlsWrappedListen", []))


def test_open_ingress_point_takes_no_configuration(problems: Problems) -> None:
    (p,) = problems(_ingress(IngressPointConfiguration={"SmtpPassword": "secret-pass"}))
    assert p.path == "$.IngressPoints[0].IngressPointConfiguration"
    assert p.message == "an OPEN ingress point takes no IngressPointConfiguration"


def test_policy_statements_are_accepted(tmp_path: Path) -> None:
    data = base()
    data["TrafficPolicies"][0]["PolicyStatements"] = [{"Action": "DENY", "Conditions": [
        {"IpExpression": {"Evaluate": {"Attribute": "SENDER_IP"}, "Operator": "CIDR_MATCHES",
                          "Values": ["10.0.0.0/8"]}}]}]
    cfg = config.load(write(tmp_path, data))
    (statement,) = cfg.traffic_policies[0].statements
    assert statement.action is AcceptAction.DENY


def test_archive_s3_storage_is_implemented(tmp_path: Path) -> None:
    data = base()
    data["Archives"][0]["Storage"] = {"S3": {"Bucket": "b", "Prefix": "p/", "KmsKeyArn": "k"}}
    (archive,) = config.load(write(tmp_path, data)).archives
    assert archive.storage == S3Storage("b", "p/", role_arn=None, kms_key_arn="k")
    assert not features.NOT_IMPLEMENTED_ARCHIVE_STORAGE


def test_analyzers_are_no_longer_a_not_implemented_feature() -> None:
    """Analysis conditions are real (tests/config/test_config_analysis.py); nothing in the
    registry of unimplemented features mentions them."""
    assert not hasattr(features, "ANALYZERS")
    assert not hasattr(features, "analyzer_problem")


def test_every_aws_rule_action_is_known() -> None:
    model = botocore.session.get_session().get_service_model("mailmanager")
    aws_actions = set(model.shape_for("RuleAction").members)
    unknown = aws_actions - set(ACTION_BUILDERS) - features.NOT_IMPLEMENTED_ACTIONS
    assert not unknown, f"AWS RuleAction members unknown to the loader: {sorted(unknown)}"
    assert set(ACTION_BUILDERS) == {cls.aws_name for cls in ALL_ACTION_CLASSES} == aws_actions
