"""`mailmgr explain`: a dry run of traffic policy and rule set for one message, no side effects.

Runs the real executor with dry-run instances of every side-effecting action (assumed to succeed,
REQUEST_RESPONSE InvokeLambda answers CONTINUE), the real state actions and a no-op checkpoint.
Owns the explain JSON schema of interface.md and its text rendering.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from mailmgr.actions.base import Action, ActionInput, ActionResult, Resources
from mailmgr.actions.executor import ActionRecord, Status, execute
from mailmgr.actions.registry import REGISTRY
from mailmgr.analysis.overrides import AnalysisOverride, apply_overrides
from mailmgr.config.models import AcceptAction, Config, IngressPoint, RetryPolicy
from mailmgr.message import (
    AnalysisResults,
    ClientCertificate,
    DmarcPolicy,
    Envelope,
    InboundMessage,
    ProcessingState,
    SessionFacts,
    Verdict,
    Verdicts,
    new_message_id,
)
from mailmgr.rules.address_lists import build_indexes
from mailmgr.rules.engine import CompiledRuleSet, RuleEvaluation
from mailmgr.rules.facts import MessageFacts
from mailmgr.rules.traffic_policy import CompiledTrafficPolicy

# Pure actions: they only change the state the executor carries, so explain runs them for real.
STATE_ACTIONS = ("Drop", "AddHeader", "ReplaceRecipient")

VerdictsProvider = Callable[[InboundMessage], Awaitable[Verdicts]]
# (RCPT-time results for the traffic policy, the message's results for the rules)
AnalysisProvider = Callable[[InboundMessage], Awaitable[tuple[AnalysisResults, AnalysisResults]]]


@dataclass(frozen=True)
class ExplainOptions:
    mail_from: str = ""
    rcpts: tuple[str, ...] = ()  # empty: the message's To and Cc addresses
    ip: str = "127.0.0.1"
    helo: str = ""
    ingress: str | None = None  # name, ID or ARN; None: the first ingress point
    tls: bool = False
    tls_wrapped: bool = False  # implies tls
    client_certificate: ClientCertificate | None = None
    spf: str | None = None  # PASS | FAIL | GRAY | PROCESSING_FAILED
    dkim: str | None = None
    dmarc_policy: str | None = None  # NONE | QUARANTINE | REJECT: DMARC failed with that policy
    analysis: tuple[AnalysisOverride, ...] = ()  # results given instead of running the engine


async def no_live_verdicts(message: InboundMessage) -> Verdicts:
    """A provider that computes nothing: every verdict PROCESSING_FAILED (tests, offline use)."""
    return Verdicts()


def configured_verdicts(config: Config) -> VerdictsProvider:
    """Live SPF/DKIM/DMARC with the configured resolver (Server.Dns), bounded like the worker."""
    from mailmgr.verdicts.service import VerdictsService

    async def compute(message: InboundMessage) -> Verdicts:
        service = VerdictsService.from_config(config)
        try:
            return await service.verdicts(message)
        finally:
            service.close()

    return compute


async def no_live_analysis(message: InboundMessage) -> tuple[AnalysisResults, AnalysisResults]:
    """A provider that runs no engine: only --analysis results exist (tests, offline use)."""
    return AnalysisResults(), AnalysisResults()


def configured_analysis(config: Config, skip: frozenset[str] = frozenset()) -> AnalysisProvider:
    """Live analyzers as configured (DNS lists through Server.Dns), bounded like the worker;
    the analyzers named in `skip` (given with --analysis) do not run."""
    from mailmgr.analysis.service import AnalysisService
    from mailmgr.verdicts.dns import DnsResolver

    async def compute(message: InboundMessage) -> tuple[AnalysisResults, AnalysisResults]:
        running = replace(config, analyzers=tuple(
            a for a in config.analyzers if a.name not in skip))
        server = config.server
        service = AnalysisService.from_config(
            running, DnsResolver(server.dns_nameservers, server.dns_timeout))
        if service is None:
            return AnalysisResults(), AnalysisResults()
        try:
            session = message.session
            early = await service.session(session.peer_ip, session.helo,
                                          message.envelope.mail_from)
            full = await service.analyze(replace(message, analysis=early))
            return early, full
        finally:
            await service.close()

    return compute


def overridden_analyzers(config: Config, options: ExplainOptions) -> frozenset[str]:
    """Names of the analyzers --analysis gives results for (they need not run)."""
    from mailmgr.config.analyzers import find_analyzer

    found = (find_analyzer(config.analyzers, o.analyzer) for o in options.analysis)
    return frozenset(a.name for a in found if a is not None)


def given_verdicts(options: ExplainOptions) -> Verdicts | None:
    """Verdicts from the options, or None when none was given (compute them live).

    Raises ValueError for a value that is not a verdict or policy name."""
    if options.spf is None and options.dkim is None and options.dmarc_policy is None:
        return None
    policy_text = (options.dmarc_policy or "").strip().upper()
    policy = DmarcPolicy(policy_text) if policy_text and policy_text != "PASS" else None
    return Verdicts(
        spf=Verdict(options.spf.strip().upper()) if options.spf else Verdict.GRAY,
        dkim=Verdict(options.dkim.strip().upper()) if options.dkim else Verdict.GRAY,
        dmarc=Verdict.FAIL if policy else Verdict.PASS,
        dmarc_policy=policy,
    )


class _DryRun:
    """Stands in for an action with side effects: succeeds, changes nothing, CONTINUE."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, item: ActionInput) -> ActionResult:
        return ActionResult()


