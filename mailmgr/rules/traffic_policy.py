"""Traffic policies compiled once at start-up and decided per recipient at RCPT time.

Owns the evaluation order (matching DENY, then matching ALLOW, then DefaultAction), the opt-in
DEBUG record `traffic_policy.evaluated`, Mail Manager's `TRAFFIC_POLICY_DEBUG_LOGS` record
(Log.Records) and the decision counters; the SMTP reply for a denial belongs to ingress/replies.py.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mailmgr import logs, records
from mailmgr.admin.metrics import METRICS
from mailmgr.config.models import (
    AcceptAction,
    Analysis,
    BooleanOperator,
    IngressBooleanCondition,
    IngressIpCondition,
    IngressStringCondition,
    IngressTlsCondition,
    IpOperator,
    PolicyCondition,
    StringOperator,
    TlsProtocolOperator,
    TrafficPolicy,
)
from mailmgr.message import AnalysisResults, SessionFacts
from mailmgr.rules.address_lists import AddressListIndex
from mailmgr.rules.conditions import RuleCompileError, analysis_strings
from mailmgr.rules.operators import parse_address, string_matcher

EVALUATED_EVENT = "traffic_policy.evaluated"

# The policy says "TLS1_2"; ssl reports "TLSv1.2". Older protocols only ever appear as facts.
_TLS_VERSIONS: dict[str, tuple[int, int]] = {
    "TLS1_2": (1, 2),
    "TLS1_3": (1, 3),
    "TLSv1.3": (1, 3),
    "TLSv1.2": (1, 2),
    "TLSv1.1": (1, 1),
    "TLSv1": (1, 0),
}
# Which address family each IP attribute is about.
_IP_FAMILY = {"SENDER_IP": 4, "SENDER_IPV6": 6}

_logger = logging.getLogger(logs.LOGGER_NAME)


@dataclass(frozen=True)
class PolicyDecision:
    decision: AcceptAction
    statement: int | None = None  # 1-based index of the deciding statement; None: DefaultAction


@dataclass(frozen=True, slots=True)
class _Subject:
    """What the conditions read for one RCPT, derived from the session once per recipient."""

    address: str  # the recipient as received
    recipient: str  # casefolded, for the string operators
    ip_family: int  # 4 or 6 (IPv4-mapped IPv6 counts as 4); 0 when the peer IP is unparsable
    ip: int
    tls: tuple[int, int] | None  # None: plaintext session
    analysis: AnalysisResults  # the transaction's RCPT-time (DNSBL) results


_NO_ANALYSIS = AnalysisResults()

_Test = Callable[[_Subject], bool]


@dataclass(frozen=True)
class CompiledCondition:
    """One condition: its AWS description (for the debug record) and its precompiled test."""

    expression: str  # StringExpression | IpExpression | Ipv6Expression | TlsExpression | ...
    attribute: str  # RECIPIENT | SENDER_IP | SENDER_IPV6 | TLS_PROTOCOL
    operator: str
    values: tuple[str, ...]
    test: _Test
    address_list: str | None = None  # IsInAddressList: the list's ID
    analysis: Analysis | None = None  # an add-on result instead of `attribute`

    def to_expression(self) -> dict[str, Any]:
        """`{attribute, operator, value}` of Mail Manager's debug record: `value` as the config
        gives it (the Values list, the TLS protocol string, the address list IDs); an Analysis
        condition has `analysis: {analyzer, resultField}` instead of `attribute`."""
        if self.analysis is not None:
            value: str | list[str] = list(self.values)
            return {"analysis": {"analyzer": self.analysis.analyzer,
                                 "resultField": self.analysis.result_field},
                    "operator": self.operator, "value": value}
        if self.address_list is not None:
            return {"attribute": self.attribute, "operator": self.operator.rsplit(" ", 1)[-1],
                    "value": [self.address_list]}
        value = self.values[0] if self.expression == "TlsExpression" else list(self.values)
        return {"attribute": self.attribute, "operator": self.operator, "value": value}

    def to_log(self, matched: bool) -> dict[str, Any]:
        record: dict[str, Any] = {
            "expression": self.expression,
            "attribute": self.attribute,
            "operator": self.operator,
        }
        if self.address_list is not None:
            record["address_list"] = self.address_list
        else:
            record["values"] = list(self.values)
        if self.analysis is not None:
            record["analysis"] = {"analyzer": self.analysis.analyzer,
                                  "result_field": self.analysis.result_field}
        record["result"] = matched
        return record


@dataclass(frozen=True)
class CompiledStatement:
    index: int  # 1-based, as in the configuration
    action: AcceptAction
    conditions: tuple[CompiledCondition, ...]

    def matches(self, subject: _Subject) -> bool:
        """All conditions match (short-circuits: the hot path)."""
        for condition in self.conditions:
            if not condition.test(subject):
                return False
        return True


@dataclass(frozen=True)
class StatementResult:
    statement: CompiledStatement
    results: tuple[bool, ...]  # one per condition, every condition evaluated

    @property
    def matched(self) -> bool:
        return all(self.results)


@dataclass(frozen=True)
class PolicyEvaluation:
    """A complete evaluation (every condition of every statement), for the debug record."""

    decision: PolicyDecision
    statements: tuple[StatementResult, ...]


class CompiledTrafficPolicy:
    """A traffic policy with its conditions compiled to closures over precomputed values."""

    __slots__ = ("_allow", "_counters", "_deny", "_needs_ip", "arn", "default_action", "id",
                 "max_message_size", "name", "needs_analysis", "records", "statements")

    def __init__(
        self, policy: TrafficPolicy, statements: tuple[CompiledStatement, ...], needs_ip: bool,
        records: bool = False,
    ) -> None:
        """`records`: check() writes Mail Manager's TRAFFIC_POLICY_DEBUG_LOGS record."""
        self.id = policy.id
        self.name = policy.name
        self.arn = policy.arn
        self.default_action = policy.default_action
        self.max_message_size = policy.max_message_size
        self.statements = statements
        self._deny = tuple(s for s in statements if s.action is AcceptAction.DENY)
        self._allow = tuple(s for s in statements if s.action is AcceptAction.ALLOW)
        self._needs_ip = needs_ip
        # Some condition reads an analyzer's result: RCPT waits for the transaction's DNSBL
        # answers (bounded by the analyzers' timeouts) before deciding.
        self.needs_analysis = any(c.analysis is not None for s in statements
                                  for c in s.conditions)
        self.records = records
        # mailmgr_traffic_policy_decisions cells, bound once: [0] the DefaultAction, [i]
        # statement i (the RCPT path only indexes and increments).
        counts = METRICS.traffic_policy_decisions
        self._counters = (
            counts.cell(policy.name, "default", policy.default_action.value),
            *(counts.cell(policy.name, str(s.index), s.action.value) for s in statements),
        )

    @classmethod
    def compile(
        cls, policy: TrafficPolicy, address_lists: Mapping[str, AddressListIndex] | None = None,
        *, records: bool = False,
    ) -> CompiledTrafficPolicy:
        """Raises RuleCompileError for what the config loader should already have refused.
        `records`: write Mail Manager's debug record per check() (Log.Records)."""
        lists = address_lists or {}
        statements = tuple(
            CompiledStatement(
                number, statement.action,
                tuple(_compile_condition(c, lists) for c in statement.conditions),
            )
            for number, statement in enumerate(policy.statements, 1)
        )
        needs_ip = any(
            c.attribute in _IP_FAMILY for s in statements for c in s.conditions
        )
        return cls(policy, statements, needs_ip, records)

    def _subject(self, session: SessionFacts, recipient: str,
                 analysis: AnalysisResults) -> _Subject:
        family, ip = 0, 0
        if self._needs_ip:
            address = parse_address(session.peer_ip)
            if address is not None:
                family, ip = address.version, int(address)
        tls = _TLS_VERSIONS.get(session.tls_protocol) if session.tls_protocol else None
        return _Subject(recipient, recipient.casefold(), family, ip, tls, analysis)

    def decide(self, session: SessionFacts, recipient: str,
               analysis: AnalysisResults = _NO_ANALYSIS) -> PolicyDecision:
        """Any matching DENY statement rejects; else any matching ALLOW accepts; else default.
        `analysis`: the transaction's RCPT-time analyzer results (needed when
        `needs_analysis`; without them an Analysis condition matches as for a failed engine)."""
        if not self.statements:
            return PolicyDecision(self.default_action, None)
        subject = self._subject(session, recipient, analysis)
        for group in (self._deny, self._allow):
            for statement in group:
                if statement.matches(subject):
                    return PolicyDecision(statement.action, statement.index)
        return PolicyDecision(self.default_action, None)

    def evaluate(self, session: SessionFacts, recipient: str,
                 analysis: AnalysisResults = _NO_ANALYSIS) -> PolicyEvaluation:
        """Like decide(), evaluating every condition so the debug record can show them all."""
        subject = self._subject(session, recipient, analysis)
        results = tuple(
            StatementResult(s, tuple(c.test(subject) for c in s.conditions))
            for s in self.statements
        )
        decision = PolicyDecision(self.default_action, None)
        for wanted in (AcceptAction.DENY, AcceptAction.ALLOW):
            found = next(
                (r for r in results if r.statement.action is wanted and r.matched), None
            )
            if found is not None:
                decision = PolicyDecision(wanted, found.statement.index)
                break
        return PolicyEvaluation(decision, results)

    def check(self, session: SessionFacts, recipient: str, mail_from: str = "",
              analysis: AnalysisResults = _NO_ANALYSIS) -> PolicyDecision:
        """decide() at RCPT, counted in mailmgr_traffic_policy_decisions_total, plus the
        `traffic_policy.evaluated` record when DEBUG logging is on and Mail Manager's
        TRAFFIC_POLICY_DEBUG_LOGS record when Log.Records is on (`mail_from`: the envelope
        sender, "" for `<>`).

        The full trace is only built when a record will be written: the RCPT path stays cheap."""
        if self.records or _logger.isEnabledFor(logging.DEBUG):
            return self._traced(session, recipient, mail_from, analysis)
        decision = self.decide(session, recipient, analysis)
        self._counters[decision.statement or 0][0] += 1
        return decision

    def _traced(self, session: SessionFacts, recipient: str, mail_from: str,
                analysis: AnalysisResults) -> PolicyDecision:
        evaluation = self.evaluate(session, recipient, analysis)
        if _logger.isEnabledFor(logging.DEBUG):
            logs.event(EVALUATED_EVENT, logging.DEBUG,
                       **debug_record(self, evaluation, session, recipient))
        if self.records:
            records.write(records.TRAFFIC_POLICY_DEBUG_LOGS,
                          mailmanager_record(self, evaluation, session, recipient, mail_from))
        decision = evaluation.decision
        self._counters[decision.statement or 0][0] += 1
        return decision


