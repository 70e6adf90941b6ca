"""Compile rule-condition models once into predicates `(facts, recipient) -> bool`.

Each compiled condition carries the description explain and logs show (`StringExpression FROM`).
Pure, no I/O; unsupported conditions (Analysis) fail here, at start-up, never per message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mailmgr.config.models import (
    BooleanCondition,
    DmarcCondition,
    IpCondition,
    NumberCondition,
    RuleCondition,
    StringCondition,
    VerdictCondition,
)
from mailmgr.errors import MailmgrError
from mailmgr.rules.address_lists import AddressListIndex
from mailmgr.rules.facts import MessageFacts
from mailmgr.rules.operators import (
    boolean_matcher,
    cidr_matcher,
    dmarc_matcher,
    number_matcher,
    string_matcher,
    verdict_matcher,
)

Predicate = Callable[[MessageFacts, str], bool]
Candidates = Callable[[MessageFacts, str], tuple[str, ...]]


class RuleCompileError(MailmgrError):
    """A condition the engine cannot evaluate (the config loader should have rejected it)."""


@dataclass(frozen=True)
class CompiledCondition:
    description: str
    predicate: Predicate

    def __call__(self, facts: MessageFacts, recipient: str) -> bool:
        return self.predicate(facts, recipient)


_STRING_ATTRIBUTES: dict[str, Candidates] = {
    "MAIL_FROM": lambda f, r: f.mail_from,
    "HELO": lambda f, r: f.helo,
    "RECIPIENT": lambda f, r: (r,),
    "FROM": lambda f, r: f.from_,
    "SENDER": lambda f, r: f.sender,
    "TO": lambda f, r: f.to,
    "CC": lambda f, r: f.cc,
    "SUBJECT": lambda f, r: f.subject,
}

_ADDRESS_ATTRIBUTES = ("RECIPIENT", "MAIL_FROM", "SENDER", "FROM", "TO", "CC")

_BOOLEAN_ATTRIBUTES: dict[str, Callable[[MessageFacts], bool]] = {
    "READ_RECEIPT_REQUESTED": lambda f: f.read_receipt_requested,
    "TLS": lambda f: f.tls,
    "TLS_WRAPPED": lambda f: f.tls_wrapped,
}

_VERDICTS: dict[str, Callable[[MessageFacts], str]] = {
    "SPF": lambda f: f.verdicts.spf.value,
    "DKIM": lambda f: f.verdicts.dkim.value,
}


def compile_condition(
    condition: RuleCondition, address_lists: Mapping[str, AddressListIndex]
) -> CompiledCondition:
    """One predicate per condition model; raises RuleCompileError for what cannot be run."""
    if isinstance(condition, StringCondition):
        return _string(condition)
    if isinstance(condition, BooleanCondition):
        return _boolean(condition, address_lists)
    if isinstance(condition, NumberCondition):
        if condition.attribute != "MESSAGE_SIZE":
            raise RuleCompileError(f"unknown NumberExpression attribute {condition.attribute!r}")
        number = number_matcher(condition.operator, condition.value)
        return CompiledCondition(
            "NumberExpression MESSAGE_SIZE", lambda f, r: number(f.message_size)
        )
    if isinstance(condition, IpCondition):
        if condition.attribute != "SOURCE_IP":
            raise RuleCompileError(f"unknown IpExpression attribute {condition.attribute!r}")
        try:
            ip = cidr_matcher(condition.operator, condition.values)
        except ValueError as exc:
            raise RuleCompileError(f"IpExpression: {exc}") from None
        return CompiledCondition("IpExpression SOURCE_IP", lambda f, r: ip(f.source_ip))
    if isinstance(condition, VerdictCondition):
        if condition.analysis is not None:
            raise _analysis("VerdictExpression")
        verdict_of = _VERDICTS.get(condition.attribute or "")
        if verdict_of is None:
            raise RuleCompileError(f"unknown VerdictExpression attribute {condition.attribute!r}")
        verdict = verdict_matcher(condition.operator, condition.values)
        return CompiledCondition(
            f"VerdictExpression {condition.attribute}", lambda f, r: verdict(verdict_of(f))
        )
    if isinstance(condition, DmarcCondition):
        dmarc = dmarc_matcher(condition.operator, condition.values)
        return CompiledCondition(
            "DmarcExpression", lambda f, r: dmarc(f.verdicts.dmarc_policy)
        )
    raise RuleCompileError(f"unsupported rule condition {type(condition).__name__}")


def _string(condition: StringCondition) -> CompiledCondition:
    matcher = string_matcher(condition.operator, condition.values)
    candidates: Candidates
    if condition.analysis is not None:
        raise _analysis("StringExpression")
    if condition.mime_header is not None:
        header = condition.mime_header
        description = f"StringExpression MimeHeaderAttribute {header}"

        def candidates(f: MessageFacts, r: str) -> tuple[str, ...]:
            return f.mime_header(header)

    elif condition.client_certificate_attribute is not None:
        attribute = condition.client_certificate_attribute
        description = f"StringExpression ClientCertificateAttribute {attribute}"

        def candidates(f: MessageFacts, r: str) -> tuple[str, ...]:
            return f.certificate(attribute)

    else:
        found = _STRING_ATTRIBUTES.get(condition.attribute or "")
        if found is None:
            raise RuleCompileError(f"unknown StringExpression attribute {condition.attribute!r}")
        candidates = found
        description = f"StringExpression {condition.attribute}"
    return CompiledCondition(description, lambda f, r: matcher(candidates(f, r)))


def _boolean(
    condition: BooleanCondition, address_lists: Mapping[str, AddressListIndex]
) -> CompiledCondition:
    truth = boolean_matcher(condition.operator)
    if condition.analysis is not None:
        raise _analysis("BooleanExpression")
    if condition.address_list_id is not None:
        attribute = condition.address_list_attribute or ""
        if attribute not in _ADDRESS_ATTRIBUTES:
            raise RuleCompileError(f"IsInAddressList cannot evaluate {attribute!r}")
        index = address_lists.get(condition.address_list_id)
        if index is None:
            raise RuleCompileError(f"unknown address list {condition.address_list_id!r}")
        candidates = _STRING_ATTRIBUTES[attribute]
        return CompiledCondition(
            f"BooleanExpression IsInAddressList {attribute}",
            lambda f, r: truth(index.contains_any(candidates(f, r))),
        )
    value_of = _BOOLEAN_ATTRIBUTES.get(condition.attribute or "")
    if value_of is None:
        raise RuleCompileError(f"unknown BooleanExpression attribute {condition.attribute!r}")
    return CompiledCondition(
        f"BooleanExpression {condition.attribute}", lambda f, r: truth(value_of(f))
    )


def _analysis(kind: str) -> RuleCompileError:
    return RuleCompileError(
        f"{kind} with Analysis is not supported by the rule engine (no local analyzers)"
    )
