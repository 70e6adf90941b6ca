"""The rspamd engine behind VADE_ADVANCED_EMAIL_SECURITY: `POST {Url}/checkv2` to a normal
worker, the reply's action mapped to Mail Manager's result fields.

Action → fields (rspamd's standard actions; `isPassed` is true for the first two):

    no action                          verdict PASS  isPassed true
    greylist                           verdict GRAY  isPassed true
    soft reject                        verdict GRAY  isPassed false
    add header, rewrite subject,
    reject, and any custom action      verdict FAIL  isPassed false

`category` comes from the symbols that scored above zero: "phishing" (PHISHING, PHISHED_*, any
*PHISH*), "virus" (CLAM_VIRUS and other *VIRUS* symbols of antivirus scanners); several are
joined with ","; otherwise "spam" when not passed and "clean" when passed. `score` is the score
with two decimals ("7.50").
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
from multidict import CIMultiDict

from mailmgr.analysis.base import AnalysisError
from mailmgr.config.models import Analyzer, AnalyzerEngine, RspamdSettings
from mailmgr.message import AnalysisResult, AnalysisStatus, InboundMessage, Verdict

log = logging.getLogger(__name__)

ENGINE = AnalyzerEngine.RSPAMD.value
PASSED_ACTIONS = frozenset({"no action", "greylist"})
ACTION_VERDICTS: dict[str, Verdict] = {
    "no action": Verdict.PASS,
    "greylist": Verdict.GRAY,
    "soft reject": Verdict.GRAY,
    "add header": Verdict.FAIL,
    "rewrite subject": Verdict.FAIL,
    "reject": Verdict.FAIL,
}
MAX_REPLY_BYTES = 1024 * 1024  # a checkv2 reply is a few KiB; more is not rspamd talking
MAX_DETAIL = 200


class RspamdEngine:
    """One `Rspamd` analyzer: an HTTP client for one rspamd normal worker.

    The aiohttp session is created on the first analysis (on the running loop) and closed by
    close(); at most `max_concurrency` requests are in flight, the rest wait their turn (the
    service's overall timeout bounds the wait), and each request gets `timeout` seconds."""

    def __init__(self, analyzer: Analyzer) -> None:
        if not isinstance(analyzer.settings, RspamdSettings):
            raise TypeError(f"analyzer {analyzer.name} is not an Rspamd analyzer")
        self.analyzer = analyzer
        self.settings: RspamdSettings = analyzer.settings
        self.endpoint = self.settings.url.rstrip("/") + "/checkv2"
        self._session: aiohttp.ClientSession | None = None
        self._semaphore = asyncio.Semaphore(max(1, self.settings.max_concurrency))

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                connector=aiohttp.TCPConnector(limit=max(1, self.settings.max_concurrency)),
            )
        return self._session

    async def analyze(self, message: InboundMessage, early: AnalysisResult | None
                      ) -> AnalysisResult:
        """rspamd's answer for `message` as an OK result with isPassed, verdict, category and
        score. Raises AnalysisError: connect (refused, unreachable), timeout (no complete reply
        within `timeout` seconds), protocol (HTTP status other than 200, a body that is not a
        JSON object with `action` and `score`)."""
        async with self._semaphore:
            reply = await self._check(message)
        return result_from_reply(self.analyzer.name, reply)

    async def _check(self, message: InboundMessage) -> dict[str, Any]:
        try:
            async with self._client().post(self.endpoint, data=message.content,
                                           headers=request_headers(message)) as response:
                if response.status != 200:
                    raise AnalysisError("protocol", f"rspamd answered HTTP {response.status}")
                body = await _read_bounded(response)
        except TimeoutError as exc:
            raise AnalysisError(
                "timeout", f"no reply from {self.endpoint} within {self.settings.timeout:g} s"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise AnalysisError("connect", f"{self.endpoint}: {exc.strerror or exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise AnalysisError("protocol", f"{self.endpoint}: {type(exc).__name__}: {exc}"
                                ) from exc
        try:
            reply = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AnalysisError("protocol", "rspamd's reply is not JSON") from exc
        if not isinstance(reply, dict):
            raise AnalysisError("protocol", "rspamd's reply is not a JSON object")
        log.debug("rspamd %s: %s for %s", self.analyzer.name, reply.get("action"), message.id)
        return reply

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_any():
        total += len(chunk)
        if total > MAX_REPLY_BYTES:
            raise AnalysisError("protocol", f"rspamd's reply exceeds {MAX_REPLY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _header_safe(value: str) -> bool:
    # aiohttp refuses CR/LF in a header value; other controls would garble the request line.
    return not any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)


def request_headers(message: InboundMessage) -> CIMultiDict[str]:
    """rspamd's request headers for `message`: IP, Helo, From ("" for <>), one Rcpt per envelope
    recipient, Queue-Id (the message ID) and User (the SMTP AUTH identity, when there is one).

    Hostname is left out: mailmgr does not resolve the client's reverse DNS, and without the
    header rspamd looks the name up itself, where "unknown" would claim a failed lookup."""
    session, envelope = message.session, message.envelope
    pairs: list[tuple[str, str]] = [("IP", session.peer_ip), ("From", envelope.mail_from)]
    if session.helo:
        pairs.append(("Helo", session.helo))
    pairs.extend(("Rcpt", rcpt) for rcpt in envelope.rcpt_to)
    pairs.append(("Queue-Id", message.id))
    if session.auth_user:
        pairs.append(("User", session.auth_user))
    return CIMultiDict((name, value) for name, value in pairs if _header_safe(value))


def result_from_reply(analyzer: str, reply: dict[str, Any]) -> AnalysisResult:
    """The OK result for a checkv2 reply (a decoded JSON object). Raises AnalysisError
    (protocol) when `action` or `score` is missing or of the wrong type."""
    action = reply.get("action")
    score = reply.get("score")
    if not isinstance(action, str) or not action:
        raise AnalysisError("protocol", "rspamd's reply has no action")
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise AnalysisError("protocol", "rspamd's reply has no numeric score")
    required = reply.get("required_score")
    symbols = scoring_symbols(reply.get("symbols"))
    passed = action in PASSED_ACTIONS
    verdict = ACTION_VERDICTS.get(action, Verdict.FAIL)
    detail = f"action={action} score={score:.2f}"
    if isinstance(required, (int, float)) and not isinstance(required, bool):
        detail += f"/{required:.2f}"
    if symbols:
        detail += " symbols=" + ",".join(symbols)
    if len(detail) > MAX_DETAIL:
        detail = detail[:MAX_DETAIL - 3] + "..."
    return AnalysisResult(
        analyzer=analyzer,
        engine=ENGINE,
        status=AnalysisStatus.OK,
        verdict=verdict,
        fields=(
            ("isPassed", passed),
            ("verdict", verdict.value),
            ("category", category(symbols, passed)),
            ("score", f"{score:.2f}"),
        ),
        detail=detail,
    )


def scoring_symbols(symbols: object) -> list[str]:
    """The names of the symbols that scored above zero, highest first. `symbols` is the reply's
    `symbols` object (name → {score, …}); anything else counts as no symbols."""
    if not isinstance(symbols, dict):
        return []
    scored: list[tuple[float, str]] = []
    for name, value in symbols.items():
        score = value.get("score") if isinstance(value, dict) else None
        if isinstance(score, (int, float)) and not isinstance(score, bool) and score > 0:
            scored.append((float(score), str(name)))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [name for _, name in scored]


def category(symbols: list[str], passed: bool) -> str:
    """"phishing" and/or "virus" from the symbol names (comma-joined), else "spam" or "clean"."""
    found: list[str] = []
    upper = [name.upper() for name in symbols]
    if any("PHISH" in name for name in upper):
        found.append("phishing")
    if any("VIRUS" in name and "VIRUSFREE" not in name and not name.endswith("_FAIL")
           for name in upper):
        found.append("virus")
    if found:
        return ",".join(found)
    return "clean" if passed else "spam"
