"""Builders for ingress points, traffic policies, relays, address lists, archives and mailboxes.

Each builder checks mailmgr's extension keys and limits, resolves references and returns a
model (None when the AWS part failed schema validation). Referenced files (address-list imports,
certificates, keys, CA files) and trust-store PEM content are checked through files.py.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from mailmgr.config import features
from mailmgr.config.addresses import parse_member
from mailmgr.config.conditions import policy_statements
from mailmgr.config.documents import address_file_members
from mailmgr.config.fields import (
    Ctx,
    brief,
    check_keys,
    key_path,
    mapping,
    opt_bool,
    opt_number,
    opt_str,
    parse_host_port,
    str_list,
)
from mailmgr.config.files import check_ca_file, check_server_certificate, check_trust_store
from mailmgr.config.ids import ResourceKind
from mailmgr.config.models import (
    AcceptAction,
    AddressList,
    Archive,
    IngressPoint,
    IngressPointStatus,
    IngressPointType,
    ListenAddress,
    LocalStorage,
    Mailbox,
    ProxyProtocol,
    Relay,
    RelayTls,
    S3Storage,
    TlsCertificate,
    TlsPolicy,
    TrafficPolicy,
    TrustStore,
)
from mailmgr.config.refs import Resolver

MAX_MESSAGE_SIZE = 40 * 1024 * 1024
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+|[^@\s]+@[^@\s.]+")


@dataclass(frozen=True)
class Pending:
    """One declared resource: where it is, its identity, and whether its AWS part is valid."""

    kind: ResourceKind
    ctx: Ctx
    path: str
    raw: dict[str, Any]
    name: str
    id: str
    arn: str
    valid: bool

    def at(self, *keys: str) -> str:
        where = self.path
        for key in keys:
            where = key_path(where, key)
        return where


def _listen(p: Pending, key: str) -> tuple[ListenAddress, ...]:
    out = []
    for text, where in str_list(p.ctx, p.raw, key, p.path):
        try:
            out.append(parse_host_port(text))
        except ValueError as exc:
            p.ctx.problem(where, f"invalid listen address: {exc}")
    return tuple(out)


def _certificate(p: Pending) -> TlsCertificate | None:
    value = p.raw.get("TlsCertificate")
    if value is None:
        return None
    where = p.at("TlsCertificate")
    found = mapping(p.ctx, value, where)
    if found is None:
        return None
    check_keys(p.ctx, found, ("CertificateFile", "PrivateKeyFile"), where)
    cert = opt_str(p.ctx, found, "CertificateFile", where)
    key = opt_str(p.ctx, found, "PrivateKeyFile", where)
    if cert is None or key is None:
        p.ctx.problem(where, "TlsCertificate needs both CertificateFile and PrivateKeyFile")
        return None
    certificate = TlsCertificate(p.ctx.resolve(cert), p.ctx.resolve(key))
    check_server_certificate(p.ctx, where, certificate)
    return certificate


_PROXY_TIMEOUT_MAX = 300.0  # seconds; longer holds a socket open for no reason


def _proxy_protocol(p: Pending) -> ProxyProtocol | None:
    """`ProxyProtocol: {TrustedSources: [CIDR, ...], TimeoutSeconds: 5}` (absent: off)."""
    value = p.raw.get("ProxyProtocol")
    if value is None:
        return None
    where = p.at("ProxyProtocol")
    found = mapping(p.ctx, value, where)
    if found is None:
        return None
    check_keys(p.ctx, found, ("TrustedSources", "TimeoutSeconds"), where)
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    sources = str_list(p.ctx, found, "TrustedSources", where)
    if found.get("TrustedSources") in (None, []):
        p.ctx.problem(where, "ProxyProtocol needs TrustedSources (at least one CIDR)")
    for text, at in sources:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=True))
        except ValueError as exc:
            p.ctx.problem(at, f"{brief(text)} is not a CIDR: {exc}")
    timeout = opt_number(p.ctx, found, "TimeoutSeconds", where, maximum=_PROXY_TIMEOUT_MAX)
    if timeout is not None and timeout <= 0:
        p.ctx.problem(key_path(where, "TimeoutSeconds"), "TimeoutSeconds must be greater than 0")
        timeout = None
    return ProxyProtocol(tuple(networks), 5.0 if timeout is None else timeout)


def build_ingress_point(p: Pending, resolver: Resolver) -> IngressPoint | None:
    listen = _listen(p, "Listen")
    wrapped = _listen(p, "TlsWrappedListen")
    if not listen and not wrapped:
        p.ctx.problem(p.path, "an ingress point needs at least one Listen or TlsWrappedListen "
                              "address")
    certificate = _certificate(p)
    proxy = _proxy_protocol(p)
    status = opt_str(p.ctx, p.raw, "Status", p.path) or "ACTIVE"
    if status not in IngressPointStatus.__members__:
        p.ctx.problem(p.at("Status"), f"'{status}' is not one of ACTIVE, CLOSED")
        status = "ACTIVE"
    if not p.valid:
        return None

    raw = p.raw
    kind = IngressPointType(raw["Type"])
    tls_policy = TlsPolicy(raw.get("TlsPolicy", "OPTIONAL"))
    if tls_policy in (TlsPolicy.REQUIRED, TlsPolicy.FIPS) and certificate is None:
        p.ctx.problem(p.at("TlsPolicy"), f"TlsPolicy {tls_policy} needs a TlsCertificate")
    if wrapped and certificate is None:
        p.ctx.problem(p.at("TlsWrappedListen"), "TlsWrappedListen needs a TlsCertificate")
    if kind is not IngressPointType.OPEN and certificate is None:
        # AUTH is never accepted without TLS and MTLS is TLS: neither works without one.
        p.ctx.problem(p.at("Type"), f"an {kind} ingress point needs a TlsCertificate")
    if kind is IngressPointType.MTLS and tls_policy is TlsPolicy.OPTIONAL:
        p.ctx.problem(p.at("TlsPolicy"), "TlsPolicy OPTIONAL is not allowed for an MTLS "
                                         "ingress point")

    configuration = raw.get("IngressPointConfiguration") or {}
    if kind is IngressPointType.OPEN and configuration:
        p.ctx.problem(p.at("IngressPointConfiguration"),
                      "an OPEN ingress point takes no IngressPointConfiguration")
    trust = (configuration.get("TlsAuthConfiguration") or {}).get("TrustStore")
    if kind is IngressPointType.AUTH and not (
        "SmtpPassword" in configuration or "SecretArn" in configuration
    ):
        p.ctx.problem(p.path, "an AUTH ingress point needs IngressPointConfiguration "
                              "SmtpPassword or SecretArn")
    if kind is IngressPointType.MTLS and trust is None:
        p.ctx.problem(p.path, "an MTLS ingress point needs IngressPointConfiguration "
                              "TlsAuthConfiguration.TrustStore")
    if trust is not None:
        check_trust_store(p.ctx, p.at("IngressPointConfiguration", "TlsAuthConfiguration",
                                      "TrustStore"), trust["CAContent"], trust.get("CrlContent"))

    rule_set = resolver.check(p.ctx, p.at("RuleSetId"), ResourceKind.RULE_SET, raw["RuleSetId"])
    policy = resolver.check(p.ctx, p.at("TrafficPolicyId"), ResourceKind.TRAFFIC_POLICY,
                            raw["TrafficPolicyId"])
    return IngressPoint(
        id=p.id, name=p.name, arn=p.arn, type=kind,
        rule_set_id=rule_set or "", traffic_policy_id=policy or "",
        tls_policy=tls_policy, listen=listen, tls_wrapped_listen=wrapped,
        tls_certificate=certificate,
        smtp_password=configuration.get("SmtpPassword"),
        secret_arn=configuration.get("SecretArn"),
        trust_store=None if trust is None else TrustStore(
            trust["CAContent"], trust.get("CrlContent"), trust.get("KmsKeyArn")
        ),
        status=IngressPointStatus(status),
        proxy_protocol=proxy,
    )


def build_traffic_policy(p: Pending, resolver: Resolver) -> TrafficPolicy | None:
    if not p.valid:
        return None
    raw = p.raw
    size = raw.get("MaxMessageSizeBytes")
    if size is not None and size > MAX_MESSAGE_SIZE:
        p.ctx.problem(p.at("MaxMessageSizeBytes"),
                      f"value {size} is greater than the maximum {MAX_MESSAGE_SIZE} (40 MB)")
    statements = policy_statements(p.ctx, resolver, raw["PolicyStatements"],
                                   p.at("PolicyStatements"))
    return TrafficPolicy(id=p.id, name=p.name, arn=p.arn,
                         default_action=AcceptAction(raw["DefaultAction"]),
                         statements=statements, max_message_size=size)


def build_relay(p: Pending, resolver: Resolver) -> Relay | None:
    replacement = opt_str(p.ctx, p.raw, "MailFromReplacement", p.path)
    if replacement is not None and not _EMAIL.fullmatch(replacement):
        p.ctx.problem(p.at("MailFromReplacement"), f"'{replacement}' is not an email address")
    tls = RelayTls()
    if p.raw.get("Tls") is not None:
        where = p.at("Tls")
        found = mapping(p.ctx, p.raw["Tls"], where) or {}
        check_keys(p.ctx, found, ("Required", "Verify", "CaFile"), where)
        required = opt_bool(p.ctx, found, "Required", where)
        verify = opt_bool(p.ctx, found, "Verify", where)
        ca_file = opt_str(p.ctx, found, "CaFile", where)
        if ca_file is not None:
            check_ca_file(p.ctx, key_path(where, "CaFile"), p.ctx.resolve(ca_file))
        tls = RelayTls(
            required=bool(required), verify=verify is not False,
            ca_file=None if ca_file is None else p.ctx.resolve(ca_file),
        )
    if not p.valid:
        return None
    auth = p.raw["Authentication"]
    return Relay(id=p.id, name=p.name, arn=p.arn, server_name=p.raw["ServerName"],
                 server_port=p.raw["ServerPort"], secret_arn=auth.get("SecretArn"),
                 mail_from_replacement=replacement, tls=tls)


def build_address_list(p: Pending, resolver: Resolver) -> AddressList | None:
    members: list[str] = []
    seen: set[str] = set()  # a list can hold 100,000 members: dedupe in O(1)

    def add(ctx: Ctx, text: object, where: str) -> None:
        try:
            if not isinstance(text, str):
                raise ValueError("expected a string")
            parse_member(text)
        except ValueError as exc:
            ctx.problem(where, f"invalid address list member {brief(text)}: {exc}")
            return
        lowered = text.lower()
        if lowered not in seen:
            seen.add(lowered)
            members.append(lowered)

    raw_members = p.raw.get("Members")
    if raw_members is not None and not isinstance(raw_members, list):
        p.ctx.problem(p.at("Members"), "expected a list of addresses and domains")
    for i, text in enumerate(raw_members if isinstance(raw_members, list) else ()):
        add(p.ctx, text, f"{p.at('Members')}[{i}]")
    file_name = opt_str(p.ctx, p.raw, "File", p.path)
    if file_name is not None:
        path = p.ctx.resolve(file_name)
        own = p.ctx.for_file(path)
        for text, where in address_file_members(p.ctx, path, p.at("File")):
            add(own, text, where)
    if not p.valid:
        return None
    return AddressList(id=p.id, name=p.name, arn=p.arn, members=tuple(members))


def build_archive(p: Pending, resolver: Resolver) -> Archive | None:
    storage: LocalStorage | S3Storage = LocalStorage()
    if p.raw.get("Storage") is not None:
        where = p.at("Storage")
        found = mapping(p.ctx, p.raw["Storage"], where) or {}
        check_keys(p.ctx, found, ("Local", "S3"), where)
        present = [k for k in ("Local", "S3") if k in found]
        if len(present) != 1:
            p.ctx.problem(where, "exactly one of Local, S3 must be set")
        elif present == ["S3"]:
            s3_path = key_path(where, "S3")
            s3 = mapping(p.ctx, found["S3"], s3_path) or {}
            check_keys(p.ctx, s3, ("Bucket", "Prefix", "RoleArn", "KmsKeyArn"), s3_path)
            bucket = opt_str(p.ctx, s3, "Bucket", s3_path)
            if bucket is None:
                p.ctx.problem(s3_path, "missing required key 'Bucket'")
            storage = S3Storage(bucket or "", opt_str(p.ctx, s3, "Prefix", s3_path),
                                role_arn=opt_str(p.ctx, s3, "RoleArn", s3_path),
                                kms_key_arn=opt_str(p.ctx, s3, "KmsKeyArn", s3_path))
            problem = features.archive_storage_problem("S3")
            if problem:
                p.ctx.problem(s3_path, problem)
        else:
            local = found["Local"]
            if local not in (None, {}):
                p.ctx.problem(key_path(where, "Local"), "Local takes no settings: write {}")
    if not p.valid:
        return None
    retention = (p.raw.get("Retention") or {}).get("RetentionPeriod", "THREE_MONTHS")
    return Archive(id=p.id, name=p.name, arn=p.arn, retention=retention,
                   kms_key_arn=p.raw.get("KmsKeyArn"), storage=storage)


def build_mailboxes(
    ctx: Ctx, value: list[Any], path: str, resolver: Resolver
) -> tuple[Mailbox, ...]:
    out: list[Mailbox] = []
    for i, raw in enumerate(value):
        where = f"{path}[{i}]"
        entry = mapping(ctx, raw, where)
        if entry is None:
            continue
        check_keys(ctx, entry, ("MailboxArn", "Lmtp", "Maildir"), where)
        arn = opt_str(ctx, entry, "MailboxArn", where)
        if arn is None:
            ctx.problem(where, "missing required key 'MailboxArn'")
            continue
        if not arn.startswith("arn:"):
            ctx.problem(key_path(where, "MailboxArn"), f"'{arn}' is not an ARN")
        if arn in resolver.mailbox_arns:
            ctx.problem(key_path(where, "MailboxArn"), f"duplicate MailboxArn '{arn}'")
        resolver.mailbox_arns.add(arn)
        lmtp = opt_str(ctx, entry, "Lmtp", where)
        maildir = opt_str(ctx, entry, "Maildir", where)
        if (lmtp is None) == (maildir is None):
            ctx.problem(where, "exactly one of Lmtp, Maildir must be set")
            continue
        address = None
        if lmtp is not None:
            try:
                address = parse_host_port(lmtp)
            except ValueError as exc:
                ctx.problem(key_path(where, "Lmtp"), f"invalid LMTP address: {exc}")
        out.append(Mailbox(arn=arn, lmtp=address,
                           maildir=None if maildir is None else ctx.resolve(maildir)))
    return tuple(out)