def _dry_run_actions(config: Config, rule_set_id: str) -> tuple[tuple[Action, ...], ...]:
    resources = Resources(config=config)
    rule_set = config.rule_set(rule_set_id)
    return tuple(
        tuple(
            REGISTRY[a.aws_name](a, resources) if a.aws_name in STATE_ACTIONS
            else _DryRun(a.aws_name)
            for a in rule.actions
        )
        for rule in rule_set.rules
    )


def _ingress_point(config: Config, wanted: str | None) -> IngressPoint:
    if not config.ingress_points:
        raise ValueError("the configuration has no ingress point")
    if wanted is None:
        return config.ingress_points[0]
    for point in config.ingress_points:
        if wanted in (point.name, point.id, point.arn):
            return point
    raise ValueError(f"no ingress point named {wanted!r}")


class _Report:
    """Observer collecting the walk in explain's shape."""

    def __init__(self, config: Config, rule_set_id: str) -> None:
        self.rule_set = config.rule_set(rule_set_id)
        self.recipients: dict[str, dict[str, Any]] = {}
        self.actions: list[dict[str, Any]] = []

    def entry(self, recipient: str, traffic_policy: dict[str, Any] | None) -> dict[str, Any]:
        if recipient not in self.recipients:
            self.recipients[recipient] = {
                "traffic_policy": traffic_policy,
                "rules": [],
                "dropped": False,
            }
        return self.recipients[recipient]

    def rule_evaluated(self, evaluation: RuleEvaluation) -> None:
        for result in evaluation.results:
            rule: dict[str, Any] = {
                "index": evaluation.rule_index + 1,
                "name": evaluation.rule_name,
                "matched": result.matched,
            }
            if result.reason is not None:
                rule["reason"] = result.reason
            self.entry(result.recipient, None)["rules"].append(rule)

    def action_finished(self, record: ActionRecord) -> None:
        if record.status is not Status.SUCCESS:
            return
        model = self.rule_set.rules[record.rule_index - 1].actions[record.action_index - 1]
        self.actions.append({
            "rule_index": record.rule_index,
            "rule": record.rule_name,
            "action_index": record.action_index,
            "action": record.action,
            "recipients": list(record.recipients),
            "params": copy.deepcopy(model.params),
        })
        if record.result is not None and record.result.replace_with:
            for recipient in record.result.replace_with:
                self.entry(recipient, None)


