"""Mail Manager's vended log records (`Server.Log.Records: mailmanager`, semantics.md §6).

Each record is one ordinary JSON log line (logs.py) whose `event` names the record type —
`mailmanager.ingress_point.APPLICATION_LOGS`, `mailmanager.ingress_point.TRAFFIC_POLICY_DEBUG_LOGS`
or `mailmanager.rule_set.APPLICATION_LOGS` — and whose other keys, besides the line's own `ts` and
`level` (plus `worker`/`pid` with several processes), are exactly AWS's field names with AWS's
types: epoch-millisecond `event_timestamp`, lists as JSON lists, null where AWS has no value.
Records are written whatever `Log.Level` says (they were asked for) and never carry a secret.
This module owns the record shapes of the ingress point and rule set application logs; the
traffic policy debug record is built by rules/traffic_policy.py from its own evaluation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

from mailmgr import logs
from mailmgr.config.models import Config, IngressPoint, IngressPointType
from mailmgr.message import ClientCertificate, InboundMessage, SessionFacts

INGRESS_APPLICATION_LOGS = "mailmanager.ingress_point.APPLICATION_LOGS"
TRAFFIC_POLICY_DEBUG_LOGS = "mailmanager.ingress_point.TRAFFIC_POLICY_DEBUG_LOGS"
RULE_SET_APPLICATION_LOGS = "mailmanager.rule_set.APPLICATION_LOGS"

# The rule action's AWS union member name (Action.name) -> the record's `action_name`.
ACTION_NAMES: dict[str, str] = {
    "WriteToS3": "WRITE_TO_S3",
    "Drop": "DROP",
    "Relay": "RELAY",
    "Archive": "ARCHIVE",
    "Send": "SEND",
    "AddHeader": "ADD_HEADER",
    "ReplaceRecipient": "REPLACE_RECIPIENT",
    "DeliverToMailbox": "DELIVER_TO_MAILBOX",
    "DeliverToQBusiness": "DELIVER_TO_Q_BUSINESS",
    "PublishToSns": "PUBLISH_TO_SNS",
    "InvokeLambda": "INVOKE_LAMBDA",
    "Bounce": "BOUNCE",
}
# The executor's status -> `action_status` (a temporary failure waits for a retry).
ACTION_STATUSES: dict[str, str] = {
    "SUCCESS": "SUCCESS",
    "FAILED": "FAILURE",
    "RETRY": "IN_PROGRESS",
}
# Per process: with the client's address and port it names one SMTP session (see session_id).
_BOOT = os.urandom(8)


def write(event: str, fields: dict[str, Any]) -> None:
    """One record line; `fields` is handed over (not copied)."""
    logs.record(event, fields)


def session_id(session: SessionFacts) -> str:
    """`ingress_point_session_id`: 16 hex digits, the same for every transaction of one SMTP
    session. mailmgr keeps no session counter on the RCPT path, so the ID is derived from this
    process, the ingress point and the client's (post-PROXY) address and port, which no two
    concurrent sessions share; a later session reusing the same source port may repeat it."""
    digest = hashlib.blake2b(
        f"{session.ingress_point_id}|{session.peer_ip}|{session.peer_port}".encode(),
        key=_BOOT, digest_size=8,
    )
    return digest.hexdigest()


class IngressRecords:
    """Writes the ingress point `APPLICATION_LOGS` record of every accepted message.

    Built from one config (`from_config`; None when records are off) and replaced on reload."""

    __slots__ = ("_points",)

    def __init__(self, points: Mapping[str, IngressPoint]) -> None:
        self._points = dict(points)

    @classmethod
    def from_config(cls, config: Config) -> IngressRecords | None:
        if not config.server.log_records:
            return None
        return cls({p.id: p for p in config.ingress_points})

    def accepted(self, message: InboundMessage) -> None:
        """After the spool commit, before the 250 is written."""
        write(INGRESS_APPLICATION_LOGS,
              ingress_record(self._points.get(message.session.ingress_point_id), message))


def ingress_record(point: IngressPoint | None, message: InboundMessage) -> dict[str, Any]:
    """The ingress point `APPLICATION_LOGS` fields of one accepted message. `point` None (the
    point was removed by a reload while the session ran) leaves its fields null."""
    session, envelope = message.session, message.envelope
    return {
        "resource_arn": point.arn if point else None,
        "event_timestamp": int(message.received_at * 1000),
        "ingress_point_type": point.type.value if point else None,
        "ingress_point_name": session.ingress_point_name,
        "message_id": message.id,
        "message_size_bytes": len(message.content),
        "rule_set_id": point.rule_set_id if point else None,
        "sender_ip_address": session.peer_ip,
        "smtp_mail_from": envelope.mail_from,
        "smtp_helo": session.helo,
        "tls_protocol": session.tls_protocol,
        "tls_cipher_suite": session.tls_cipher,
        "recipients": list(envelope.rcpt_to),
        "ingress_point_metadata": point_metadata(point, session),
    }


def point_metadata(point: IngressPoint | None, session: SessionFacts) -> dict[str, Any]:
    """AUTH: which password (never the password itself); MTLS: the client certificate and the
    trust store's revocation setup; OPEN: empty. mailmgr does not version SMTP passwords (an
    inline `SmtpPassword` has one; a `SecretArn` point accepts the secret's AWSCURRENT and
    AWSPREVIOUS values), so `password_version` is always null; `secrets_manager_arn` is the
    point's `SecretArn` (null for an inline password)."""
    if point is None:
        return {}
    if point.type is IngressPointType.AUTH:
        return {
            "password_version": None,
            "secrets_manager_arn": point.secret_arn,
        }
    if point.type is IngressPointType.MTLS:
        store = point.trust_store
        return {
            "client_certificate_details": certificate_details(session.client_certificate),
            "trust_store_monitoring": {
                "crl_checked": bool(store is not None and store.crl_content),
                "kms_key_arn": store.kms_key_arn if store is not None else None,
            },
        }
    return {}


def certificate_details(cert: ClientCertificate | None) -> dict[str, Any] | None:
    """The verified client certificate's identity (no key material)."""
    if cert is None:
        return None
    return {
        "common_names": list(cert.values("CN")),
        "serial_number": next(iter(cert.values("SERIAL_NUMBER")), None),
        "subject_alternative_names": {
            name: list(values) for name, values in cert.attributes if name.startswith("SAN_")
        },
        "issuer": cert.issuer,
        "not_before": cert.not_before,
        "not_after": cert.not_after,
    }


def rule_record(
    message_id: str,
    rule_set_name: str,
    rule_name: str,
    rule_index: int,
    recipients: tuple[str, ...],
    action: tuple[str, int, str, str | None] | None,
) -> None:
    """Write one rule set `APPLICATION_LOGS` record. `action`: (Action.name, 1-based index,
    executor status SUCCESS|FAILED|RETRY, failure reason) of the action run; None for a rule
    that did not match (`recipients` empty, no `action_metadata`)."""
    fields: dict[str, Any] = {
        "message_id": message_id,
        "rule_set_name": rule_set_name,
        "rule_name": rule_name,
        "rule_index": rule_index,
        "recipients_matched": list(recipients),
    }
    if action is not None:
        name, index, status, failure = action
        metadata: dict[str, Any] = {
            "action_name": ACTION_NAMES.get(name, name.upper()),
            "action_index": index,
            "action_status": ACTION_STATUSES.get(status, status),
        }
        if status != "SUCCESS":
            metadata["action_failure"] = failure
        fields["action_metadata"] = metadata
    write(RULE_SET_APPLICATION_LOGS, fields)
