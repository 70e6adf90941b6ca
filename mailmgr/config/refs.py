"""The index of declared resources: duplicate detection and reference resolution to IDs.

A reference may be an ID, a name or an ARN (matched by resource type and trailing ID; region
and account are ignored). Analyzers are looked up by Name or AnalyzerArn the same way. It
reports problems but builds no models.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailmgr.config.analyzers import find_analyzer
from mailmgr.config.fields import Ctx
from mailmgr.config.ids import KINDS, ResourceKind, parse_arn
from mailmgr.config.models import Analyzer


@dataclass(frozen=True)
class Declared:
    kind: ResourceKind
    name: str
    id: str
    ctx: Ctx
    path: str


class Resolver:
    def __init__(self) -> None:
        self._declared: dict[ResourceKind, list[Declared]] = {k: [] for k in ResourceKind}
        self.mailbox_arns: set[str] = set()
        self.analyzers: tuple[Analyzer, ...] = ()  # set by the loader before any rule is built

    def analyzer(self, ref: str) -> Analyzer | None:
        """The analyzer `ref` names (Name or AnalyzerArn; analyzers.find_analyzer)."""
        return find_analyzer(self.analyzers, ref)

    def describe_analyzers(self) -> str:
        if not self.analyzers:
            return "no analyzer is configured: add it under Analyzers"
        return "configured: " + ", ".join(
            f"{a.name} [{a.arn}]" if a.arn else a.name for a in self.analyzers)

    def add(self, item: Declared) -> None:
        """Register a resource; a repeated name or ID is a problem at the later one."""
        info = KINDS[item.kind]
        for other in self._declared[item.kind]:
            if other.name == item.name:
                item.ctx.problem(
                    item.path,
                    f"duplicate {info.name_key} '{item.name}' (also at {other.path} "
                    f"in {other.ctx.file})",
                )
            elif other.id == item.id:
                item.ctx.problem(
                    item.path,
                    f"duplicate {info.id_key} '{item.id}' (also used by {other.kind} "
                    f"'{other.name}' at {other.path} in {other.ctx.file})",
                )
        self._declared[item.kind].append(item)

    def resolve(self, kind: ResourceKind, ref: str) -> str | None:
        items = self._declared[kind]
        for item in items:
            if item.id == ref:
                return item.id
        for item in items:
            if item.name == ref:
                return item.id
        arn = parse_arn(ref)
        if arn is not None and arn.resource_type == KINDS[kind].arn_type:
            for item in items:
                if item.id == arn.resource_id:
                    return item.id
        return None

    def describe(self, kind: ResourceKind) -> str:
        items = self._declared[kind]
        if not items:
            return f"no {kind} is configured"
        return f"configured: {', '.join(f'{i.name} [{i.id}]' for i in items)}"

    def check(self, ctx: Ctx, path: str, kind: ResourceKind, ref: object) -> str | None:
        """Resolve `ref` to an ID or report why it cannot be resolved."""
        if not isinstance(ref, str):
            ctx.problem(path, f"expected the ID, name or ARN of a {kind}")
            return None
        found = self.resolve(kind, ref)
        if found is not None:
            return found
        arn = parse_arn(ref)
        expected = KINDS[kind].arn_type
        if arn is not None and arn.resource_type != expected:
            ctx.problem(
                path,
                f"'{ref}' is not a {kind} ARN (expected resource type {expected}; "
                f"{self.describe(kind)})",
            )
        else:
            ctx.problem(
                path,
                f"{kind} '{ref}' not found by ID, name or ARN ({self.describe(kind)})",
            )
        return None