async def explain(
    config: Config,
    content: bytes,
    options: ExplainOptions,
    *,
    live_verdicts: VerdictsProvider = no_live_verdicts,
    live_analysis: AnalysisProvider = no_live_analysis,
) -> dict[str, Any]:
    """The explain result as interface.md's `explain --json` schema.

    A recipient introduced by ReplaceRecipient never went through RCPT: its `traffic_policy`
    is null. Raises ValueError for an unknown ingress point, a bad verdict value or a bad
    --analysis override."""
    point = _ingress_point(config, options.ingress)
    tls = options.tls or options.tls_wrapped
    session = SessionFacts(
        ingress_point_id=point.id,
        ingress_point_name=point.name,
        peer_ip=options.ip,
        helo=options.helo,
        tls=tls,
        tls_wrapped=options.tls_wrapped,
        tls_protocol="TLSv1.3" if tls else None,
        client_certificate=options.client_certificate,
    )
    draft = InboundMessage(
        id=new_message_id(),
        received_at=time.time(),
        envelope=Envelope(mail_from=options.mail_from, rcpt_to=()),
        session=session,
        content=content,
    )
    rcpts = options.rcpts
    if not rcpts:
        headers = MessageFacts.build(draft)
        rcpts = tuple(dict.fromkeys((*headers.to, *headers.cc)))

    early, analysis = await live_analysis(draft)
    early = apply_overrides(config, early, options.analysis)
    analysis = apply_overrides(config, analysis, options.analysis)
    indexes = build_indexes(config.address_lists)
    policy = CompiledTrafficPolicy.compile(config.traffic_policy(point.traffic_policy_id), indexes)
    report = _Report(config, point.rule_set_id)
    accepted: list[str] = []
    for rcpt in dict.fromkeys(rcpts):
        # the deciding statement is 1-based as in the config; null: the DefaultAction decided
        decision = policy.decide(session, rcpt, early)
        report.entry(rcpt, {"decision": decision.decision.value, "statement": decision.statement})
        if decision.decision is AcceptAction.ALLOW:
            accepted.append(rcpt)

    message = InboundMessage(
        id=draft.id,
        received_at=draft.received_at,
        envelope=Envelope(mail_from=options.mail_from, rcpt_to=tuple(accepted)),
        session=session,
        content=content,
    )
    verdicts = given_verdicts(options)
    if verdicts is None:
        verdicts = await live_verdicts(message)
    if config.analyzers:
        spam, virus = _spam_virus(config, analysis)
        verdicts = replace(verdicts, analysis=analysis, spam=spam, virus=virus)

    async def no_checkpoint(state: ProcessingState) -> None:
        return None

    rule_set = CompiledRuleSet.compile(config.rule_set(point.rule_set_id), indexes)
    state = await execute(
        message,
        ProcessingState(verdicts=verdicts),
        rule_set,
        _dry_run_actions(config, point.rule_set_id),
        retry=RetryPolicy(),
        checkpoint=no_checkpoint,
        observer=report,
        log=False,
    )
    for recipient in state.live or ():
        report.entry(recipient, None)
    for recipient in state.dropped:
        report.entry(recipient, None)["dropped"] = True
    out: dict[str, Any] = {
        "ingress_point": point.name,
        "recipients": report.recipients,
        "actions": report.actions,
        "final_recipients": list(state.live or ()),
        "verdicts": {k: v for k, v in verdicts.to_json().items() if k != "analysis"},
    }
    if config.analyzers:  # the key exists only where add-ons do: older outputs stay as they were
        out["analysis"] = {r.analyzer: dict(r.fields) for r in analysis.results}
    return out


def _spam_virus(config: Config, analysis: AnalysisResults
                ) -> tuple[Verdict | None, Verdict | None]:
    from mailmgr.analysis.service import SPAM_ENGINES, VIRUS_ENGINES, combine

    kinds = {a.engine.value for a in config.analyzers}
    spam, virus = (
        combine([r.verdict for r in analysis.results if r.engine in engines])
        if kinds & engines else None
        for engines in (SPAM_ENGINES, VIRUS_ENGINES)
    )
    return spam, virus


def render_text(result: dict[str, Any]) -> str:
    """A terminal rendering of `explain`'s result."""
    v = result["verdicts"]
    policy = v["dmarc_policy"] or "none"
    lines = [
        f"Ingress point: {result['ingress_point']}",
        f"Verdicts: SPF {v['spf']}, DKIM {v['dkim']}, DMARC {v['dmarc']} (policy {policy})",
    ]
    if "spam" in v or "virus" in v:
        lines.append(f"Add-ons: spam {v.get('spam', 'DISABLED')}, "
                     f"virus {v.get('virus', 'DISABLED')}")
    for analyzer, fields in result.get("analysis", {}).items():
        shown = ", ".join(f"{k}={json.dumps(val)}" for k, val in fields.items()) or "no result"
        lines.append(f"  {analyzer}: {shown}")
    lines.append("")
    for recipient, info in result["recipients"].items():
        lines.append(f"Recipient {recipient}")
        tp = info["traffic_policy"]
        if tp is None:
            lines.append("  traffic policy: - (added by ReplaceRecipient)")
        else:
            where = "default action" if tp["statement"] is None else f"statement {tp['statement']}"
            lines.append(f"  traffic policy: {tp['decision']} ({where})")
        for rule in info["rules"]:
            outcome = "matched" if rule["matched"] else f"not matched: {rule['reason']}"
            lines.append(f"  rule {rule['index']} {rule['name']}: {outcome}")
        if info["dropped"]:
            lines.append("  dropped")
    lines.append("")
    lines.append("Actions:" if result["actions"] else "Actions: none")
    for number, action in enumerate(result["actions"], 1):
        params = json.dumps(action["params"], sort_keys=True)
        lines.append(
            f"  {number}. rule {action['rule_index']} {action['rule']}, "
            f"action {action['action_index']} {action['action']} "
            f"for {', '.join(action['recipients'])} {params}"
        )
    final = ", ".join(result["final_recipients"]) or "(none)"
    lines.append(f"Final recipients: {final}")
    return "\n".join(lines) + "\n"
