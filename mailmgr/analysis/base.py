"""The seam every local analysis engine implements, and the error it raises.

An engine analyses; the service (analysis/service.py) bounds it with a timeout, turns an
AnalysisError or a timeout into a FAILED result, logs and counts. Engines never decide.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from mailmgr.config.models import Analyzer
from mailmgr.errors import MailmgrError
from mailmgr.message import AnalysisResult, InboundMessage


class AnalysisError(MailmgrError):
    """The engine could not produce a result: connection refused, protocol error, a refusal
    such as a DNSBL's 127.255.255.x answer, an unparsable reply. `reason` is a short fixed
    token for logs and metrics (connect, protocol, refused, timeout, …)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Engine(Protocol):
    """One configured analyzer's engine, built once per config (start-up and reload)."""

    analyzer: Analyzer

    async def analyze(self, message: InboundMessage, early: AnalysisResult | None
                      ) -> AnalysisResult:
        """This analyzer's result for an accepted message (after the 250).

        `early`: this analyzer's result from before the 250 (DNSBL at RCPT), to extend rather
        than repeat. Returns an OK or SKIPPED result; raises AnalysisError when the engine
        fails. The caller applies the timeout (cancellation must leave no stray task)."""
        ...

    async def close(self) -> None:
        """Release connections and sessions; called once, when the config is replaced."""
        ...


@runtime_checkable
class SessionEngine(Engine, Protocol):
    """An engine that can also answer at RCPT time from the session alone (DNSBL)."""

    async def analyze_session(self, peer_ip: str, helo: str, mail_from: str) -> AnalysisResult:
        """The result for a transaction before DATA: the client address and the HELO and
        envelope sender (`mail_from`, "" for `<>`) domains. Raises AnalysisError."""
        ...
