"""Rule and traffic-policy conditions: schema-valid AWS dicts -> condition models.

Resolves address-list and analyzer references (an `Analysis` ends up holding the analyzer's Name
and a bare result field); it assumes the botocore shape has already been validated and never
evaluates a condition.
"""

from __future__ import annotations

from typing import Any, Literal

from mailmgr.config.analyzer_models import RESULT_FIELDS
from mailmgr.config.fields import Ctx, brief, key_path
from mailmgr.config.ids import ResourceKind
from mailmgr.config.models import (
    AcceptAction,
    Analysis,
    AnalyzerEngine,
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


Expression = Literal["BooleanExpression", "StringExpression", "VerdictExpression"]
_ADDON_PREFIX = "addon."  # AWS's optional prefix (botocore ResultField `(addon\.)?…`)
_TYPE_NAMES = {bool: "boolean", str: "string"}


def _analysis(
    ctx: Ctx, resolver: Resolver, raw: dict[str, Any] | None, path: str, expression: Expression,
    *, at_rcpt: bool = False,
) -> Analysis | None:
    """The `Analysis` under `path` (an `Evaluate`) with its analyzer resolved to the Name and
    its ResultField checked against the engine's RESULT_FIELDS and the expression's type.
    `at_rcpt`: a traffic-policy condition, evaluated before any message exists."""
    if raw is None:
        return None
    where = key_path(path, "Analysis")
    ref = str(raw["Analyzer"])
    field = str(raw["ResultField"]).removeprefix(_ADDON_PREFIX)
    analyzer = resolver.analyzer(ref)
    if analyzer is None:
        ctx.problem(key_path(where, "Analyzer"), f"analyzer {brief(ref)} not found by Name or "
                                                 f"AnalyzerArn ({resolver.describe_analyzers()})")
        return Analysis(analyzer=ref, result_field=field)
    what = f"{analyzer.engine} analyzer '{analyzer.name}'"
    if at_rcpt and analyzer.engine is not AnalyzerEngine.DNSBL:
        # Traffic policies run at RCPT time, before DATA: only the client address, HELO and
        # envelope sender exist, which is what a DNSBL looks up; rspamd and clamd need the
        # message.
        ctx.problem(key_path(where, "Analyzer"), f"{what}: only Dnsbl analyzers can be "
                                                 "evaluated at RCPT time (no message yet)")
    fields = RESULT_FIELDS[analyzer.engine]
    at = key_path(where, "ResultField")
    if field not in fields:
        ctx.problem(at, f"{brief(field)} is not a result field of {what} "
                        f"(fields: {', '.join(fields)})")
    elif expression == "VerdictExpression" and field != "verdict":
        ctx.problem(at, f"a VerdictExpression needs the 'verdict' result field (Rspamd "
                        f"analyzers); '{field}' of {what} is a {_TYPE_NAMES[fields[field]]}")
    elif expression != "VerdictExpression" and (
            fields[field] is not (bool if expression == "BooleanExpression" else str)):
        wanted = "boolean" if expression == "BooleanExpression" else "string"
        fitting = [f for f, t in fields.items() if _TYPE_NAMES[t] == wanted]
        ctx.problem(at, f"a {expression} needs a {wanted} result field "
                        f"({', '.join(fitting)} for {what}); '{field}' is a "
                        f"{_TYPE_NAMES[fields[field]]}")
    return Analysis(analyzer=analyzer.name, result_field=field)


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
            analysis=_analysis(ctx, resolver, evaluate.get("Analysis"), where,
                               "BooleanExpression"),
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
            analysis=_analysis(ctx, resolver, evaluate.get("Analysis"), where,
                               "StringExpression"),
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
            analysis=_analysis(ctx, resolver, evaluate.get("Analysis"), where,
                               "VerdictExpression"),
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
            analysis=_analysis(ctx, resolver, evaluate.get("Analysis"), where,
                               "StringExpression", at_rcpt=True),
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
    return IngressBooleanCondition(op, analysis=_analysis(
        ctx, resolver, evaluate.get("Analysis"), where, "BooleanExpression", at_rcpt=True))


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
