"""AWS archive filters (`ArchiveFilters` of StartArchiveSearch / StartArchiveExport) as the
archive index's `SearchQuery`: Include = every condition holds, Unless = none holds, a
StringExpression's Values = any of them is contained (case-insensitive), as Mail Manager rules."""

from __future__ import annotations

import datetime as dt
from typing import Any

from mailmgr.admin.api.errors import validation
from mailmgr.archive.index import BOOLEAN_ATTRIBUTES, STRING_ATTRIBUTES, Condition, SearchQuery


def _condition(entry: dict[str, Any], where: str) -> Condition:
    """One ArchiveFilterCondition. Raises ApiError (ValidationException naming `where`) for an
    expression the index cannot answer."""
    if "StringExpression" in entry:
        expression = entry["StringExpression"]
        attribute = (expression.get("Evaluate") or {}).get("Attribute")
        operator = expression.get("Operator")
        values = tuple(str(v) for v in expression.get("Values") or ())
        if attribute not in STRING_ATTRIBUTES or operator != "CONTAINS" or not values:
            raise validation(f"{where}.StringExpression: mailmgr's archive index cannot "
                             f"evaluate {attribute!s} {operator!s} (it answers CONTAINS on "
                             f"{', '.join(STRING_ATTRIBUTES)})")
        return Condition(attribute, values=values)
    if "BooleanExpression" in entry:
        expression = entry["BooleanExpression"]
        attribute = (expression.get("Evaluate") or {}).get("Attribute")
        operator = expression.get("Operator")
        if attribute not in BOOLEAN_ATTRIBUTES or operator not in ("IS_TRUE", "IS_FALSE"):
            raise validation(f"{where}.BooleanExpression: mailmgr's archive index cannot "
                             f"evaluate {attribute!s} {operator!s} (it answers IS_TRUE and "
                             f"IS_FALSE on {', '.join(BOOLEAN_ATTRIBUTES)})")
        return Condition(attribute, flag=operator == "IS_TRUE")
    raise validation(f"{where}: a filter condition needs a StringExpression or a "
                     "BooleanExpression")


def conditions(filters: dict[str, Any] | None
               ) -> tuple[tuple[Condition, ...], tuple[Condition, ...]]:
    """(include, unless) conditions of an ArchiveFilters value (None: no filter)."""
    filters = filters or {}
    include = tuple(_condition(c, f"Filters.Include[{i}]")
                    for i, c in enumerate(filters.get("Include") or ()))
    unless = tuple(_condition(c, f"Filters.Unless[{i}]")
                   for i, c in enumerate(filters.get("Unless") or ()))
    return include, unless


def time_range(params: dict[str, Any]) -> tuple[float, float]:
    """(FromTimestamp, ToTimestamp) as epoch seconds; From inclusive, To exclusive. Raises
    ApiError (ValidationException) when To is before From."""
    start: dt.datetime = params["FromTimestamp"]
    end: dt.datetime = params["ToTimestamp"]
    if end < start:
        raise validation("ToTimestamp must not be before FromTimestamp")
    return start.timestamp(), end.timestamp()


def query_for(params: dict[str, Any], limit: int) -> SearchQuery:
    """The index query of a StartArchiveSearch / StartArchiveExport request (newest first, at
    most `limit` rows). Raises ApiError (ValidationException)."""
    since, until = time_range(params)
    include, unless = conditions(params.get("Filters"))
    return SearchQuery(since=since, until=until, limit=limit, include=include, unless=unless)
