"""Rule and traffic-policy conditions: schema-valid AWS dicts -> condition models.

Resolves address-list references and checks analyzers; it assumes the botocore shape has already
been validated and never evaluates a condition.
"""

from __future__ import annotations

from typing import Any

from mailmgr.config import features
from mailmgr.config.fields import Ctx, key_path
from mailmgr.config.ids import ResourceKind
from mailmgr.config.models import (
    AcceptAction,
    Analysis,
    BooleanCondition,
    BooleanOperator,
    DmarcCondition,
    IngressBooleanCondition,
    IngressIpCondition,
    IngressStringCondition,
    IngressTlsCondition,
    IpCondition,
    IpOperator,
    NumberCondition,
    NumberOperator,
    PolicyCondition,
    PolicyStatement,
    RuleCondition,
    StringCondition,
    StringOperator,
    TlsProtocolOperator,
    VerdictCondition,
    VerdictOperator,
)
from mailmgr.config.refs import Resolver

MAX_POLICY_STATEMENTS = 20
MAX_STATEMENT_CONDITIONS = 10


def _analysis(ctx: Ctx, raw: dict[str, Any] | None, path: str) -> Analysis | None:
    if raw is None:
        return None
    analyzer = str(raw["Analyzer"])
    problem = features.analyzer_problem(analyzer)
    if problem:
        ctx.problem(key_path(key_path(path, "Analysis"), "Analyzer"), problem)
    return Analysis(analyzer=analyzer, result_field=str(raw["ResultField"]))


def _address_list(
    ctx: Ctx, resolver: Resolver, raw: dict[str, Any], path: str
) -> tuple[str, str | None]:
    """(attribute, resolved address-list ID) of an IsInAddressList."""
    lists_path = key_path(key_path(path, "IsInAddressList"), "AddressLists")
    ref = raw["AddressLists"][0]
    found = resolver.check(ctx, f"{lists_path}[0]", ResourceKind.ADDRESS_LIST, ref)
    return str(raw["Attribute"]), found


def rule_condition(
    ctx: Ctx, resolver: Resolver, raw: dict[str, Any], path: str
) -> RuleCondition:
    if "BooleanExpression" in raw:
        expr = raw["BooleanExpression"]
        where = key_path(key_path(path, "BooleanExpression"), "Evaluate")
        evaluate = expr["Evaluate"]
        op = BooleanOperator(expr["Operator"])
        if "IsInAddressList" in evaluate:
            attribute, list_id = _address_list(ctx, resolver, evaluate["IsInAddressList"], where)
            return BooleanCondition(
                op, address_list_attribute=attribute, address_list_id=list_id or ""
            )
        return BooleanCondition(
            op,
            attribute=evaluate.get("Attribute"),
            analysis=_analysis(ctx, evaluate.get("Analysis"), where),
        )
    if "StringExpression" in raw:
        expr = raw["StringExpression"]
        where = key_path(key_path(path, "StringExpression"), "Evaluate")
        evaluate = expr["Evaluate"]
        return StringCondition(
            StringOperator(expr["Operator"]),
            tuple(expr["Values"]),
            attribute=evaluate.get("Attribute"),
            mime_header=evaluate.get("MimeHeaderAttribute"),
            client_certificate_attribute=evaluate.get("ClientCertificateAttribute"),
            analysis=_analysis(ctx, evaluate.get("Analysis"), where),
        )
    if "NumberExpression" in raw:
        expr = raw["NumberExpression"]
        return NumberCondition(
            NumberOperator(expr["Operator"]),
            float(expr["Value"]),
            attribute=expr["Evaluate"]["Attribute"],
        )
    if "IpExpression" in raw:
        expr = raw["IpExpression"]
        return IpCondition(
            IpOperator(expr["Operator"]), tuple(expr["Values"]), expr["Evaluate"]["Attribute"]
        )
    if "VerdictExpression" in raw:
        expr = raw["VerdictExpression"]
        where = key_path(key_path(path, "VerdictExpression"), "Evaluate")
        evaluate = expr["Evaluate"]
        return VerdictCondition(
            VerdictOperator(expr["Operator"]),
            tuple(expr["Values"]),
            attribute=evaluate.get("Attribute"),
            analysis=_analysis(ctx, evaluate.get("Analysis"), where),
        )
    expr = raw["DmarcExpression"]
    return DmarcCondition(VerdictOperator(expr["Operator"]), tuple(expr["Values"]))


def policy_condition(
    ctx: Ctx, resolver: Resolver, raw: dict[str, Any], path: str
) -> PolicyCondition:
    if "StringExpression" in raw:
        expr = raw["StringExpression"]
        where = key_path(key_path(path, "StringExpression"), "Evaluate")
        evaluate = expr["Evaluate"]
        return IngressStringCondition(
            StringOperator(expr["Operator"]),
            tuple(expr["Values"]),
            attribute=evaluate.get("Attribute"),
            analysis=_analysis(ctx, evaluate.get("Analysis"), where),
        )
    if "IpExpression" in raw or "Ipv6Expression" in raw:
        expr = raw.get("IpExpression") or raw["Ipv6Expression"]
        return IngressIpCondition(
            expr["Evaluate"]["Attribute"], IpOperator(expr["Operator"]), tuple(expr["Values"])
        )
    if "TlsExpression" in raw:
        expr = raw["TlsExpression"]
        return IngressTlsCondition(TlsProtocolOperator(expr["Operator"]), expr["Value"])
    expr = raw["BooleanExpression"]
    where = key_path(key_path(path, "BooleanExpression"), "Evaluate")
    evaluate = expr["Evaluate"]
    op = BooleanOperator(expr["Operator"])
    if "IsInAddressList" in evaluate:
        _, list_id = _address_list(ctx, resolver, evaluate["IsInAddressList"], where)
        return IngressBooleanCondition(op, address_list_id=list_id or "")
    return IngressBooleanCondition(op, analysis=_analysis(ctx, evaluate.get("Analysis"), where))


def policy_statements(
    ctx: Ctx, resolver: Resolver, raw: list[dict[str, Any]], path: str
) -> tuple[PolicyStatement, ...]:
    """Statements with mailmgr's limits (AWS documents them; botocore does not encode them)."""
    if len(raw) > MAX_POLICY_STATEMENTS:
        ctx.problem(path, f"at most {MAX_POLICY_STATEMENTS} statements per traffic policy, "
                          f"got {len(raw)}")
    statements = []
    for i, statement in enumerate(raw):
        where = f"{path}[{i}]"
        conditions = statement["Conditions"]
        if len(conditions) > MAX_STATEMENT_CONDITIONS:
            ctx.problem(key_path(where, "Conditions"),
                        f"at most {MAX_STATEMENT_CONDITIONS} conditions per statement, "
                        f"got {len(conditions)}")
        statements.append(PolicyStatement(
            AcceptAction(statement["Action"]),
            tuple(
                policy_condition(ctx, resolver, c, f"{where}.Conditions[{j}]")
                for j, c in enumerate(conditions)
            ),
        ))
    return tuple(statements)
