"""Rule sets: `File:` entries (aws mailmanager get-rule-set output) and rules -> RuleSet models.

Builds rules from schema-valid dicts; it does not evaluate rules.
"""

from __future__ import annotations

from typing import Any

from mailmgr.config.actions import rule_action
from mailmgr.config.conditions import rule_condition
from mailmgr.config.documents import parse_document, read_text
from mailmgr.config.fields import Ctx, check_keys, key_path, type_name
from mailmgr.config.models import Rule, RuleAction, RuleSet
from mailmgr.config.refs import Resolver

# Read-only keys of GetRuleSet's response, accepted in a `File:` rule set.
READ_ONLY_KEYS = ("RuleSetId", "RuleSetArn", "CreatedDate", "LastModificationDate")
FILE_ENTRY_KEYS = ("File", "RuleSetId")


def build_rules(
    ctx: Ctx, resolver: Resolver, raw_rules: list[dict[str, Any]], path: str
) -> tuple[Rule, ...]:
    rules = []
    for n, raw in enumerate(raw_rules, start=1):
        where = f"{path}[{n - 1}]"
        conditions = tuple(
            rule_condition(ctx, resolver, c, f"{where}.Conditions[{i}]")
            for i, c in enumerate(raw.get("Conditions") or ())
        )
        unless = tuple(
            rule_condition(ctx, resolver, c, f"{where}.Unless[{i}]")
            for i, c in enumerate(raw.get("Unless") or ())
        )
        actions: list[RuleAction] = []
        for i, a in enumerate(raw["Actions"]):
            action = rule_action(ctx, resolver, a, f"{where}.Actions[{i}]")
            if action is not None:
                actions.append(action)
        rules.append(Rule(
            name=raw.get("Name") or f"rule-{n}",
            conditions=conditions,
            unless=unless,
            actions=tuple(actions),
        ))
    return tuple(rules)


def build_rule_set(
    ctx: Ctx, resolver: Resolver, raw: dict[str, Any], path: str,
    identity: tuple[str, str, str],
) -> RuleSet:
    rule_set_id, name, arn = identity
    rules = build_rules(ctx, resolver, raw["Rules"], key_path(path, "Rules"))
    return RuleSet(id=rule_set_id, name=name, arn=arn, rules=rules)


def load_rule_set_file(
    ctx: Ctx, entry: dict[str, Any], path: str
) -> tuple[Ctx, dict[str, Any]] | None:
    """Load a `File:` rule set; its problems are reported against that file from `$`."""
    check_keys(ctx, entry, FILE_ENTRY_KEYS, path)
    name = entry.get("File")
    if not isinstance(name, str) or not name:
        ctx.problem(key_path(path, "File"), "expected the path of a get-rule-set JSON file")
        return None
    file_path = ctx.resolve(name)
    text = read_text(ctx, file_path, key_path(path, "File"))
    if text is None:
        return None
    own = ctx.for_file(file_path)
    ok, data = parse_document(own, text, file_path.suffix)
    if not ok:
        return None
    if not isinstance(data, dict):
        own.problem("$", f"expected a mapping (get-rule-set output), got {type_name(data)}")
        return None
    if "RuleSetId" in entry:
        data = {**data, "RuleSetId": entry["RuleSetId"]}
    return own, data
