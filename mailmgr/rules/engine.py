"""CompiledRuleSet: a rule set compiled once, evaluated per rule for the live recipients.

Decides which recipients a rule applies to and why (for explain); it never runs actions —
actions/executor.py walks the rules and applies results. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mailmgr.config.models import ActionFailurePolicy, RuleAction, RuleSet
from mailmgr.rules.address_lists import AddressListIndex
from mailmgr.rules.conditions import CompiledCondition, compile_condition
from mailmgr.rules.facts import MessageFacts


@dataclass(frozen=True)
class RecipientMatch:
    recipient: str
    matched: bool
    reason: str | None = None  # why it did not match; None when it matched


@dataclass(frozen=True)
class RuleEvaluation:
    rule_index: int  # 0-based, as ProcessingState.rule_index
    rule_name: str
    matched: tuple[str, ...]  # the recipients the rule applies to, in live order
    results: tuple[RecipientMatch, ...]  # one per evaluated recipient, in order


@dataclass(frozen=True)
class CompiledRule:
    index: int  # 1-based, as logs and explain show it
    name: str
    conditions: tuple[CompiledCondition, ...]
    unless: tuple[CompiledCondition, ...]
    action_names: tuple[str, ...]  # AWS union member names, in order
    failure_policies: tuple[ActionFailurePolicy, ...]  # per action; CONTINUE where AWS has none

    def match(self, facts: MessageFacts, recipient: str) -> RecipientMatch:
        for number, condition in enumerate(self.conditions, 1):
            if not condition(facts, recipient):
                return RecipientMatch(
                    recipient,
                    False,
                    f"condition {number} ({condition.description}) did not match",
                )
        for number, condition in enumerate(self.unless, 1):
            if condition(facts, recipient):
                return RecipientMatch(
                    recipient,
                    False,
                    f"unless condition {number} ({condition.description}) matched",
                )
        return RecipientMatch(recipient, True)


class CompiledRuleSet:
    """Rules compiled once at start-up; `evaluate` is called per rule as the executor walks."""

    def __init__(self, rule_set_id: str, name: str, rules: Sequence[CompiledRule]) -> None:
        self.id = rule_set_id
        self.name = name
        self.rules: tuple[CompiledRule, ...] = tuple(rules)

    @classmethod
    def compile(
        cls, rule_set: RuleSet, address_lists: Mapping[str, AddressListIndex]
    ) -> CompiledRuleSet:
        """Raises RuleCompileError for a condition the engine cannot evaluate."""
        rules = [
            CompiledRule(
                index=number,
                name=rule.name,
                conditions=tuple(compile_condition(c, address_lists) for c in rule.conditions),
                unless=tuple(compile_condition(c, address_lists) for c in rule.unless),
                action_names=tuple(a.aws_name for a in rule.actions),
                failure_policies=tuple(failure_policy(a) for a in rule.actions),
            )
            for number, rule in enumerate(rule_set.rules, 1)
        ]
        return cls(rule_set.id, rule_set.name, rules)

    def __len__(self) -> int:
        return len(self.rules)

    def evaluate(
        self, rule_index: int, facts: MessageFacts, recipients: Sequence[str]
    ) -> RuleEvaluation:
        """Which of `recipients` rule `rule_index` (0-based) applies to, with reasons."""
        rule = self.rules[rule_index]
        results = tuple(rule.match(facts, r) for r in recipients)
        return RuleEvaluation(
            rule_index=rule_index,
            rule_name=rule.name,
            matched=tuple(m.recipient for m in results if m.matched),
            results=results,
        )


def failure_policy(action: RuleAction) -> ActionFailurePolicy:
    """Drop, AddHeader and ReplaceRecipient have no ActionFailurePolicy; they count as CONTINUE."""
    policy = getattr(action, "failure_policy", ActionFailurePolicy.CONTINUE)
    return ActionFailurePolicy(policy)
