"""Compile rule-condition models once into predicates `(facts, recipient) -> bool`.

Each compiled condition carries the description explain and logs show (`StringExpression FROM`).
Pure, no I/O; a condition the loader should have refused fails here, at start-up, never per
message. `Analysis` conditions read the analyzers' results stored with the verdicts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mailmgr.config.models import (
    Analysis,
    BooleanCondition,
    DmarcCondition,
    IpCondition,
    NumberCondition,
    RuleCondition,
    StringCondition,
    VerdictCondition,
)
from mailmgr.errors import MailmgrError
from mailmgr.message import AnalysisResults, Verdict
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
            analysis = condition.analysis
            verdict = verdict_matcher(condition.operator, condition.values)
            return CompiledCondition(
                f"VerdictExpression {_describe(analysis)}",
                lambda f, r: verdict(analysis_verdict(f.verdicts.analysis, analysis)),
            )
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
        analysis = condition.analysis
        description = f"StringExpression {_describe(analysis)}"

        def candidates(f: MessageFacts, r: str) -> tuple[str, ...]:
            return analysis_strings(f.verdicts.analysis, analysis)

    elif condition.mime_header is not None:
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
        analysis = condition.analysis
        return CompiledCondition(
            f"BooleanExpression {_describe(analysis)}",
            lambda f, r: analysis_truth(f.verdicts.analysis, analysis, truth),
        )
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


def _describe(analysis: Analysis) -> str:
    return f"Analysis {analysis.analyzer} {analysis.result_field}"


def analysis_truth(
    results: AnalysisResults, analysis: Analysis, truth: Callable[[bool], bool]
) -> bool:
    """A BooleanExpression on an analysis result: a result that is missing (the engine failed,
    PROCESSING_FAILED) matches neither IS_TRUE nor IS_FALSE, so an engine error never decides."""
    value = results.value(analysis.analyzer, analysis.result_field)
    return isinstance(value, bool) and truth(value)


def analysis_strings(results: AnalysisResults, analysis: Analysis) -> tuple[str, ...]:
    """A string result's candidates: each of its comma-separated values (listedOn may name
    several lists); none when missing or empty (then only NOT_EQUALS matches)."""
    value = results.value(analysis.analyzer, analysis.result_field)
    if not isinstance(value, str) or not value:
        return ()
    return tuple(v for v in value.split(",") if v)


def analysis_verdict(results: AnalysisResults, analysis: Analysis) -> str:
    """A VerdictExpression on an analysis (rspamd's `verdict`): PROCESSING_FAILED when the
    engine failed or gave no verdict."""
    value = results.value(analysis.analyzer, analysis.result_field)
    return value if isinstance(value, str) and value else Verdict.PROCESSING_FAILED.value
