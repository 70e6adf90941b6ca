"""The seams the app injects into an ingress point: where accepted messages go and who
decides on recipients. Implementations live outside `ingress/`; nothing here does I/O."""

from __future__ import annotations

from typing import Protocol

from mailmgr.message import AnalysisResults, Envelope, SessionFacts


class Acceptor(Protocol):
    """Makes a received message durable before the client hears 250."""

    async def accept(self, session: SessionFacts, envelope: Envelope, content: bytes,
                     analysis: AnalysisResults) -> str:
        """Return the message ID once the message is durably committed. `analysis`: the
        transaction's RCPT-time analyzer results that are in (stored with the message).

        Raises SpoolError when it cannot (the client gets 451 and retries). The acceptor
        shields its commit from cancellation: a client that disconnects while this runs must
        not leave a half-written record.
        """
        ...


class RecipientPolicy(Protocol):
    """The traffic policy's per-recipient decision at RCPT time (semantics.md §3)."""

    needs_analysis: bool  # some condition reads an analyzer's result (wait for them)

    def check(self, session: SessionFacts, recipient: str, mail_from: str,
              analysis: AnalysisResults) -> bool:
        """True accepts the recipient; False rejects it with 550 5.7.1. Must not block.
        `mail_from`: the transaction's envelope sender ("" for `<>`), for the policy's logs;
        `analysis`: the transaction's RCPT-time analyzer results (empty unless needed)."""
        ...


class SessionAnalyzer(Protocol):
    """The analyzers that can answer before DATA (DNS lists), for one transaction."""

    @property
    def enabled(self) -> bool:
        """Whether any such analyzer is configured (read once per connection)."""
        ...

    async def session(self, peer_ip: str, helo: str, mail_from: str) -> AnalysisResults:
        """Every such analyzer's result; never raises for an engine failure (FAILED results),
        bounded by the analyzers' timeouts."""
        ...