def debug_record(
    policy: CompiledTrafficPolicy,
    evaluation: PolicyEvaluation,
    session: SessionFacts,
    recipient: str,
) -> dict[str, Any]:
    """The fields of the `traffic_policy.evaluated` record (see the README for its shape)."""
    decision = evaluation.decision
    return {
        "ingress_point": session.ingress_point_name,
        "ingress_point_id": session.ingress_point_id,
        "traffic_policy": policy.name,
        "traffic_policy_id": policy.id,
        "peer_ip": session.peer_ip,
        "tls_protocol": session.tls_protocol,
        "recipient": recipient,
        "statements": [
            {
                "index": r.statement.index,
                "action": r.statement.action.value,
                "matched": r.matched,
                "conditions": [
                    c.to_log(ok) for c, ok in zip(r.statement.conditions, r.results, strict=True)
                ],
            }
            for r in evaluation.statements
        ],
        "default_action": policy.default_action.value,
        "decision": decision.decision.value,
        "statement": decision.statement,
        "verdict": "ACCEPT" if decision.decision is AcceptAction.ALLOW else "REJECT",
    }


def mailmanager_record(
    policy: CompiledTrafficPolicy,
    evaluation: PolicyEvaluation,
    session: SessionFacts,
    recipient: str,
    mail_from: str,
) -> dict[str, Any]:
    """The fields of Mail Manager's TRAFFIC_POLICY_DEBUG_LOGS record (semantics.md §6):
    `traffic_policy_evaluation` lists every statement in config order (each condition evaluated,
    `expressionResult` a boolean), then the DefaultAction (scope Recipient, matched when no
    statement decided), then the size limit (scope Data, checked at end of DATA)."""
    decision = evaluation.decision
    trace: list[dict[str, Any]] = [
        {
            "action": r.statement.action.value,
            "conditions": [
                {"expression": c.to_expression(), "expressionResult": ok}
                for c, ok in zip(r.statement.conditions, r.results, strict=True)
            ],
            "policyStatementMatched": r.matched,
        }
        for r in evaluation.statements
    ]
    trace.append({"action": policy.default_action.value, "scope": "Recipient",
                  "policyStatementMatched": decision.statement is None})
    trace.append({"scope": "Data", "maxMessageSizeBytes": policy.max_message_size or None})
    return {
        "ingress_point_id": session.ingress_point_id,
        "ingress_point_session_id": records.session_id(session),
        "traffic_policy_id": policy.id,
        "traffic_policy_evaluation": trace,
        "traffic_policy_verdict": "ACCEPT" if decision.decision is AcceptAction.ALLOW else "REJECT",
        "sender_ip_address": session.peer_ip,
        "smtp_mail_from": mail_from,
        "smtp_helo": session.helo,
        "tls_protocol": session.tls_protocol,
        "tls_cipher_suite": session.tls_cipher,
        "recipient": recipient,
    }


