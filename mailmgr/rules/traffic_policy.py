"""Traffic-policy decision per recipient at RCPT time: DENY statements, then ALLOW, then default.

Pure, no I/O; the SMTP reply for a denial belongs to ingress/replies.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from mailmgr.config.models import (
    AcceptAction,
    IngressBooleanCondition,
    IngressIpCondition,
    IngressStringCondition,
    IngressTlsCondition,
    PolicyCondition,
    PolicyStatement,
    TlsProtocolOperator,
    TrafficPolicy,
)
from mailmgr.message import SessionFacts
from mailmgr.rules.address_lists import AddressListIndex
from mailmgr.rules.conditions import RuleCompileError
from mailmgr.rules.operators import boolean_matcher, cidr_matcher, string_matcher

# ssl reports "TLSv1.2"; the policy says "TLS1_2"
_TLS_VERSIONS: dict[str, tuple[int, int]] = {
    "TLS1_2": (1, 2),
    "TLS1_3": (1, 3),
    "TLSv1.2": (1, 2),
    "TLSv1.3": (1, 3),
    "TLSv1.1": (1, 1),
    "TLSv1": (1, 0),
}


@dataclass(frozen=True)
class PolicyDecision:
    decision: AcceptAction
    statement: int | None = None  # 1-based index of the deciding statement; None: DefaultAction


def decide(
    policy: TrafficPolicy,
    session: SessionFacts,
    recipient: str,
    address_lists: Mapping[str, AddressListIndex] | None = None,
) -> PolicyDecision:
    """Any matching DENY statement rejects; else any matching ALLOW accepts; else the default."""
    lists = address_lists or {}
    for wanted in (AcceptAction.DENY, AcceptAction.ALLOW):
        for number, statement in enumerate(policy.statements, 1):
            if statement.action is wanted and _statement_matches(
                statement, session, recipient, lists
            ):
                return PolicyDecision(wanted, number)
    return PolicyDecision(policy.default_action, None)


def _statement_matches(
    statement: PolicyStatement,
    session: SessionFacts,
    recipient: str,
    lists: Mapping[str, AddressListIndex],
) -> bool:
    return all(_condition(c, session, recipient, lists) for c in statement.conditions)


def _condition(
    condition: PolicyCondition,
    session: SessionFacts,
    recipient: str,
    lists: Mapping[str, AddressListIndex],
) -> bool:
    if isinstance(condition, IngressStringCondition):
        if condition.analysis is not None or condition.attribute != "RECIPIENT":
            raise RuleCompileError("traffic policy StringExpression supports RECIPIENT only")
        return _string(condition)((recipient,))
    if isinstance(condition, IngressIpCondition):
        return _cidr(condition)(session.peer_ip)
    if isinstance(condition, IngressTlsCondition):
        return _tls_matches(condition, session.tls_protocol)
    if isinstance(condition, IngressBooleanCondition):
        if condition.address_list_id is None:
            raise RuleCompileError("traffic policy BooleanExpression with Analysis is unsupported")
        index = lists.get(condition.address_list_id)
        if index is None:
            raise RuleCompileError(f"unknown address list {condition.address_list_id!r}")
        return boolean_matcher(condition.operator)(index.contains(recipient))
    raise RuleCompileError(f"unsupported policy condition {type(condition).__name__}")


# Conditions are frozen and few: cache their matchers instead of re-parsing CIDRs per RCPT.
@lru_cache(maxsize=1024)
def _string(condition: IngressStringCondition) -> Callable[[tuple[str, ...]], bool]:
    return string_matcher(condition.operator, condition.values)


@lru_cache(maxsize=1024)
def _cidr(condition: IngressIpCondition) -> Callable[[str], bool]:
    # SENDER_IP lists IPv4 networks and SENDER_IPV6 IPv6 ones: the family check in the matcher
    # keeps an address of the other family out of either.
    return cidr_matcher(condition.operator, condition.cidrs)


def _tls_matches(condition: IngressTlsCondition, protocol: str | None) -> bool:
    """A plaintext session (protocol None) matches neither MINIMUM_TLS_VERSION nor IS."""
    if protocol is None:
        return False
    have = _TLS_VERSIONS.get(protocol)
    want = _TLS_VERSIONS.get(condition.value)
    if have is None or want is None:
        return False
    if condition.operator is TlsProtocolOperator.IS:
        return have == want
    return have >= want
