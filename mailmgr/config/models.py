"""Typed, validated configuration: what the loader produces and everything else consumes.

Every AWS enum is a StrEnum; every AWS union becomes one dataclass per member. References to
other resources are already resolved to resource IDs. Nothing here does I/O or validation.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from mailmgr.config.analyzer_models import Analyzer as Analyzer
from mailmgr.config.analyzer_models import AnalyzerEngine as AnalyzerEngine
from mailmgr.config.analyzer_models import ClamavSettings as ClamavSettings
from mailmgr.config.analyzer_models import DnsblSettings as DnsblSettings
from mailmgr.config.analyzer_models import DnsblZone as DnsblZone
from mailmgr.config.analyzer_models import DnsblZoneType as DnsblZoneType
from mailmgr.config.analyzer_models import RspamdSettings as RspamdSettings
from mailmgr.config.server_models import AdminSettings as AdminSettings
from mailmgr.config.server_models import AnalysisSettings as AnalysisSettings
from mailmgr.config.server_models import ApiCredentials as ApiCredentials
from mailmgr.config.server_models import ListenAddress as ListenAddress
from mailmgr.config.server_models import RetryPolicy as RetryPolicy
from mailmgr.config.server_models import ServerConfig as ServerConfig
from mailmgr.config.server_models import ServerLimits as ServerLimits
from mailmgr.config.server_models import SharedStateSettings as SharedStateSettings


class IngressPointType(StrEnum):
    OPEN = "OPEN"
    AUTH = "AUTH"
    MTLS = "MTLS"


class TlsPolicy(StrEnum):
    REQUIRED = "REQUIRED"
    OPTIONAL = "OPTIONAL"
    FIPS = "FIPS"


class IngressPointStatus(StrEnum):
    ACTIVE = "ACTIVE"
    CLOSED = "CLOSED"


class AcceptAction(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"


class ActionFailurePolicy(StrEnum):
    CONTINUE = "CONTINUE"
    DROP = "DROP"


class StringOperator(StrEnum):
    EQUALS = "EQUALS"
    NOT_EQUALS = "NOT_EQUALS"
    STARTS_WITH = "STARTS_WITH"
    ENDS_WITH = "ENDS_WITH"
    CONTAINS = "CONTAINS"


class NumberOperator(StrEnum):
    EQUALS = "EQUALS"
    NOT_EQUALS = "NOT_EQUALS"
    LESS_THAN = "LESS_THAN"
    GREATER_THAN = "GREATER_THAN"
    LESS_THAN_OR_EQUAL = "LESS_THAN_OR_EQUAL"
    GREATER_THAN_OR_EQUAL = "GREATER_THAN_OR_EQUAL"


class IpOperator(StrEnum):
    CIDR_MATCHES = "CIDR_MATCHES"
    NOT_CIDR_MATCHES = "NOT_CIDR_MATCHES"


class BooleanOperator(StrEnum):
    IS_TRUE = "IS_TRUE"
    IS_FALSE = "IS_FALSE"


class VerdictOperator(StrEnum):
    EQUALS = "EQUALS"
    NOT_EQUALS = "NOT_EQUALS"


class TlsProtocolOperator(StrEnum):
    MINIMUM_TLS_VERSION = "MINIMUM_TLS_VERSION"
    IS = "IS"


class MailFrom(StrEnum):
    REPLACE = "REPLACE"
    PRESERVE = "PRESERVE"


# ---------------------------------------------------------------- server


# ---------------------------------------------------------------- ingress points


@dataclass(frozen=True)
class TlsCertificate:
    certificate_file: Path
    private_key_file: Path


@dataclass(frozen=True)
class TrustStore:
    ca_content: str
    crl_content: str | None = None
    kms_key_arn: str | None = None


@dataclass(frozen=True)
class ProxyProtocol:
    """`ProxyProtocol` extension key: PROXY v1/v2 is required from `trusted_sources`;
    `timeout_seconds` bounds the wait for the header (default 5)."""

    trusted_sources: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class IngressPoint:
    id: str
    name: str
    arn: str
    type: IngressPointType
    rule_set_id: str
    traffic_policy_id: str
    tls_policy: TlsPolicy
    listen: tuple[ListenAddress, ...]
    tls_wrapped_listen: tuple[ListenAddress, ...] = ()
    tls_certificate: TlsCertificate | None = None
    smtp_password: str | None = field(default=None, repr=False)
    secret_arn: str | None = None
    trust_store: TrustStore | None = None
    status: IngressPointStatus = IngressPointStatus.ACTIVE
    proxy_protocol: ProxyProtocol | None = None


# ---------------------------------------------------------------- traffic policies


@dataclass(frozen=True)
class Analysis:
    """`analyzer`: the referenced analyzer's Name (the loader resolves an ARN to it);
    `result_field`: one of its engine's RESULT_FIELDS, without AWS's optional `addon.` prefix."""

    analyzer: str
    result_field: str


@dataclass(frozen=True)
class IngressStringCondition:
    """StringExpression: attribute RECIPIENT, or an Analysis result."""

    operator: StringOperator
    values: tuple[str, ...]
    attribute: str | None = None
    analysis: Analysis | None = None


@dataclass(frozen=True)
class IngressIpCondition:
    """IpExpression (SENDER_IP, IPv4) or Ipv6Expression (SENDER_IPV6)."""

    attribute: str  # SENDER_IP | SENDER_IPV6
    operator: IpOperator
    cidrs: tuple[str, ...]


@dataclass(frozen=True)
class IngressTlsCondition:
    operator: TlsProtocolOperator
    value: str  # TLS1_2 | TLS1_3


@dataclass(frozen=True)
class IngressBooleanCondition:
    operator: BooleanOperator
    address_list_id: str | None = None  # IsInAddressList on RECIPIENT
    analysis: Analysis | None = None


PolicyCondition = (
    IngressStringCondition | IngressIpCondition | IngressTlsCondition | IngressBooleanCondition
)


@dataclass(frozen=True)
class PolicyStatement:
    action: AcceptAction
    conditions: tuple[PolicyCondition, ...]


@dataclass(frozen=True)
class TrafficPolicy:
    id: str
    name: str
    arn: str
    default_action: AcceptAction
    statements: tuple[PolicyStatement, ...]
    max_message_size: int | None = None


# ---------------------------------------------------------------- rule conditions


@dataclass(frozen=True)
class BooleanCondition:
    """BooleanExpression: exactly one of attribute, analysis, address-list membership."""

    operator: BooleanOperator
    attribute: str | None = None  # READ_RECEIPT_REQUESTED | TLS | TLS_WRAPPED
    analysis: Analysis | None = None
    address_list_attribute: str | None = None  # RECIPIENT | MAIL_FROM | SENDER | FROM | TO | CC
    address_list_id: str | None = None


@dataclass(frozen=True)
class StringCondition:
    """StringExpression: exactly one of attribute, mime_header, client_certificate_attribute,
    analysis."""

    operator: StringOperator
    values: tuple[str, ...]
    attribute: str | None = None  # MAIL_FROM | HELO | RECIPIENT | SENDER | FROM | SUBJECT | TO | CC
    mime_header: str | None = None
    client_certificate_attribute: str | None = None
    analysis: Analysis | None = None


@dataclass(frozen=True)
class NumberCondition:
    operator: NumberOperator
    value: float
    attribute: str = "MESSAGE_SIZE"


@dataclass(frozen=True)
class IpCondition:
    operator: IpOperator
    values: tuple[str, ...]
    attribute: str = "SOURCE_IP"


@dataclass(frozen=True)
class VerdictCondition:
    operator: VerdictOperator
    values: tuple[str, ...]  # PASS | FAIL | GRAY | PROCESSING_FAILED
    attribute: str | None = None  # SPF | DKIM
    analysis: Analysis | None = None


@dataclass(frozen=True)
class DmarcCondition:
    operator: VerdictOperator
    values: tuple[str, ...]  # NONE | QUARANTINE | REJECT


RuleCondition = (
    BooleanCondition
    | StringCondition
    | NumberCondition
    | IpCondition
    | VerdictCondition
    | DmarcCondition
)


# ---------------------------------------------------------------- rule actions
#
# One class per member of the AWS RuleAction union. `aws_name` is the union member name and the
# key of actions/registry.py. `params` keeps the AWS-shaped parameters as written (for explain
# and logs); it never carries secrets because rule actions have none.


@dataclass(frozen=True)
class _Action:
    aws_name: ClassVar[str] = ""
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class DropAction(_Action):
    aws_name: ClassVar[str] = "Drop"


@dataclass(frozen=True)
class AddHeaderAction(_Action):
    aws_name: ClassVar[str] = "AddHeader"
    header_name: str = ""
    header_value: str = ""


@dataclass(frozen=True)
class ReplaceRecipientAction(_Action):
    aws_name: ClassVar[str] = "ReplaceRecipient"
    replace_with: tuple[str, ...] = ()


@dataclass(frozen=True)
class _FailingAction(_Action):
    failure_policy: ActionFailurePolicy = ActionFailurePolicy.CONTINUE


@dataclass(frozen=True)
class ArchiveAction(_FailingAction):
    aws_name: ClassVar[str] = "Archive"
    archive_id: str = ""


@dataclass(frozen=True)
class RelayAction(_FailingAction):
    aws_name: ClassVar[str] = "Relay"
    relay_id: str = ""
    mail_from: MailFrom = MailFrom.PRESERVE


@dataclass(frozen=True)
class WriteToS3Action(_FailingAction):
    aws_name: ClassVar[str] = "WriteToS3"
    role_arn: str = ""
    bucket: str = ""
    prefix: str | None = None
    kms_key_id: str | None = None


@dataclass(frozen=True)
class SendAction(_FailingAction):
    aws_name: ClassVar[str] = "Send"
    role_arn: str = ""


@dataclass(frozen=True)
class DeliverToMailboxAction(_FailingAction):
    aws_name: ClassVar[str] = "DeliverToMailbox"
    mailbox_arn: str = ""
    role_arn: str = ""


@dataclass(frozen=True)
class DeliverToQBusinessAction(_FailingAction):
    aws_name: ClassVar[str] = "DeliverToQBusiness"
    application_id: str = ""
    index_id: str = ""
    role_arn: str = ""


@dataclass(frozen=True)
class PublishToSnsAction(_FailingAction):
    aws_name: ClassVar[str] = "PublishToSns"
    topic_arn: str = ""
    role_arn: str = ""
    encoding: str = "UTF-8"  # UTF-8 | BASE64
    payload_type: str = "CONTENT"  # CONTENT | HEADERS


@dataclass(frozen=True)
class BounceAction(_FailingAction):
    aws_name: ClassVar[str] = "Bounce"
    role_arn: str = ""
    sender: str = ""
    status_code: str = ""
    smtp_reply_code: str = ""
    diagnostic_message: str = ""
    message: str | None = None


@dataclass(frozen=True)
class InvokeLambdaAction(_FailingAction):
    aws_name: ClassVar[str] = "InvokeLambda"
    function_arn: str = ""
    invocation_type: str = "EVENT"  # EVENT | REQUEST_RESPONSE
    role_arn: str = ""
    retry_time_minutes: int | None = None


RuleAction = (
    DropAction
    | AddHeaderAction
    | ReplaceRecipientAction
    | ArchiveAction
    | RelayAction
    | WriteToS3Action
    | SendAction
    | DeliverToMailboxAction
    | DeliverToQBusinessAction
    | PublishToSnsAction
    | BounceAction
    | InvokeLambdaAction
)

ALL_ACTION_CLASSES: tuple[type[_Action], ...] = (
    DropAction,
    AddHeaderAction,
    ReplaceRecipientAction,
    ArchiveAction,
    RelayAction,
    WriteToS3Action,
    SendAction,
    DeliverToMailboxAction,
    DeliverToQBusinessAction,
    PublishToSnsAction,
    BounceAction,
    InvokeLambdaAction,
)


@dataclass(frozen=True)
class Rule:
    name: str  # AWS allows an unnamed rule; the loader names it "rule-<n>" (1-based)
    conditions: tuple[RuleCondition, ...]
    unless: tuple[RuleCondition, ...]
    actions: tuple[RuleAction, ...]


@dataclass(frozen=True)
class RuleSet:
    id: str
    name: str
    arn: str
    rules: tuple[Rule, ...]


# ---------------------------------------------------------------- other resources


@dataclass(frozen=True)
class RelayTls:
    required: bool = False
    verify: bool = True
    ca_file: Path | None = None


@dataclass(frozen=True)
class Relay:
    id: str
    name: str
    arn: str
    server_name: str
    server_port: int
    secret_arn: str | None = None  # None: NoAuthentication
    mail_from_replacement: str | None = None
    tls: RelayTls = RelayTls()


@dataclass(frozen=True)
class AddressList:
    id: str
    name: str
    arn: str
    members: tuple[str, ...]  # lower-cased, validated, inline members plus the File's


@dataclass(frozen=True)
class LocalStorage:
    """Archive under Server.DataDirectory/archives/<archive id>."""


@dataclass(frozen=True)
class S3Storage:
    bucket: str
    prefix: str | None = None  # object key = prefix + ArchivedMessageId, concatenated as is
    role_arn: str | None = None
    kms_key_arn: str | None = None  # SSE-KMS; else the archive's KmsKeyArn


RETENTION_DAYS: dict[str, int | None] = {
    "THREE_MONTHS": 90,
    "SIX_MONTHS": 180,
    "NINE_MONTHS": 270,
    "ONE_YEAR": 365,
    "EIGHTEEN_MONTHS": 548,
    "TWO_YEARS": 730,
    "THIRTY_MONTHS": 913,
    "THREE_YEARS": 1095,
    "FOUR_YEARS": 1460,
    "FIVE_YEARS": 1825,
    "SIX_YEARS": 2190,
    "SEVEN_YEARS": 2555,
    "EIGHT_YEARS": 2920,
    "NINE_YEARS": 3285,
    "TEN_YEARS": 3650,
    "PERMANENT": None,
}


@dataclass(frozen=True)
class Archive:
    id: str
    name: str
    arn: str
    retention: str = "THREE_MONTHS"  # a RETENTION_DAYS key; AWS's default retention
    kms_key_arn: str | None = None
    storage: LocalStorage | S3Storage = LocalStorage()

    @property
    def retention_days(self) -> int | None:
        return RETENTION_DAYS[self.retention]


@dataclass(frozen=True)
class Mailbox:
    arn: str
    lmtp: ListenAddress | None = None
    maildir: Path | None = None


@dataclass(frozen=True)
class Config:
    source: Path
    server: ServerConfig
    ingress_points: tuple[IngressPoint, ...]
    traffic_policies: tuple[TrafficPolicy, ...]
    rule_sets: tuple[RuleSet, ...]
    relays: tuple[Relay, ...] = ()
    address_lists: tuple[AddressList, ...] = ()
    archives: tuple[Archive, ...] = ()
    mailboxes: tuple[Mailbox, ...] = ()
    analyzers: tuple[Analyzer, ...] = ()

    def analyzer(self, name: str) -> Analyzer:
        return next(a for a in self.analyzers if a.name == name)

    def rule_set(self, rule_set_id: str) -> RuleSet:
        return next(r for r in self.rule_sets if r.id == rule_set_id)

    def traffic_policy(self, policy_id: str) -> TrafficPolicy:
        return next(p for p in self.traffic_policies if p.id == policy_id)

    def ingress_point(self, ingress_id: str) -> IngressPoint:
        return next(i for i in self.ingress_points if i.id == ingress_id)

    def archive(self, archive_id: str) -> Archive:
        return next(a for a in self.archives if a.id == archive_id)

    def address_list(self, list_id: str) -> AddressList:
        return next(a for a in self.address_lists if a.id == list_id)

    def relay(self, relay_id: str) -> Relay:
        return next(r for r in self.relays if r.id == relay_id)