def decide(
    policy: TrafficPolicy,
    session: SessionFacts,
    recipient: str,
    address_lists: Mapping[str, AddressListIndex] | None = None,
) -> PolicyDecision:
    """One-off decision (compiles the policy each call): for tools and tests, not for RCPT."""
    return CompiledTrafficPolicy.compile(policy, address_lists).decide(session, recipient)


# ---------------------------------------------------------------- condition compilers


def _compile_condition(
    condition: PolicyCondition, lists: Mapping[str, AddressListIndex]
) -> CompiledCondition:
    if isinstance(condition, IngressStringCondition):
        if condition.analysis is not None:
            return _analysis_string(condition, condition.analysis)
        if condition.attribute != "RECIPIENT":
            raise RuleCompileError("traffic policy StringExpression supports RECIPIENT only")
        return CompiledCondition(
            "StringExpression", "RECIPIENT", condition.operator.value, condition.values,
            _string_test(condition.operator, condition.values),
        )
    if isinstance(condition, IngressIpCondition):
        return _ip_condition(condition)
    if isinstance(condition, IngressTlsCondition):
        return CompiledCondition(
            "TlsExpression", "TLS_PROTOCOL", condition.operator.value, (condition.value,),
            _tls_test(condition.operator, condition.value),
        )
    if isinstance(condition, IngressBooleanCondition):
        if condition.analysis is not None:
            return _analysis_boolean(condition.operator, condition.analysis)
        if condition.address_list_id is None:
            raise RuleCompileError("traffic policy BooleanExpression without an operand")
        index = lists.get(condition.address_list_id)
        if index is None:
            raise RuleCompileError(f"unknown address list {condition.address_list_id!r}")
        return CompiledCondition(
            "BooleanExpression", "RECIPIENT", f"IsInAddressList {condition.operator.value}", (),
            _list_test(index, condition.operator), address_list=condition.address_list_id,
        )
    raise RuleCompileError(f"unsupported policy condition {type(condition).__name__}")


