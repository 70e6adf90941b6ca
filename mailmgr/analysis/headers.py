"""The optional X-Mailmgr-Spam and X-Mailmgr-Virus header fields (`Server.Analysis.AddHeaders`):
their text, Authentication-Results style, and the incoming copies to strip so downstream only
ever sees ours. Written through mailmgr.mime.render, read through mailmgr.mime.headers.

    X-Mailmgr-Spam: FAIL; spamhaus=PASS; vade=FAIL (score 15.00, spam)
    X-Mailmgr-Virus: PASS; trendmicro=PASS (clean)
"""

from __future__ import annotations

from mailmgr.analysis.service import SPAM_ENGINES, VIRUS_ENGINES
from mailmgr.message import AnalysisResult, AnalysisStatus, Verdicts
from mailmgr.mime.headers import read
from mailmgr.mime.render import render_lines, sanitise

SPAM_HEADER = "X-Mailmgr-Spam"
VIRUS_HEADER = "X-Mailmgr-Virus"
_OURS = frozenset({SPAM_HEADER.lower(), VIRUS_HEADER.lower()})


def analysis_fields(verdicts: Verdicts, eol: bytes) -> bytes:
    """The fields for the verdicts that are enabled (an engine of that kind is configured),
    spam first; empty when neither is."""
    out = b""
    for name, verdict, engines in ((SPAM_HEADER, verdicts.spam, SPAM_ENGINES),
                                   (VIRUS_HEADER, verdicts.virus, VIRUS_ENGINES)):
        if verdict is None:
            continue
        parts = [f"{verdict.value};"]
        results = [r for r in verdicts.analysis.results if r.engine in engines]
        for index, result in enumerate(results):
            last = index == len(results) - 1
            parts.append(_describe(result) + ("" if last else ";"))
        if len(parts) == 1:
            parts[0] = verdict.value
        out += render_lines(name, parts, eol)
    return out


def _describe(result: AnalysisResult) -> str:
    """`name=VERDICT (details)`: the list names, the rspamd score and category, the signature;
    for a result that is not OK, only why (the failure reason, or "skipped")."""
    details: list[str] = []
    if result.status is AnalysisStatus.OK:
        for field_name in ("listedOn", "score", "category"):
            value = result.value(field_name)
            if isinstance(value, str) and value:
                details.append(f"score {value}" if field_name == "score" else value)
    elif result.status is AnalysisStatus.SKIPPED:
        details.append("skipped")
    elif result.detail:
        # Only the fixed reason ("connect", "timeout", "refused", ...): the detail names the
        # engine's address and the DNS list's zone (which may hold a Spamhaus DQS key), and these
        # fields travel downstream with the message. Logs and explain keep the detail.
        details.append(result.detail.partition(":")[0].strip())
    # Parentheses would end the comment early: a detail keeps its text without them.
    comment = ", ".join(sanitise(d).replace("(", "[").replace(")", "]") for d in details)
    return f"{result.analyzer}={result.verdict.value}" + (f" ({comment})" if comment else "")


def forged_analysis_ranges(content: bytes) -> tuple[tuple[int, int], ...]:
    """Byte ranges (with continuation lines) of incoming X-Mailmgr-Spam/-Virus fields."""
    return tuple((f.start, f.end) for f in read(content).fields if f.key in _OURS)
