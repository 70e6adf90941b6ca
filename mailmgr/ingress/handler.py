"""Decisions for one ingress point's transactions: recipient policy at RCPT, acceptance at DATA.

Sees only domain values (SessionFacts, Envelope, bytes), never aiosmtpd objects; turns the seams'
answers and failures into replies. Never logs message content.
"""

from __future__ import annotations

from mailmgr import logs
from mailmgr.config.models import IngressPoint
from mailmgr.ingress import replies
from mailmgr.ingress.analysis import NO_ANALYSIS, TransactionAnalysis
from mailmgr.ingress.replies import Reply
from mailmgr.ingress.seams import Acceptor, RecipientPolicy, SessionAnalyzer
from mailmgr.message import ClientCertificate, Envelope, SessionFacts


class IngressHandler:
    """Called by the SMTP protocol with typed arguments (no hooks found by name)."""

    def __init__(
        self,
        ingress_point: IngressPoint,
        acceptor: Acceptor,
        recipient_policy: RecipientPolicy,
        analyzer: SessionAnalyzer | None = None,
    ) -> None:
        self.ingress_point = ingress_point
        self._acceptor = acceptor
        self._policy = recipient_policy
        self._analyzer = analyzer

    def transaction_analysis(self) -> TransactionAnalysis | None:
        """A new connection's RCPT-time analyses; None when the traffic policy reads no
        analyzer result (then the worker runs every analyzer after the 250, and ingest pays
        nothing for them) or no analyzer can answer before DATA."""
        if (self._analyzer is None or not self._policy.needs_analysis
                or not self._analyzer.enabled):
            return None
        return TransactionAnalysis(self._analyzer)

    async def recipient(self, session: SessionFacts, address: str, mail_from: str,
                        analysis: TransactionAnalysis | None) -> Reply:
        """RECIPIENT_OK or POLICY_REJECTED; a failing policy gives a temporary reply. Waits for
        the transaction's analyses only when the policy reads them."""
        results = NO_ANALYSIS
        if analysis is not None and self._policy.needs_analysis:
            results = await analysis.results()
        try:
            allowed = self._policy.check(session, address, mail_from, results)
        except Exception as error:
            logs.error(
                "smtp.policy_failed",
                ingress_point=session.ingress_point_name,
                peer_ip=session.peer_ip,
                error=type(error).__name__,
                detail=str(error),
            )
            return replies.for_exception(error)
        if allowed:
            return replies.RECIPIENT_OK
        logs.event(
            "smtp.recipient_rejected",
            ingress_point=session.ingress_point_name,
            peer_ip=session.peer_ip,
            recipient=address,
        )
        return replies.POLICY_REJECTED

    async def deliver(self, session: SessionFacts, envelope: Envelope, content: bytes,
                      analysis: TransactionAnalysis | None = None) -> Reply:
        """Hand the message to the acceptor; 250 with its ID only once it is durable. The
        transaction's analyses go with it if they are in; the 250 never waits for them."""
        results = analysis.ready() if analysis is not None else NO_ANALYSIS
        try:
            message_id = await self._acceptor.accept(session, envelope, content, results)
        except Exception as error:
            logs.error(
                "smtp.accept_failed",
                ingress_point=session.ingress_point_name,
                peer_ip=session.peer_ip,
                error=type(error).__name__,
                detail=str(error),
            )
            return replies.for_exception(error)
        logs.event(
            "smtp.accepted",
            message_id=message_id,
            ingress_point=session.ingress_point_name,
            ingress_point_id=session.ingress_point_id,
            peer_ip=session.peer_ip,
            mail_from=envelope.mail_from,
            recipients=len(envelope.rcpt_to),
            size=len(content),
            tls=session.tls,
            tls_wrapped=session.tls_wrapped,
            tls_protocol=session.tls_protocol,
            tls_cipher=session.tls_cipher,
            auth_user=session.auth_user,
            client_certificate=_certificate_fields(session.client_certificate),
        )
        return replies.queued(message_id)


def _certificate_fields(cert: ClientCertificate | None) -> dict[str, object] | None:
    """The client certificate as Mail Manager's ingress logs carry it."""
    if cert is None:
        return None
    sans = {name: list(values) for name, values in cert.attributes if name.startswith("SAN_")}
    return {
        "common_names": list(cert.values("CN")),
        "serial_number": next(iter(cert.values("SERIAL_NUMBER")), None),
        "subject_alternative_names": sans,
        "issuer": cert.issuer,
        "not_before": cert.not_before,
        "not_after": cert.not_after,
    }