def _string_test(operator: StringOperator, values: tuple[str, ...]) -> _Test:
    """Case-insensitive; the subject's recipient is already casefolded."""
    wanted = tuple(v.casefold() for v in values)
    wanted_set = frozenset(wanted)
    match StringOperator(operator):
        case StringOperator.EQUALS:
            return lambda s: s.recipient in wanted_set
        case StringOperator.NOT_EQUALS:
            return lambda s: s.recipient not in wanted_set
        case StringOperator.STARTS_WITH:
            return lambda s: s.recipient.startswith(wanted)
        case StringOperator.ENDS_WITH:
            return lambda s: s.recipient.endswith(wanted)
        case StringOperator.CONTAINS:
            return lambda s: any(w in s.recipient for w in wanted)
    raise RuleCompileError(f"unsupported string operator {operator}")  # pragma: no cover


def _ip_condition(condition: IngressIpCondition) -> CompiledCondition:
    family = _IP_FAMILY.get(condition.attribute)
    if family is None:
        raise RuleCompileError(f"unsupported IP attribute {condition.attribute!r}")
    networks = []
    for text in condition.cidrs:
        try:
            network = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError as exc:
            raise RuleCompileError(f"invalid CIDR {text!r}: {exc}") from exc
        if network.version != family:
            raise RuleCompileError(f"{condition.attribute} takes IPv{family} CIDRs, got {text!r}")
        networks.append(network)
    # (network address, mask) integer pairs: one AND and one compare per network.
    pairs = tuple((int(n.network_address), int(n.netmask)) for n in networks)
    if len(pairs) == 1:
        net, mask = pairs[0]

        def inside(s: _Subject) -> bool:
            return s.ip_family == family and s.ip & mask == net
    else:
        def inside(s: _Subject) -> bool:
            return s.ip_family == family and any(s.ip & m == n for n, m in pairs)

    # A client of the other family has no value for this attribute: CIDR_MATCHES never matches
    # and NOT_CIDR_MATCHES always does (it is not inside any listed network).
    test: _Test = inside
    if IpOperator(condition.operator) is IpOperator.NOT_CIDR_MATCHES:
        def test(s: _Subject) -> bool:
            return not inside(s)
    expression = "IpExpression" if family == 4 else "Ipv6Expression"
    return CompiledCondition(
        expression, condition.attribute, condition.operator.value, condition.cidrs, test
    )


