"""`explain --analysis ANALYZER:FIELD=VALUE`: analyzer results given on the command line instead
of running the engine (interface.md). Parsing and applying only; explain owns the rest."""

from __future__ import annotations

from dataclasses import dataclass

from mailmgr.config.analyzer_models import RESULT_FIELDS
from mailmgr.config.analyzers import find_analyzer
from mailmgr.config.models import Analyzer, Config
from mailmgr.message import (
    AnalysisResult,
    AnalysisResults,
    AnalysisStatus,
    ResultValue,
    Verdict,
)

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class AnalysisOverride:
    analyzer: str  # Name or AnalyzerArn, as given
    field: str  # a result field, AWS's `addon.` prefix allowed
    value: str


def parse_override(text: str) -> AnalysisOverride:
    """`ANALYZER:FIELD=VALUE`, split at the last `:` before the `=` (ARNs hold colons).
    Raises ValueError when either separator is missing or a part is empty."""
    head, equals, value = text.partition("=")
    analyzer, colon, field_name = head.rpartition(":")
    if not equals or not colon or not analyzer or not field_name:
        raise ValueError(f"--analysis {text!r}: expected ANALYZER:FIELD=VALUE")
    return AnalysisOverride(analyzer.strip(), field_name.strip(), value.strip())


def _analyzer(config: Config, ref: str) -> Analyzer:
    found = find_analyzer(config.analyzers, ref)  # as the loader resolves Analysis.Analyzer
    if found is not None:
        return found
    known = ", ".join(a.name for a in config.analyzers) or "none is configured"
    raise ValueError(f"--analysis: unknown analyzer {ref!r} (configured: {known})")


def _value(analyzer: Analyzer, field_name: str, text: str) -> tuple[str, ResultValue]:
    name = field_name.removeprefix("addon.")
    kinds = RESULT_FIELDS[analyzer.engine]
    kind = kinds.get(name)
    if kind is None:
        raise ValueError(f"--analysis: {analyzer.name} ({analyzer.engine.value}) has no result "
                         f"field {field_name!r} (fields: {', '.join(kinds)})")
    if kind is bool:
        lowered = text.lower()
        if lowered not in _TRUE | _FALSE:
            raise ValueError(f"--analysis: {analyzer.name}:{name} takes true or false, "
                             f"got {text!r}")
        return name, lowered in _TRUE
    if name == "verdict":
        try:
            return name, Verdict(text.upper()).value
        except ValueError:
            raise ValueError(f"--analysis: {analyzer.name}:verdict takes "
                             f"{'|'.join(v.value for v in Verdict)}, got {text!r}") from None
    return name, text


def apply_overrides(config: Config, results: AnalysisResults,
                    overrides: tuple[AnalysisOverride, ...]) -> AnalysisResults:
    """`results` with each overridden analyzer's result replaced: its given fields, OK, and a
    verdict from them (`verdict`, else FAIL when listed or not passed, else PASS).
    Raises ValueError for an unknown analyzer or field, or a value of the wrong type."""
    given: dict[str, tuple[Analyzer, dict[str, ResultValue]]] = {}
    for override in overrides:
        analyzer = _analyzer(config, override.analyzer)
        name, value = _value(analyzer, override.field, override.value)
        given.setdefault(analyzer.name, (analyzer, {}))[1][name] = value
    for analyzer, fields in given.values():
        results = results.with_result(AnalysisResult(
            analyzer=analyzer.name,
            engine=analyzer.engine.value,
            status=AnalysisStatus.OK,
            verdict=_verdict(fields),
            fields=tuple(fields.items()),
            detail="given with --analysis",
        ))
    return results


def _verdict(fields: dict[str, ResultValue]) -> Verdict:
    verdict = fields.get("verdict")
    if isinstance(verdict, str):
        return Verdict(verdict)
    if fields.get("isListed") is True or fields.get("isPassed") is False:
        return Verdict.FAIL
    return Verdict.PASS
