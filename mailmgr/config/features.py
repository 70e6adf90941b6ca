"""Everything valid in AWS that this version of mailmgr cannot run yet.

Each not-yet-implemented feature is one line here: implementing it means deleting that line (the
loader already builds full models for all of them). Callers attach the JSON path. Analyzers
(`Analysis` conditions) are real: the `Analyzers` section maps them to local engines.
"""

from __future__ import annotations

# Empty today; an action AWS adds to RuleAction goes here until it is implemented (a test
# compares the registry with botocore's model, so a new one cannot go unnoticed).
NOT_IMPLEMENTED_ACTIONS: frozenset[str] = frozenset()
NOT_IMPLEMENTED_ARCHIVE_STORAGE: frozenset[str] = frozenset()

_SUFFIX = "is not implemented yet in this version of mailmgr"


def action_problem(action: str) -> str | None:
    return f"action '{action}' {_SUFFIX}" if action in NOT_IMPLEMENTED_ACTIONS else None


def archive_storage_problem(storage: str) -> str | None:
    if storage in NOT_IMPLEMENTED_ARCHIVE_STORAGE:
        return f"archive Storage '{storage}' {_SUFFIX}"
    return None
