"""Rule actions: schema-valid AWS RuleAction dicts -> action models, references resolved.

One builder per member of the AWS RuleAction union (ACTION_BUILDERS); it never runs an action.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailmgr.config import features
from mailmgr.config.fields import Ctx, key_path
from mailmgr.config.ids import ResourceKind
from mailmgr.config.models import (
    ActionFailurePolicy,
    AddHeaderAction,
    ArchiveAction,
    BounceAction,
    DeliverToMailboxAction,
    DeliverToQBusinessAction,
    DropAction,
    InvokeLambdaAction,
    MailFrom,
    PublishToSnsAction,
    RelayAction,
    ReplaceRecipientAction,
    RuleAction,
    SendAction,
    WriteToS3Action,
)
from mailmgr.config.refs import Resolver

MAX_HEADER_VALUE = 128


@dataclass(frozen=True)
class _In:
    ctx: Ctx
    resolver: Resolver
    params: dict[str, Any]
    path: str  # of the action's parameters, e.g. $.RuleSets[0].Rules[1].Actions[0].Archive

    def policy(self) -> ActionFailurePolicy:
        return ActionFailurePolicy(self.params.get("ActionFailurePolicy", "CONTINUE"))

    def ref(self, key: str, kind: ResourceKind) -> str:
        return self.resolver.check(self.ctx, key_path(self.path, key), kind,
                                   self.params[key]) or ""


def _drop(a: _In) -> RuleAction:
    return DropAction(params=a.params)


def _add_header(a: _In) -> RuleAction:
    value = str(a.params["HeaderValue"])
    where = key_path(a.path, "HeaderValue")
    if "\r" in value or "\n" in value:
        a.ctx.problem(where, "HeaderValue must not contain CR or LF characters")
    if not 1 <= len(value) <= MAX_HEADER_VALUE:  # pragma: no cover - botocore checks it too
        a.ctx.problem(where, f"HeaderValue must be 1-{MAX_HEADER_VALUE} characters long")
    return AddHeaderAction(params=a.params, header_name=a.params["HeaderName"], header_value=value)


def _replace_recipient(a: _In) -> RuleAction:
    return ReplaceRecipientAction(
        params=a.params, replace_with=tuple(a.params.get("ReplaceWith") or ())
    )


def _archive(a: _In) -> RuleAction:
    return ArchiveAction(params=a.params, failure_policy=a.policy(),
                         archive_id=a.ref("TargetArchive", ResourceKind.ARCHIVE))


def _relay(a: _In) -> RuleAction:
    return RelayAction(params=a.params, failure_policy=a.policy(),
                       relay_id=a.ref("Relay", ResourceKind.RELAY),
                       mail_from=MailFrom(a.params.get("MailFrom", "PRESERVE")))


def _write_to_s3(a: _In) -> RuleAction:
    p = a.params
    return WriteToS3Action(params=p, failure_policy=a.policy(), role_arn=p["RoleArn"],
                           bucket=p["S3Bucket"], prefix=p.get("S3Prefix"),
                           kms_key_id=p.get("S3SseKmsKeyId"))


def _send(a: _In) -> RuleAction:
    return SendAction(params=a.params, failure_policy=a.policy(), role_arn=a.params["RoleArn"])


def _deliver_to_mailbox(a: _In) -> RuleAction:
    arn = str(a.params["MailboxArn"])
    if arn not in a.resolver.mailbox_arns:
        known = ", ".join(sorted(a.resolver.mailbox_arns)) or "none"
        a.ctx.problem(key_path(a.path, "MailboxArn"),
                      f"mailbox '{arn}' is not configured in Mailboxes (configured: {known})")
    return DeliverToMailboxAction(params=a.params, failure_policy=a.policy(), mailbox_arn=arn,
                                  role_arn=a.params["RoleArn"])


def _deliver_to_q_business(a: _In) -> RuleAction:
    p = a.params
    return DeliverToQBusinessAction(params=p, failure_policy=a.policy(),
                                    application_id=p["ApplicationId"], index_id=p["IndexId"],
                                    role_arn=p["RoleArn"])


def _publish_to_sns(a: _In) -> RuleAction:
    p = a.params
    return PublishToSnsAction(params=p, failure_policy=a.policy(), topic_arn=p["TopicArn"],
                              role_arn=p["RoleArn"], encoding=p.get("Encoding", "UTF-8"),
                              payload_type=p.get("PayloadType", "CONTENT"))


def _bounce(a: _In) -> RuleAction:
    p = a.params
    return BounceAction(params=p, failure_policy=a.policy(), role_arn=p["RoleArn"],
                        sender=p["Sender"], status_code=p["StatusCode"],
                        smtp_reply_code=p["SmtpReplyCode"],
                        diagnostic_message=p["DiagnosticMessage"], message=p.get("Message"))


def _invoke_lambda(a: _In) -> RuleAction:
    p = a.params
    return InvokeLambdaAction(params=p, failure_policy=a.policy(), function_arn=p["FunctionArn"],
                              invocation_type=p["InvocationType"], role_arn=p["RoleArn"],
                              retry_time_minutes=p.get("RetryTimeMinutes"))


ACTION_BUILDERS: dict[str, Callable[[_In], RuleAction]] = {
    "Drop": _drop,
    "AddHeader": _add_header,
    "ReplaceRecipient": _replace_recipient,
    "Archive": _archive,
    "Relay": _relay,
    "WriteToS3": _write_to_s3,
    "Send": _send,
    "DeliverToMailbox": _deliver_to_mailbox,
    "DeliverToQBusiness": _deliver_to_q_business,
    "PublishToSns": _publish_to_sns,
    "Bounce": _bounce,
    "InvokeLambda": _invoke_lambda,
}


def rule_action(ctx: Ctx, resolver: Resolver, raw: dict[str, Any], path: str) -> RuleAction | None:
    """Build one schema-valid RuleAction union value (exactly one member is set)."""
    (name, params), = raw.items()
    where = key_path(path, name)
    problem = features.action_problem(name)
    if problem:
        ctx.problem(where, problem)
    builder = ACTION_BUILDERS.get(name)
    if builder is None:
        ctx.problem(where, f"action '{name}' is not known to this version of mailmgr")
        return None
    return builder(_In(ctx, resolver, dict(params), where))