def _tls_test(operator: TlsProtocolOperator, value: str) -> _Test:
    want = _TLS_VERSIONS.get(value)
    if want is None or value not in ("TLS1_2", "TLS1_3"):
        raise RuleCompileError(f"unsupported TLS protocol {value!r}")
    # A plaintext session (tls None) matches neither operator.
    if TlsProtocolOperator(operator) is TlsProtocolOperator.IS:
        return lambda s: s.tls is not None and s.tls == want
    return lambda s: s.tls is not None and s.tls >= want


def _list_test(index: AddressListIndex, operator: BooleanOperator) -> _Test:
    if BooleanOperator(operator) is BooleanOperator.IS_TRUE:
        return lambda s: index.contains(s.address)
    return lambda s: not index.contains(s.address)


def _analysis_boolean(operator: BooleanOperator, analysis: Analysis) -> CompiledCondition:
    """isListed IS_TRUE / IS_FALSE; a failed lookup (no value) matches neither, so a DNS
    outage never rejects mail by itself."""
    want = BooleanOperator(operator) is BooleanOperator.IS_TRUE
    name, field_name = analysis.analyzer, analysis.result_field

    def test(s: _Subject) -> bool:
        value = s.analysis.value(name, field_name)
        return isinstance(value, bool) and value is want

    return CompiledCondition("BooleanExpression", f"Analysis {name} {field_name}",
                             operator.value, (), test, analysis=analysis)


def _analysis_string(condition: IngressStringCondition, analysis: Analysis) -> CompiledCondition:
    """listedOn against the values, with the rule engine's candidate semantics: each listed
    name is a candidate; none (not listed, or failed) only matches NOT_EQUALS."""
    matcher = string_matcher(condition.operator, condition.values)
    return CompiledCondition(
        "StringExpression", f"Analysis {analysis.analyzer} {analysis.result_field}",
        condition.operator.value, condition.values,
        lambda s: matcher(analysis_strings(s.analysis, analysis)), analysis=analysis,
    )
